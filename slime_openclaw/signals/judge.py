"""Evaluative signal: the judge interface, majority voting, and the LLM process-reward judge.

A judge maps (task context, response, next state) to a ``Verdict`` with a score in
{+1, 0, -1}, or abstains (returns None) so that another judge may decide (rules.py composes
them). ``LLMJudge`` asks a model m times concurrently, parses a final ``\\boxed{1|0|-1}``
from each answer, and takes the majority. Rule-based judges live in rules.py; how text is
obtained from a model lives in judge_backends.py. Nothing here is on the serving path.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from slime_openclaw.errors import JudgeError
from slime_openclaw.signals.context import JudgeInput
from slime_openclaw.signals.judge_backends import RetryPolicy, TextGenerator, VoteOutcome, call_with_retries
from slime_openclaw.types import Message, Verdict

log = logging.getLogger(__name__)
_BOXED = re.compile(r"\\boxed\{\s*([^{}]*?)\s*\}")
_SCORES = {"1": 1, "+1": 1, "0": 0, "-1": -1}


class JudgeUnavailable(JudgeError):
    """No vote got an answer at all (timeouts, connection errors): retry the turn later."""


class Judge(Protocol):
    """(task, response, next state) -> verdict, or None to abstain."""

    name: str

    async def judge(self, item: JudgeInput) -> Verdict | None:
        """Score the response; None when this judge has nothing to say about it."""
        ...


def parse_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text``, stripped; None when there is none."""
    found = _BOXED.findall(text)
    return found[-1] if found else None


def parse_score(text: str) -> int | None:
    """The score of a judge answer: the last ``\\boxed{}`` holding 1, +1, 0 or -1; else None."""
    boxed = parse_boxed(text)
    if boxed is None:
        return None
    return _SCORES.get(boxed.replace(" ", ""))


def majority(votes: Sequence[int | None]) -> int:
    """The strict plurality among the votes that did not fail; ties and no valid votes give 0.

    ``[1, 1, -1] -> 1``, ``[1, -1, None] -> 0`` (tie), ``[1, None, None] -> 1``,
    ``[None, None] -> 0``, ``[1, 0, 0] -> 0``.
    """
    counts = Counter(v for v in votes if v is not None).most_common()
    if not counts:
        return 0
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return 0
    return counts[0][0]


_JUDGE_SYSTEM = (
    "You review one step of an AI assistant's work. You decide whether that step was good by "
    "looking at what happened right after it: the next state."
)

_JUDGE_INSTRUCTIONS = """\
Decide whether the ASSISTANT RESPONSE was good, using the NEXT STATE as evidence: it is what \
the user, a tool or the environment produced right after the response (its role: {roles}).

Signs the response was good (score 1):
- the user moves on to something new, builds on the answer, approves or says thanks;
- a tool call or command the response made ran successfully, or the tests passed.
Signs the response was bad (score -1):
- the user asks for a redo or a retry, or repeats or rephrases the same request;
- the user corrects the assistant ("no, I meant ...", "that's wrong", "I said ...");
- a tool call or command the response made failed, or the response caused an error or a failing test.
If the next state gives no evidence either way, the score is 0.

Judge only the response shown, in light of the task. Explain briefly, then end your answer \
with exactly one of \\boxed{{1}}, \\boxed{{0}} or \\boxed{{-1}}."""


def build_judge_messages(item: JudgeInput) -> list[Message]:
    """The process-reward judge's chat messages for one turn (our own prompt)."""
    return item.prompt_messages(_JUDGE_SYSTEM, _JUDGE_INSTRUCTIONS.format(roles=item.next_roles))


@dataclass(frozen=True)
class VoteTally:
    """Votes of one LLM call round, with failure counts."""

    votes: tuple[int | None, ...]
    texts: tuple[str | None, ...]
    failures: int
    """Votes with no usable score (transport failures plus parse failures)."""
    parse_failures: int
    """Votes whose text had no parsable answer."""
    errors: tuple[str, ...]
    """The transport errors, one per vote that got no text."""

    @property
    def unavailable(self) -> bool:
        """True when no vote got any text back: the model is down, not undecided."""
        return bool(self.votes) and all(t is None for t in self.texts)


async def run_votes(
    generator: TextGenerator, messages: list[Message], m: int, policy: RetryPolicy
) -> list[VoteOutcome]:
    """``m`` independent calls of ``generator`` on ``messages``, concurrently."""
    return list(await asyncio.gather(*(call_with_retries(lambda: generator.complete(messages), policy) for _ in range(m))))


class LLMJudge:
    """Process-reward judge: m concurrent votes of a model, majority wins."""

    def __init__(self, generator: TextGenerator, votes: int = 3, policy: RetryPolicy | None = None) -> None:
        if votes < 1:
            raise ValueError("an LLM judge needs at least one vote")
        self.generator = generator
        self.votes = votes
        self.policy = policy or RetryPolicy()
        self.name = f"llm:{generator.name}"

    async def tally(self, item: JudgeInput) -> VoteTally:
        """Run the votes and parse each answer."""
        outcomes = await run_votes(self.generator, build_judge_messages(item), self.votes, self.policy)
        votes = [None if o.value is None else parse_score(o.value) for o in outcomes]
        parse_failures = sum(1 for o, v in zip(outcomes, votes, strict=True) if o.value is not None and v is None)
        return VoteTally(
            votes=tuple(votes),
            texts=tuple(o.value for o in outcomes),
            failures=sum(1 for v in votes if v is None),
            parse_failures=parse_failures,
            errors=tuple(o.error for o in outcomes if o.error is not None),
        )

    async def judge(self, item: JudgeInput) -> Verdict:
        """Majority of the votes; a verdict even when every vote failed (score 0, failures = m).

        Callers that must tell a dead judge from an undecided one check ``failures`` against
        ``parse_failures`` (see ``judge_unavailable``).
        """
        tally = await self.tally(item)
        if tally.unavailable:
            log.warning("judge %s: no vote answered (%s)", self.name, "; ".join(sorted(set(tally.errors))))
        score = majority(tally.votes)
        return Verdict(
            score=score,
            votes=tally.votes,
            rationale=_rationale(tally, score),
            judge=self.name,
            failures=tally.failures,
            parse_failures=tally.parse_failures,
        )


def judge_unavailable(verdict: Verdict) -> bool:
    """True when every vote failed without an answer (timeouts, errors): retry later, do not score."""
    return bool(verdict.votes) and verdict.failures == len(verdict.votes) and verdict.parse_failures == 0


def _rationale(tally: VoteTally, score: int, limit: int = 600) -> str:
    """The reasoning of the first vote that agreed with the final score (text before its box)."""
    for vote, text in zip(tally.votes, tally.texts, strict=True):
        if vote == score and text is not None:
            cut = text.rfind("\\boxed")
            return text[: cut if cut >= 0 else len(text)].strip()[:limit]
    return ""
