"""One turn's signals: judge, hint, teacher, samples, run as the training method needs.

``SignalPipeline.run(turn, next_state)`` returns a ``SignalOutcome`` to record, or raises
``JudgeUnavailable`` when a model it needs is down (the turn stays OBSERVED and is retried
later; nothing is recorded, nothing is lost). Which judges and extractors are used, and
which engine is the teacher, is decided by whoever builds the pipeline (config.py). The
loop that claims turns and records outcomes is worker.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from slime_openclaw.errors import JudgeError
from slime_openclaw.signals.context import DEFAULT_SECTION_CHARS, JudgeInput, has_next_state
from slime_openclaw.signals.hints import HintExtractor
from slime_openclaw.signals.judge import Judge, JudgeUnavailable, judge_unavailable
from slime_openclaw.signals.samples import (
    build_samples,
    directive_teacher,
    evaluative_reward,
    no_sample_reason,
)
from slime_openclaw.signals.teacher import TeacherResult, TeacherScorer
from slime_openclaw.types import Hint, Method, NextState, TrainingSample, Turn, TurnType, Verdict


@dataclass(frozen=True)
class SignalOutcome:
    """What to record for one turn."""

    verdict: Verdict | None
    hint: Hint | None
    teacher: TeacherResult | None
    samples: list[TrainingSample]
    reason: str | None = None
    """Why the turn gives no sample (None when it gives one)."""
    errors: tuple[str, ...] = field(default_factory=tuple)
    """Permanent failures met on the way (e.g. the turn could not be scored by the teacher)."""


class SignalPipeline:
    """Evaluative and directive signals of a turn for one training method."""

    def __init__(
        self,
        method: Method,
        judge: Judge | None = None,
        hints: HintExtractor | None = None,
        teacher: TeacherScorer | None = None,
        section_chars: int = DEFAULT_SECTION_CHARS,
    ) -> None:
        self.method = method
        self.judge = judge if method in (Method.BINARY, Method.COMBINE) else None
        self.hints = hints if method in (Method.OPD, Method.COMBINE) else None
        self.teacher = teacher
        self.section_chars = section_chars
        if method is Method.BINARY and self.judge is None:
            raise ValueError("method binary needs a judge")
        if method is Method.OPD and (self.hints is None or teacher is None):
            raise ValueError("method opd needs a hint extractor and a teacher")
        if method is Method.COMBINE and self.judge is None and (self.hints is None or teacher is None):
            raise ValueError("method combine needs a judge, or a hint extractor and a teacher")

    async def run(self, turn: Turn, next_state: NextState | None) -> SignalOutcome:
        """Signals and samples for ``turn``; raises ``JudgeUnavailable`` to defer it."""
        if turn.turn_type is not TurnType.MAIN or not turn.response_ids:
            return SignalOutcome(None, None, None, [], no_sample_reason(turn, None, None, self.method))
        if next_state is None or not has_next_state(next_state):
            return SignalOutcome(None, None, None, [], "no next state")
        item = JudgeInput.from_turn(turn, next_state, self.section_chars)
        verdict_or_error, hint_or_error = await asyncio.gather(
            self._verdict(item), self._hint(item), return_exceptions=True
        )
        for result in (verdict_or_error, hint_or_error):
            if isinstance(result, BaseException):
                raise result
        verdict = verdict_or_error if isinstance(verdict_or_error, Verdict) else None
        hint = hint_or_error if isinstance(hint_or_error, Hint) else None
        teacher, errors = await self._teacher(turn, hint)
        samples = build_samples(turn, verdict, hint, teacher, self.method)
        reason = None
        if not samples:
            reason = no_sample_reason(turn, evaluative_reward(verdict), directive_teacher(hint, teacher), self.method)
        return SignalOutcome(verdict, hint, teacher, samples, reason, errors)

    async def _verdict(self, item: JudgeInput) -> Verdict | None:
        if self.judge is None:
            return None
        verdict = await self.judge.judge(item)
        if verdict is not None and judge_unavailable(verdict):
            raise JudgeUnavailable(f"judge {verdict.judge}: every vote failed")
        return verdict

    async def _hint(self, item: JudgeInput) -> Hint | None:
        return await self.hints.extract(item) if self.hints is not None else None

    async def _teacher(self, turn: Turn, hint: Hint | None) -> tuple[TeacherResult | None, tuple[str, ...]]:
        if self.teacher is None or hint is None or not hint.accepted:
            return None, ()
        try:
            return await self.teacher.score(turn, hint.text), ()
        except JudgeUnavailable:
            raise
        except JudgeError as exc:
            return None, (f"teacher: {exc.message}",)
