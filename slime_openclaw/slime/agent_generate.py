"""slime's custom generate function for general agents (``--custom-generate-function-path``).

``generate(args, sample, sampling_params, evaluation=False)`` runs one episode for one
slime ``Sample`` of ``--prompt-data``: the task is the sample's metadata (``--metadata-key``,
the task JSON itself, or under ``"task"``), the environment ``openclaw_agent_env`` built
with ``openclaw_agent_env_args``. The episode runs through the gateway in front of slime's
SGLang router (started once per process, record-only: the agents' stage judges whole
episodes), exactly as the embedded loop runs it (agents/driver.py), then the stage judges
its steps (agents/stage.py) and each step becomes one ``Sample``:

- ``tokens`` = the step's prompt ids + response ids as served, ``loss_mask`` and
  ``rollout_log_probs`` token for token (samples.py lays them out, as for live samples);
- ``reward`` = the raw step reward ``w_outcome * (2 * score - 1) + w_prm * mean(votes)``
  (so slime's reward model is not called); the (task group, step) or group normalization
  runs in ``agent_rewards.post_process_rewards`` (slime normalizes per group only when
  the sample count is exactly ``n * batch``);
- every step of the episode shares the input sample's ``rollout_id``, ``index`` and
  ``group_index`` (``--n-samples-per-prompt`` episodes of a task form its group);
  ``metadata["openclaw_agent"]`` holds the episode id, step index, group and outcome.

A training result is an ``EpisodeSamples`` list (with the input sample's ``index``, which
slime's fully-async rollout sorts groups by). An episode with no trainable step (its first
request failed: the engine unreachable, say) returns ``[input sample]``, ABORTED with
``remove_sample`` set and reward 0.0: slime keeps an aborted sample of a finished group in the
batch, runs the reward hook on it (which needs a number) and zeroes a removed sample's loss
mask. It is a list like every training result, as slime's ``_get_rollout_data`` flattens the
batch level by level (a group of a list and a bare Sample fails there), and it is laid out as one masked step (``_untrainable``): two placeholder
tokens, the second a response token with loss mask 0 and log-prob 0.0 (teacher log-probs the
same, the no-teacher marker, when the layout has them), because slime's trainer pads each loss
mask by ``prompt_length - 1`` and takes ``rollout_log_probs``/``teacher_log_probs`` for the whole
batch from its first sample. Evaluation returns the sample itself, rewarded its outcome score.
The journal keeps every turn, its next state, verdict, hint and the session's outcome.

Environments come from the pool ``openclaw_env_pool`` names (envs/pool/): ``local`` builds
them in this process, ``ray`` places each on a Ray actor of the cluster slime runs on
(joined, never started; the code shipped in the actors' runtime env), at most
``openclaw_env_max_in_flight`` at once, more episodes waiting for a slot. An episode its
environment failed (actor died, call past its limit, lease reclaimed) returns its input
sample as an untrainable episode does (its turns are discarded in the journal as
"environment failure: ..."): it is never trained as the agent's fault. The
pool's figures are on the gateway's ``/metrics`` and, through ``agent_metrics``, in
slime's rollout log.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.agents.driver import DriverSettings, env_failure_record, run_episode
from slime_openclaw.agents.episode import EpisodeRecord
from slime_openclaw.agents.stage import EpisodeSignals, JudgedStep
from slime_openclaw.config import OpenClawConfig
from slime_openclaw.envs import EnvironmentFailure, EnvSpec
from slime_openclaw.envs.pool import EnvPool, open_pool
from slime_openclaw.signals.samples import directive_teacher, sample_for
from slime_openclaw.slime.samples import SampleLayout, TurnFacts, to_slime_sample

AGENT_METADATA = "openclaw_agent"
ENV_FAILURE_METADATA = "openclaw_env_failure"
"""Metadata of an input sample whose episode its environment failed (episode id, error)."""
TRAINED_ON_SLIME = "trained on the slime path (agent generate function)"


def task_of(sample: Any) -> dict[str, Any]:
    """The task JSON of a slime sample: its metadata, or the metadata's ``task`` entry."""
    metadata = getattr(sample, "metadata", None) or {}
    task = metadata.get("task", metadata)
    if not isinstance(task, dict) or not task:
        raise ValueError("the sample carries no task: put the task JSON in the prompt data's metadata column")
    return {k: v for k, v in task.items() if k not in (AGENT_METADATA, ENV_FAILURE_METADATA)}


@dataclass
class AgentRuntime:
    """This process's gateway (record-only), journal and environment spec."""

    config: OpenClawConfig
    live: Any
    journal: Any
    env: EnvSpec
    stages: dict[int, EpisodeSignals]
    pools: dict[int, EnvPool] = field(default_factory=dict)

    def pool(self) -> EnvPool:
        """The environment pool of the running event loop (its leases and heartbeats belong to it)."""
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self.pools:
            pool = open_pool(self.env, self.config.env)
            self.pools[loop_id] = pool
            if self.live.service is not None:
                self.live.service.gateway_metrics.collectors.append(pool.metrics.render)
        return self.pools[loop_id]

    def pool_metrics(self, reset_peaks: bool = False) -> dict[str, float]:
        """The pools' rollout figures, summed over event loops (slime runs one)."""
        out: dict[str, float] = {}
        for pool in self.pools.values():
            for key, value in pool.metrics.rollout(reset_peaks).items():
                out[key] = max(out.get(key, 0.0), value) if "latency" in key else out.get(key, 0.0) + value
        return out

    def stage(self, args: Any) -> EpisodeSignals:
        """The signal stage for the running event loop (its engine clients belong to that loop)."""
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self.stages:
            self.stages[loop_id] = _build_stage(self, args)
        return self.stages[loop_id]


def _build_stage(rt: AgentRuntime, args: Any) -> EpisodeSignals:
    from slime_openclaw.agents.pipeline import agent_pipeline
    from slime_openclaw.engine.client import EngineClient
    from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
    from slime_openclaw.live import SignalStack, build_signal_pipeline
    from slime_openclaw.slime.services import resolve_endpoint

    method = rt.config.agent.method
    pipeline = None
    if method != "outcome":
        codec = TokenizerCodec.from_dir(args.hf_checkpoint)
        policy = EngineClient(resolve_endpoint("policy", args))
        base = build_signal_pipeline(rt.config, codec, policy, lambda e: resolve_endpoint(e, args), SignalStack())
        pipeline = agent_pipeline(base, method)
    return EpisodeSignals(rt.journal, pipeline, method, rt.config.agent)


_LOCK = threading.Lock()
_RUNTIME: AgentRuntime | None = None


def runtime(args: Any) -> AgentRuntime:
    """Started on first use: the journal, the record-only gateway in front of slime's router
    (after ``guards.check``: slime settings these results cannot run with are refused)."""
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None:
            from slime_openclaw.live import LiveThread
            from slime_openclaw.slime import guards
            from slime_openclaw.slime.hooks import config_for
            from slime_openclaw.slime.services import open_journal, resolve_endpoint

            # flags added by hand get launch's checks, before anything opens
            guards.check({**vars(args), "custom_generate_function_path": guards.AGENT_GENERATE})
            config = config_for(args)
            env = EnvSpec.parse(config.agent.env, config.agent.env_arg_pairs())
            journal = open_journal(config)
            live = LiveThread(config, engine_url=resolve_endpoint("policy", args), tokenizer_dir=args.hf_checkpoint,
                              journal=journal, record_only=True)
            live.start()
            _RUNTIME = AgentRuntime(config, live, journal, env, {})
        return _RUNTIME


def step_samples(sample_cls: Any, source: Any, episode: EpisodeRecord, judged: list[JudgedStep],
                 stage: EpisodeSignals, layout: SampleLayout) -> list[Any]:
    """One slime ``Sample`` per judged step, raw step rewards, sharing ``source``'s ids."""
    out = []
    for j in judged:
        directive = directive_teacher(j.hint, j.teacher) if stage.method == "combine" else None
        trained = sample_for(j.record.turn, layout.method, j.raw_reward, directive)
        facts = TurnFacts(finish_reason=j.record.turn.finish_reason, created_at=j.record.turn.created_at)
        step = to_slime_sample(sample_cls, trained, index=source.index, layout=layout, facts=facts)
        step.group_index, step.rollout_id = source.group_index, source.rollout_id if source.rollout_id is not None \
            else source.index
        step.prompt = source.prompt
        step.metadata = {**step.metadata, AGENT_METADATA: {
            "episode": episode.episode_id, "step": j.step.turn_index, "group": source.group_index,
            "outcome": episode.outcome.score, "passed": episode.outcome.passed, "raw_reward": j.raw_reward}}
        out.append(step)
    return out


def _settle(rt: AgentRuntime, judged: list[JudgedStep]) -> None:
    """Record each step's verdict and hint; its sample went to slime, not to a journal consumer."""
    for j in judged:
        rt.journal.record_signals(j.turn_key, j.verdict, j.hint, [], discard_reason=TRAINED_ON_SLIME)


async def _play(rt: AgentRuntime, task: dict[str, Any], settings: DriverSettings, episode_id: str,
                group: str) -> EpisodeRecord:
    """One episode on an environment leased from the pool (an environment failure as its record)."""
    try:
        async with rt.pool().lease() as env:
            return await run_episode(env, task, settings, episode_id=episode_id, group=group)
    except EnvironmentFailure as exc:  # no environment could be placed for it
        return env_failure_record(task, episode_id, group, str(exc))


def _env_failed(rt: AgentRuntime, args: Any, sample: Any, episode: EpisodeRecord, evaluation: bool,
                aborted: Any) -> Any:
    """The input sample of an environment-failed episode: aborted, removed, reward 0, never trained."""
    if not evaluation:
        rt.stage(args).discard_episode(episode)
    _untrainable(sample, aborted, SampleLayout.from_config(rt.config))
    sample.metadata = {**(sample.metadata or {}), ENV_FAILURE_METADATA: {
        "episode": episode.episode_id, "error": episode.error}}
    return sample


class EpisodeSamples(list):
    """An episode's samples: a list (slime flattens the batch by lists) that also has the input
    sample's ``index``, because slime's fully-async rollout orders groups by
    ``getattr(member, "index")``, which on a plain list is its ``index`` method."""

    def __init__(self, samples: list[Any], index: int | None) -> None:
        super().__init__(samples)
        self.__dict__["index"] = index  # shadows list.index for getattr, as slime reads it


PLACEHOLDER_TOKEN = 0
"""The token ids of an untrainable sample (slime pads its packed sequences with 0 too)."""


def _untrainable(sample: Any, aborted: Any, layout: SampleLayout) -> Any:
    """The input sample of an episode nothing of which trains: aborted, removed, reward 0, laid
    out as one masked step (one prompt and one response token; see the module docstring)."""
    sample.status, sample.remove_sample, sample.reward = aborted, True, 0.0
    if getattr(sample, "rollout_id", None) is None:
        sample.rollout_id = sample.index
    sample.tokens, sample.response_length, sample.loss_mask = [PLACEHOLDER_TOKEN] * 2, 1, [0]
    sample.rollout_log_probs = [0.0]
    sample.teacher_log_probs = [0.0] if layout.with_teacher else None
    return sample


async def generate(args: Any, sample: Any, sampling_params: dict[str, Any], evaluation: bool = False) -> Any:
    """One episode for ``sample``; its steps as samples (see the module docstring)."""
    from slime.utils.types import Sample

    rt = runtime(args)
    settings = DriverSettings(
        base_url=rt.live.url, model=rt.config.gateway.model_name, api_key=rt.config.gateway_api_key() or "local",
        max_turns=rt.config.agent.max_turns, max_tokens=int(sampling_params.get("max_new_tokens", 1024)),
        temperature=float(sampling_params.get("temperature", 1.0)), train=not evaluation)
    episode_id = f"slime-{sample.index}-{uuid.uuid4().hex[:8]}"
    episode = await _play(rt, task_of(sample), settings, episode_id, str(sample.group_index))
    if episode.env_failed:
        failed = _env_failed(rt, args, sample, episode, evaluation, Sample.Status.ABORTED)
        return failed if evaluation else EpisodeSamples([failed], sample.index)
    if evaluation:
        sample.reward = episode.outcome.score
        sample.status = Sample.Status.COMPLETED
        return sample
    stage = rt.stage(args)
    judged = await stage.judge_episode(episode)
    _settle(rt, judged)
    layout = SampleLayout.from_config(rt.config)
    steps = step_samples(Sample, sample, episode, judged, stage, layout)
    return EpisodeSamples(steps or [_untrainable(sample, Sample.Status.ABORTED, layout)], sample.index)
