"""The embedded loop of ``slime-openclaw agents train``: engine, gateway, episodes, signals, trainer.

``run_training(settings, policy, on_progress)`` starts the embedded engine on the policy,
the gateway with its journal (``record_only``: the agents' signal stage judges whole
episodes, see agents/stage.py), and the local trainer pushing into the engine. It
evaluates on the eval split (not recorded: ``X-OpenClaw-Train: off``), then per round
plays ``tasks_per_round`` train tasks ``group_size`` times each (a task group), records
the round's step samples and runs trainer steps until the journal has none READY, and
evaluates again every ``eval_every`` rounds and at the end: the success-rate curve.
A round's samples are trained as slime trains one rollout, in mini-batches of ``batch_size``
one after the other, all of them before the next round plays: the trainer bounds no
staleness here (the PPO clip on the rollout log-probs bounds each later mini-batch's ratio;
with ``openclaw_max_staleness`` 4 every sample past the fourth step of a round was dropped).
Everything lives in ``settings.workdir`` (journal, checkpoints); stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slime_openclaw.agents.driver import DriverSettings
from slime_openclaw.agents.episode import EpisodeRecord
from slime_openclaw.agents.pipeline import agent_pipeline
from slime_openclaw.agents.stage import EpisodeSignals, sample_method
from slime_openclaw.config import OpenClawConfig
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.envs import EnvSpec
from slime_openclaw.journal.base import JournalStore
from slime_openclaw.journal.location import open_journal
from slime_openclaw.live import SignalStack, build_signal_pipeline, default_resolver, live_service
from slime_openclaw.local.agents.episodes import Job, evaluation, run_episodes
from slime_openclaw.local.demo.run_journal import journal_figures
from slime_openclaw.losses import StalenessPolicy

JOURNAL_FILE = "journal.sqlite"


@dataclass(frozen=True)
class AgentTrainSettings:
    """One ``agents train`` run (CLI defaults; small enough for a shared 2-core CPU)."""

    env: EnvSpec
    workdir: Path
    train_tasks: Sequence[dict[str, Any]]
    eval_tasks: Sequence[dict[str, Any]]
    method: str = "outcome"
    config: OpenClawConfig = field(default_factory=OpenClawConfig)
    """The run's ``openclaw_*`` settings (judges, weights, ``openclaw_agent_*``)."""
    rounds: int = 12
    tasks_per_round: int = 24
    group_size: int = 4
    eval_every: int = 3
    concurrency: int = 4
    max_turns: int = 6
    max_tokens: int = 96
    temperature: float = 0.7
    """Sampling temperature of the policy (the trainer's log-probs use the same)."""
    lr: float = 2e-4
    batch_size: int = 16
    kl_coef: float = 0.0
    """KL-to-reference penalty of the trainer (slime's ``--kl-loss-coef``, low_var_kl; 0: none)."""
    seed: int = 0


@dataclass
class Progress:
    """What the progress line shows."""

    phase: str = "starting"
    episodes: int = 0
    total: int = 0
    train_steps: int = 0
    success: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


ProgressCallback = Callable[[Progress], None]


def run_config(base: OpenClawConfig, method: str, workdir: Path) -> OpenClawConfig:
    """``base`` with the journal in ``workdir`` and the journal method ``method`` trains with."""
    values = base.to_mapping()
    values.update(openclaw_method=sample_method(method).value, openclaw_journal_path=str(workdir / JOURNAL_FILE),
                  openclaw_gateway_session_ttl_s=120.0)
    return OpenClawConfig.from_mapping(values)


def driver_settings(base_url: str, s: AgentTrainSettings, *, train: bool) -> DriverSettings:
    """The driver's settings for this run."""
    return DriverSettings(base_url=base_url, model=s.config.gateway.model_name,
                          api_key=s.config.gateway_api_key() or "local", max_turns=s.max_turns,
                          max_tokens=s.max_tokens, temperature=s.temperature, train=train, seed=s.seed)


async def evaluate(base_url: str, s: AgentTrainSettings, label: str, *, record: bool = False,
                   on_episode: Callable[[EpisodeRecord], None] | None = None) -> dict[str, Any]:
    """One pass over the eval tasks; its ``evaluation`` summary. Every pass draws the same
    samples for its i-th episode (seed key ``eval-i``): before and after compare on the same draws."""
    jobs: list[Job] = [(task, f"eval-{label}-{i}", f"eval-{i}") for i, task in enumerate(s.eval_tasks)]
    records = await run_episodes(s.env, jobs, driver_settings(base_url, s, train=record), concurrency=s.concurrency,
                                 on_episode=on_episode, seed_keys=[group for _task, _id, group in jobs])
    return evaluation(records)


def round_jobs(s: AgentTrainSettings, round_index: int) -> list[Job]:
    """The round's task groups: ``tasks_per_round`` tasks, each ``group_size`` times."""
    rng = random.Random(s.seed * 1_000_003 + round_index)
    tasks = rng.sample(list(s.train_tasks), min(s.tasks_per_round, len(s.train_tasks)))
    return [(task, f"train-r{round_index}-t{t}-e{e}", f"r{round_index}-t{t}")
            for t, task in enumerate(tasks) for e in range(s.group_size)]


class _Runner:
    def __init__(self, s: AgentTrainSettings, on_progress: ProgressCallback | None) -> None:
        self.s = s
        self.progress = Progress(total=s.rounds * s.tasks_per_round * s.group_size)
        self.on_progress = on_progress or (lambda _p: None)
        self.curve: list[dict[str, Any]] = []
        self.failed = 0
        self.samples = 0

    def tick(self, phase: str | None = None) -> None:
        if phase is not None:
            self.progress.phase = phase
        self.on_progress(self.progress)

    async def eval_point(self, url: str, label: str) -> dict[str, Any]:
        self.tick(f"evaluating ({label})")
        result = await evaluate(url, self.s, label)
        self.failed += result["requests_failed"]
        self.progress.success = result["success_rate"]
        self.curve.append({"interactions": self.progress.episodes, "train_steps": self.progress.train_steps,
                           "score": result["success_rate"], "mean_outcome": result["mean_outcome"], "label": label})
        self.tick()
        return result

    def on_train_episode(self, record: EpisodeRecord) -> None:
        self.progress.episodes += 1
        self.failed += record.requests_failed
        self.tick()

    async def train_round(self, url: str, index: int, stage: EpisodeSignals, trainer: Any) -> None:
        self.tick("playing")
        records = await run_episodes(self.s.env, round_jobs(self.s, index), driver_settings(url, self.s, train=True),
                                     concurrency=self.s.concurrency, on_episode=self.on_train_episode)
        self.tick("judging")
        groups: dict[str, list[EpisodeRecord]] = {}
        for record in records:
            groups.setdefault(record.group, []).append(record)
        for group in groups.values():
            self.samples += await stage.record_group(group)
        self.tick("training")
        while await trainer.step() is not None:
            self.progress.train_steps = trainer.step_count
            self.tick()

    async def run(self, policy: Path) -> dict[str, Any]:
        from slime_openclaw.engine.child import embedded_engine
        from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
        from slime_openclaw.local.demo.loop import load_trainer
        from slime_openclaw.local.training.trainer_config import TrainerConfig

        s = self.s
        config = run_config(s.config, s.method, s.workdir)
        journal = open_journal(settings=config.journal)
        stack = SignalStack()
        try:
            self.tick("starting the engine")
            with embedded_engine(policy, max_running=16) as engine_url:
                async with EngineClient(engine_url) as engine, \
                        live_service(config, engine_url=engine_url, tokenizer_dir=policy, journal=journal, port=0,
                                     record_only=True) as service:
                    codec = TokenizerCodec.from_dir(policy)
                    base = build_signal_pipeline(config, codec, engine, default_resolver(engine_url), stack)
                    stage = EpisodeSignals(journal, agent_pipeline(base, s.method), s.method, config.agent)
                    trainer_config = TrainerConfig.from_openclaw(
                        config, str(s.workdir / "checkpoints"), batch_size=s.batch_size, min_batch=1, lr=s.lr, temperature=s.temperature,
                        kl_coef=s.kl_coef, wait_s=0.0, threads=1, keep_checkpoints=2,
                        staleness=StalenessPolicy(max_staleness=None, tis_cap=config.tis_clip or 2.0))
                    trainer = await asyncio.get_running_loop().run_in_executor(
                        None, load_trainer, policy, journal, engine, trainer_config)
                    before = await self.eval_point(service.url, "before")
                    for index in range(s.rounds):
                        await self.train_round(service.url, index, stage, trainer)
                        if s.eval_every and (index + 1) % s.eval_every == 0 and index + 1 < s.rounds:
                            await self.eval_point(service.url, f"round {index + 1}")
                    await trainer.sync_engine()
                    after = await self.eval_point(service.url, "after")
                    return self.summary(before, after, trainer, journal)
        finally:
            await stack.aclose()
            journal.close()

    def summary(self, before: dict[str, Any], after: dict[str, Any], trainer: Any, journal: JournalStore
                ) -> dict[str, Any]:
        figures = journal_figures(journal)
        return {
            "env": self.s.env.name, "method": self.s.method,
            "success_before": before["success_rate"], "success_after": after["success_rate"],
            "mean_outcome_before": before["mean_outcome"], "mean_outcome_after": after["mean_outcome"],
            "eval_episodes": after["episodes"], "episodes": self.progress.episodes,
            "train_steps": trainer.step_count, "samples_recorded": self.samples,
            "requests_failed": self.failed, **figures, "seed": self.s.seed,
            "lr": self.s.lr, "batch_size": self.s.batch_size, "kl_coef": self.s.kl_coef,
            "elapsed_s": round(time.monotonic() - self.progress.started, 1), "curve": self.curve,
        }


async def run_training(settings: AgentTrainSettings, policy: Path, on_progress: ProgressCallback | None = None
                       ) -> dict[str, Any]:
    """Run ``agents train`` in ``settings.workdir``; returns the summary (see command.py)."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    return await _Runner(settings, on_progress).run(policy)
