"""Rule-based judges for next states that need no model, and judge composition.

- ``ToolOutcomeJudge``: tool/environment results carrying an explicit error flag, a non-zero
  exit code or a traceback (-1), or an explicit zero exit code / success flag (+1).
- ``TestVerdictJudge``: test-runner summaries (pytest, unittest, JSON verdicts).
- ``UserRatingJudge``: explicit user ratings (thumbs up/down, "that's right", "wrong").
- ``ReplyDroppedJudge``: the client discarded the response and went on without it (-1).
- ``FirstDecisive``: ask judges in order, the first that does not abstain decides
  (e.g. rules first, the LLM judge when every rule abstains).

A rule judge abstains (returns None) whenever the evidence is not explicit: guessing is the
LLM judge's job. Rule verdicts have one vote and no failures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from slime_openclaw.signals.context import JudgeInput, content_text
from slime_openclaw.signals.judge import Judge
from slime_openclaw.types import Message, NextStateKind, Verdict

Decision = tuple[int, str]
"""A rule's score and its one-line reason."""

_EXIT_KEYS = ("exit_code", "exitCode", "returncode", "return_code", "exit_status", "exitStatus")
_EXIT_TEXT = re.compile(
    r"(?:exit(?:ed)?\s*(?:with\s*)?(?:code|status)|return\s*code|returncode)\s*[:=]?\s*\(?(-?\d+)", re.IGNORECASE
)
_TRACEBACK = "Traceback (most recent call last):"


def _verdict(decision: Decision | None, name: str) -> Verdict | None:
    if decision is None:
        return None
    score, reason = decision
    return Verdict(score=score, votes=(score,), rationale=reason, judge=name)


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _outcome_messages(item: JudgeInput) -> list[Message]:
    """Tool results, plus every message of an environment next state."""
    if item.next_state_kind is NextStateKind.ENVIRONMENT:
        return list(item.next_messages)
    return [m for m in item.next_messages if m.get("role") == "tool"]


def _structured_outcome(obj: dict[str, Any]) -> Decision | None:
    for key in ("is_error", "isError"):
        if obj.get(key) is True:
            return -1, f"tool result flagged {key}"
    for key in _EXIT_KEYS:
        code = obj.get(key)
        if isinstance(code, int) and not isinstance(code, bool):
            return (-1, f"{key} {code}") if code != 0 else (1, f"{key} 0")
    error = obj.get("error")
    if error:
        return -1, "tool result carries an error"
    for key in ("success", "ok"):
        if isinstance(obj.get(key), bool):
            return (1, f"{key} true") if obj[key] else (-1, f"{key} false")
    return None


def tool_outcome(message: Message) -> Decision | None:
    """The explicit outcome of one tool/environment message, or None when it states none."""
    if message.get("is_error") is True:
        return -1, "tool result flagged is_error"
    text = content_text(message.get("content"))
    obj = _json_object(text)
    if obj is not None:
        decided = _structured_outcome(obj)
        if decided is not None:
            return decided
    if _TRACEBACK in text:
        return -1, "traceback in tool result"
    codes = [int(c) for c in _EXIT_TEXT.findall(text)]
    if codes:
        bad = [c for c in codes if c != 0]
        return (-1, f"exit code {bad[-1]}") if bad else (1, "exit code 0")
    return None


class ToolOutcomeJudge:
    """-1 if any tool result failed explicitly, +1 if all stated success, else abstain."""

    name = "rule:tool_outcome"

    async def judge(self, item: JudgeInput) -> Verdict | None:
        """See the class docstring."""
        decisions = [tool_outcome(m) for m in _outcome_messages(item)]
        if not decisions:
            return None
        failed = [d for d in decisions if d is not None and d[0] < 0]
        if failed:
            return _verdict(failed[0], self.name)
        if all(d is not None for d in decisions):
            return _verdict((1, "; ".join(d[1] for d in decisions if d is not None)), self.name)
        return None


_PYTEST_SUMMARY = re.compile(r"=+ (.*\b(?:passed|failed|error|errors)\b.*) in [\d.]+s", re.IGNORECASE)
_COUNT = re.compile(r"(\d+) (passed|failed|errors?)", re.IGNORECASE)
_UNITTEST_FAILED = re.compile(r"^FAILED \((?:failures|errors)=\d+", re.MULTILINE)
_UNITTEST_OK = re.compile(r"^Ran \d+ tests? in [\d.]+s\s*\n\s*\nOK\b", re.MULTILINE)


def parse_test_run(text: str) -> Decision | None:
    """The verdict of a test run's output: pytest / unittest summary or a JSON verdict."""
    obj = _json_object(text)
    if obj is not None:
        if isinstance(obj.get("tests_passed"), bool):
            return (1, "tests passed") if obj["tests_passed"] else (-1, "tests failed")
        failed, passed = obj.get("failed"), obj.get("passed")
        if isinstance(failed, int) and isinstance(passed, int) and not isinstance(failed, bool):
            return (-1, f"{failed} tests failed") if failed else ((1, f"{passed} tests passed") if passed else None)
    summary = _PYTEST_SUMMARY.findall(text)
    if summary:
        counts = {kind.lower().rstrip("s"): int(n) for n, kind in _COUNT.findall(summary[-1])}
        bad = counts.get("failed", 0) + counts.get("error", 0)
        if bad:
            return -1, f"pytest: {bad} failed or errored"
        if counts.get("passed", 0):
            return 1, f"pytest: {counts['passed']} passed"
    if _UNITTEST_FAILED.search(text):
        return -1, "unittest: FAILED"
    if _UNITTEST_OK.search(text):
        return 1, "unittest: OK"
    return None


class TestVerdictJudge:
    """The last test verdict found in tool/environment results decides; abstain without one."""

    __test__ = False  # not a pytest test class despite its name
    name = "rule:test_verdict"

    async def judge(self, item: JudgeInput) -> Verdict | None:
        """See the class docstring."""
        found = [parse_test_run(content_text(m.get("content"))) for m in _outcome_messages(item)]
        decided = [d for d in found if d is not None]
        return _verdict(decided[-1], self.name) if decided else None


_PUNCT_END = r"\s*(?:$|[.!,;:)\-—])"
_POSITIVE_WORDS = (
    r"thumbs up",
    r"\+1",
    r"(?:yes,?\s*)?(?:that'?s|that is|this is|it'?s) (?:right|correct|perfect|exactly (?:it|right|what i (?:wanted|needed)))",
    r"correct",
    r"exactly",
    r"perfect",
    r"great(?:,? thanks?(?: you)?)?",
    r"(?:many )?thanks?(?: you)?(?: so much)?",
    r"(?:it |that )?works(?: now)?",
    r"looks good(?: to me)?",
    r"lgtm",
)
_NEGATIVE_WORDS = (
    r"thumbs down",
    r"-1",
    r"(?:no,?\s*)?(?:that'?s|that is|this is|it'?s) (?:wrong|incorrect|not (?:right|correct|it))",
    r"wrong",
    r"incorrect",
)
_NEGATIVE_PHRASES = (
    r"no,?\s+i (?:meant|said|asked)",
    r"that'?s not what i (?:asked|wanted|meant)",
    r"(?:that|it) (?:didn'?t|does ?n[o']t) work",
    r"(?:please )?(?:try again|redo (?:it|this|that))",
)
_POSITIVE = re.compile(r"^(?:👍|(?:" + "|".join(_POSITIVE_WORDS) + ")" + _PUNCT_END + ")", re.IGNORECASE)
_NEGATIVE = re.compile(
    r"^(?:👎|(?:" + "|".join(_NEGATIVE_WORDS) + ")" + _PUNCT_END + "|(?:" + "|".join(_NEGATIVE_PHRASES) + r")\b)",
    re.IGNORECASE,
)


def user_rating(text: str) -> Decision | None:
    """An explicit rating at the start of a user message, or None (no guessing at tone)."""
    head = text.strip().lstrip("\"'“").replace("’", "'")
    if _NEGATIVE.match(head):
        return -1, "explicit negative rating from the user"
    if _POSITIVE.match(head):
        return 1, "explicit positive rating from the user"
    return None


class UserRatingJudge:
    """Explicit ratings in the user's reply (first user message of the next state) decide."""

    name = "rule:user_rating"

    async def judge(self, item: JudgeInput) -> Verdict | None:
        """See the class docstring."""
        for message in item.next_messages:
            if message.get("role") == "user":
                return _verdict(user_rating(content_text(message.get("content"))), self.name)
        return None


class ReplyDroppedJudge:
    """-1 when the client went on without the response (mini-swe-agent drops a malformed reply
    and sends a format error instead): the strongest evaluative signal there is. Else abstain."""

    name = "rule:reply_dropped"

    async def judge(self, item: JudgeInput) -> Verdict | None:
        """See the class docstring."""
        return _verdict((-1, "the client discarded the response"), self.name) if item.reply_dropped else None


class FirstDecisive:
    """Ask judges in order; the first verdict that is not an abstention is the answer."""

    def __init__(self, judges: Sequence[Judge]) -> None:
        if not judges:
            raise ValueError("FirstDecisive needs at least one judge")
        self.judges = tuple(judges)
        self.name = "first(" + ",".join(j.name for j in self.judges) + ")"

    async def judge(self, item: JudgeInput) -> Verdict | None:
        """The first non-abstaining judge's verdict, or None when all abstain."""
        for judge in self.judges:
            verdict = await judge.judge(item)
            if verdict is not None:
                return verdict
        return None


def default_rule_judges() -> list[Judge]:
    """The rule judges in the order they are consulted: a dropped reply, tests, tool outcomes, user ratings."""
    return [ReplyDroppedJudge(), TestVerdictJudge(), ToolOutcomeJudge(), UserRatingJudge()]
