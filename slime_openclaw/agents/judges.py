"""The process score of one agent step: rules on the environment's signals, then the signal judges.

``EnvSignalJudge`` reads ``Step.info`` (keys of ``envs.SIGNAL_KEYS``): a tool error, a
timeout, a traceback or a check that broke is -1; a check fixed (tests failing -> passing)
is +1; otherwise the exit code decides (0: +1, else -1); with none of these it abstains.
``StepJudge`` asks it first (when rules are on), then the signal pipeline's judge (the same
rule judges on the answer's text and the LLM PRM with m votes, its own tokenizer, template
and timeouts, as for personal agents: signals/judge.py) over ``step_judge_input``: the
task, the ``recent`` steps before this one, this step's action and the environment's answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slime_openclaw.agents.episode import EpisodeRecord, StepRecord
from slime_openclaw.signals.context import DEFAULT_SECTION_CHARS, JudgeInput, clip, labelled, message_text
from slime_openclaw.signals.judge import Judge, JudgeUnavailable, judge_unavailable
from slime_openclaw.types import Message, NextStateKind, Verdict

Decision = tuple[int, str]


def env_signal_decision(info: dict[str, Any]) -> Decision | None:
    """The rule verdict of one step's signals, or None when they say nothing (module docstring)."""
    if info.get("tool_error"):
        return -1, "tool error"
    if info.get("timed_out"):
        return -1, "command timed out"
    if info.get("traceback"):
        return -1, "traceback"
    if info.get("checks_broken"):
        return -1, f"checks broken: {len(info['checks_broken'])}"
    if info.get("checks_fixed"):
        return 1, f"checks fixed: {len(info['checks_fixed'])}"
    code = info.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return (1, "exit code 0") if code == 0 else (-1, f"exit code {code}")
    return None


class EnvSignalJudge:
    """Rules on ``Step.info``; one vote, abstains when the signals are silent."""

    name = "rule:env_signals"

    def judge_info(self, info: dict[str, Any]) -> Verdict | None:
        """See the module docstring."""
        decided = env_signal_decision(info)
        if decided is None:
            return None
        return Verdict(score=decided[0], votes=(decided[0],), rationale=decided[1], judge=self.name)


def _step_text(step: StepRecord) -> str:
    return "\n\n".join(labelled(m) for m in (step.reply, *step.answer))


def step_judge_input(episode: EpisodeRecord, step: StepRecord, next_messages: Sequence[Message],
                     recent: int, limit: int = DEFAULT_SECTION_CHARS) -> JudgeInput:
    """What the process judge sees of ``step``: task, ``recent`` earlier steps, action, answer."""
    earlier = [s for s in episode.steps if s.turn_index < step.turn_index][-recent:] if recent > 0 else []
    return JudgeInput(
        task=clip(episode.task_text, limit),
        since_task=clip("\n\n".join(_step_text(s) for s in earlier), limit),
        response=clip(message_text(step.reply), limit),
        next_state=clip("\n\n".join(labelled(m) for m in next_messages), limit),
        next_state_kind=NextStateKind.ENVIRONMENT,
        next_messages=tuple(next_messages),
    )


@dataclass
class StepJudge:
    """Environment-signal rules first (``env_rules``), then ``judge`` (the pipeline's), else abstain."""

    judge: Judge | None
    env_rules: bool = True

    async def score(self, item: JudgeInput, info: dict[str, Any], answered: bool = True) -> Verdict | None:
        """The step's verdict; votes are what the reward's ``mean(votes)`` averages.

        ``answered`` False (the environment gave no answer): only the signal rules may speak.
        """
        if self.env_rules:
            verdict = EnvSignalJudge().judge_info(info)
            if verdict is not None:
                return verdict
        if self.judge is None or not answered:
            return None
        verdict = await self.judge.judge(item)
        if verdict is not None and judge_unavailable(verdict):
            raise JudgeUnavailable(f"judge {verdict.judge}: every vote failed")
        return verdict
