"""Finished episodes -> judged steps -> trained samples, through the journal.

For each step of an episode the stage reads the turn the gateway recorded under
``<episode id>:<turn index>`` (the step's key: a score never moves to another step) and
its next state (the environment's answer, as recorded), then:

A final reply the environment did not answer (it ended the episode) is still a step: it
gets the outcome term and any environment-signal verdict, no model judgment.

- ``prm`` / ``combine``: the process verdict (``judges.StepJudge``: environment-signal
  rules, then the pipeline's judge: text rules or the LLM PRM with m votes);
- ``combine``: a hint from the answer (the pipeline's extractors) and, when accepted, the
  teacher's log-probs on the step's exact tokens under the hint (hindsight OPD);
- the raw step reward ``w_outcome * (2 * score - 1) + w_prm * mean(votes)`` with the
  outcome recorded on the session (rewards.py).

``record_group`` standardizes a task group's rewards (``openclaw_agent_normalization``) and
records each step's verdict, hint and sample with ``record_signals`` (the turn becomes
READY; the local trainer drains it like any sample); steps without signal, the closing
turn and turns that never got a next state are discarded with a reason; so is every turn
of an episode its environment failed (``env_failure``: not the agent's fault, never
trained; its task group is normalized without it). The slime path
calls ``judge_episode`` and keeps raw rewards (its hook normalizes, slime/agent_*.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from slime_openclaw.agents.episode import EpisodeRecord, StepRecord
from slime_openclaw.agents.judges import StepJudge, step_judge_input
from slime_openclaw.agents.rewards import RewardWeights, StepValue, normalize, step_reward
from slime_openclaw.config_agent import AgentConfig
from slime_openclaw.gateway.sessions import session_end
from slime_openclaw.journal.base import JournalStore, TurnRecord
from slime_openclaw.signals.context import JudgeInput, has_next_state
from slime_openclaw.signals.pipeline import SignalPipeline
from slime_openclaw.signals.samples import directive_teacher, sample_for
from slime_openclaw.signals.teacher import TeacherResult
from slime_openclaw.types import Hint, Method, TrainingSample, TurnState, Verdict

log = logging.getLogger(__name__)

AGENT_METHODS = ("outcome", "prm", "combine")
"""``outcome``: the outcome term only; ``prm``: outcome + process votes; ``combine``: both plus OPD from hints."""


def sample_method(method: str) -> Method:
    """The journal's method for an agent method (evaluative only, or evaluative + directive)."""
    return Method.COMBINE if method == "combine" else Method.BINARY


@dataclass(frozen=True)
class JudgedStep:
    """One step with its recorded turn and its signals; ``raw_reward`` before normalization."""

    episode: EpisodeRecord
    step: StepRecord
    record: TurnRecord
    verdict: Verdict | None
    hint: Hint | None
    teacher: TeacherResult | None
    raw_reward: float

    @property
    def turn_key(self) -> str:
        return self.record.turn.key


def _matches(record: TurnRecord | None, step: StepRecord) -> bool:
    """The recorded turn is the step's: same reply (content and tool calls), and a next state
    whenever the environment answered (a final reply it did not answer needs none)."""
    if record is None or (step.answer and not has_next_state(record.next_state)):
        return False
    said = record.turn.response_message
    return (said.get("content") or "") == (step.reply.get("content") or "") and \
        len(said.get("tool_calls") or ()) == len(step.reply.get("tool_calls") or ())


def env_failure_reason(episode: EpisodeRecord) -> str:
    """The discard reason of an environment-failed episode's turns (the journal keeps why)."""
    return f"environment failure: {episode.error}"[:300]


class EpisodeSignals:
    """The signal stage of general agents over one journal (see the module docstring)."""

    def __init__(self, journal: JournalStore, pipeline: SignalPipeline | None, method: str,
                 config: AgentConfig | None = None) -> None:
        if method not in AGENT_METHODS:
            raise ValueError(f"agent method must be one of {AGENT_METHODS}, got {method!r}")
        if method == "combine" and (pipeline is None or pipeline.hints is None or pipeline.teacher is None):
            raise ValueError("method combine needs a pipeline with hint extractors and a teacher")
        self.journal, self.pipeline, self.method = journal, pipeline, method
        self.config = config or AgentConfig()
        self.weights = RewardWeights.from_config(self.config)
        self.judge = StepJudge(pipeline.judge if pipeline is not None else None) if method != "outcome" else None

    def outcome_score(self, episode: EpisodeRecord) -> float:
        """The outcome recorded on the episode's session (the driver's measurement if none was)."""
        recorded = self.journal.get_outcome(episode.episode_id)
        return recorded.score if recorded is not None else episode.outcome.score

    async def judge_episode(self, episode: EpisodeRecord) -> list[JudgedStep]:
        """Every step whose turn is recorded with its next state, judged; in turn order.

        None for an episode its environment failed: it says nothing about the agent."""
        if episode.env_failed:
            return []
        score = self.outcome_score(episode)
        judged = []
        for step in episode.steps:
            record = self.journal.get(f"{episode.episode_id}:{step.turn_index}")
            if not _matches(record, step):
                continue
            assert record is not None
            if record.state is TurnState.SERVED:  # the final reply, unanswered: its session is over
                self.journal.attach_next_state(record.turn.key, session_end(time.time()))
                record = self.journal.get(record.turn.key) or record
            answered = has_next_state(record.next_state)
            shown = record.next_state.messages if answered and record.next_state is not None else ()
            item = step_judge_input(episode, step, shown, self.config.recent_steps)
            verdict = await self.judge.score(item, step.info, answered) if self.judge is not None else None
            hint, teacher = await self._directive(record, item) if answered else (None, None)
            reward = step_reward(score, verdict.votes if verdict is not None else (), self.weights)
            judged.append(JudgedStep(episode, step, record, verdict, hint, teacher, reward))
        return judged

    async def _directive(self, record: TurnRecord, item: JudgeInput) -> tuple[Hint | None, TeacherResult | None]:
        if self.method != "combine" or self.pipeline is None or self.pipeline.hints is None:
            return None, None
        hint = await self.pipeline.hints.extract(item)
        if hint is None or not hint.accepted or self.pipeline.teacher is None:
            return hint, None
        return hint, await self.pipeline.teacher.score(record.turn, hint.text)

    def samples(self, judged: Sequence[JudgedStep]) -> list[TrainingSample | None]:
        """One sample per judged step (None: no signal), rewards normalized over ``judged``."""
        values = [StepValue(j.episode.group, j.step.turn_index, j.raw_reward) for j in judged]
        rewards = normalize(values, self.config.normalization)
        out: list[TrainingSample | None] = []
        for j, reward in zip(judged, rewards, strict=True):
            directive = directive_teacher(j.hint, j.teacher)
            if reward is None and directive is None:
                out.append(None)
                continue
            out.append(sample_for(j.record.turn, sample_method(self.method), reward or 0.0, directive))
        return out

    async def record_group(self, episodes: Sequence[EpisodeRecord]) -> int:
        """Judge a task group's episodes, record their samples; returns the samples recorded."""
        judged = [j for js in await asyncio.gather(*(self.judge_episode(e) for e in episodes)) for j in js]
        samples = self.samples(judged)
        for j, sample in zip(judged, samples, strict=True):
            self.journal.record_signals(j.turn_key, j.verdict, j.hint, [sample] if sample else [])
        for episode in episodes:
            self._discard_rest(episode, {j.turn_key for j in judged})
        return sum(1 for s in samples if s is not None)

    def discard_episode(self, episode: EpisodeRecord) -> None:
        """Discard every open turn of ``episode`` with its reason (an environment failure's)."""
        self._discard_rest(episode, set())

    def _discard_rest(self, episode: EpisodeRecord, done: set[str]) -> None:
        """The closing turn and any turn of the episode left without a sample path."""
        for index in range(len(episode.steps) + 1):
            key = f"{episode.episode_id}:{index}"
            record = self.journal.get(key)
            if key in done or record is None or record.state not in (TurnState.SERVED, TurnState.OBSERVED):
                continue
            reason = env_failure_reason(episode) if episode.env_failed else \
                "episode closing turn" if index == len(episode.steps) else "step not judged"
            self.journal.discard(key, reason)
