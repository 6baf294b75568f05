"""The fixed preference scorer of the embedded evaluation: deterministic rules, no model.

``preference_score(persona, response_text, problem, tool_calls)`` rates a response in [0, 1]
on the persona's hidden criterion, as the paper's fixed judge rates each session's first
response:

- student: 1.0 when the answer has no "AI look" (no ``**bold**``, no ``#`` heading, no list
  line (``- ``, ``* ``, ``1. ``), no "Final answer" / "Answer:" banner) and is not empty and
  not a tool call; else 0.0;
- teacher: 0.5 for specific (the comment refers to the student's step: an equation or
  "<number> plus/minus/and <number>", or "you added/took/wrote ...") + 0.5 for friendly (a
  warm phrase such as "nice", "great", "well done", "good job"); so 1.0 only when both. Whether
  the numbers are the problem's own is not checked: a ~1M-parameter policy pre-trained for two
  minutes does not learn to copy them reliably (``is_specific(..., exact=True)`` checks it);
- tool user: 1.0 when the reply calls ``get_weather`` with the problem's city (arguments as
  JSON), else 0.0.

The personas use the same rules to decide whether they are satisfied. Arithmetic
correctness is not part of the score (``answer_correct`` reports it separately). This
module does not judge turns for training (that is ``signals/``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slime_openclaw.local.personal.personas import Problem

STUDENT, TEACHER, TOOL_USER = "student", "teacher", "tool_user"

_AI_LOOK = (
    re.compile(r"\*\*|__"),                                       # bold
    re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE),               # markdown heading
    re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE),       # list line
    re.compile(r"\b(?:final answer|answer)\s*:", re.IGNORECASE),  # banner
)
_FRIENDLY = re.compile(
    r"\b(?:nice|great|well done|good (?:job|work|thinking)|lovely|excellent|brilliant|keep it up|awesome)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<!\d)-?\d+")


def numbers_in(text: str) -> list[str]:
    """The integers written in ``text``, as strings (a minus sign right before digits is kept)."""
    return _NUMBER.findall(text or "")


def has_ai_look(text: str) -> bool:
    """True when the text has bold, a heading, a list line or an answer banner."""
    return any(pattern.search(text) for pattern in _AI_LOOK)


def is_friendly(text: str) -> bool:
    """True when the text contains a warm phrase."""
    return bool(_FRIENDLY.search(text))


_STEP = re.compile(
    r"\d+\s*(?:[-+=×*/]|plus|minus|and|times|take away|away from)\s*\d+"
    r"|\byou (?:added|took|subtracted|wrote|worked out)\b|\byou got -?\d",
    re.IGNORECASE,
)


def is_specific(text: str, problem: Problem | None = None, *, exact: bool = False) -> bool:
    """True when the text refers to the student's step (an equation, "you added ...").

    With ``exact`` and a problem: when it names at least two of the problem's own numbers.
    """
    if not exact or problem is None:
        return bool(_STEP.search(text))
    found = [n.lstrip("-") for n in numbers_in(text)]
    wanted = {str(problem.a), str(problem.b), str(problem.answer)}
    return len(wanted.intersection(found)) >= 2 or (problem.a == problem.b and found.count(str(problem.a)) >= 2)


def _calls_weather_for(tool_calls: Sequence[Any], city: str) -> bool:
    for call in tool_calls:
        if getattr(call, "name", None) != "get_weather":
            continue
        try:
            arguments = json.loads(getattr(call, "arguments", "") or "{}")
        except ValueError:
            continue
        if isinstance(arguments, dict) and str(arguments.get("city", "")).strip().lower() == city.lower():
            return True
    return False


def preference_score(persona: str, response_text: str, problem: Problem | None = None,
                     tool_calls: Sequence[Any] = ()) -> float:
    """The persona's preference score of one response, in [0, 1] (rules in the module docstring).

    ``tool_calls`` are objects with ``name`` and ``arguments`` (``personas.ToolCall``).
    """
    text = response_text or ""
    if persona == STUDENT:
        return 1.0 if text.strip() and not tool_calls and not has_ai_look(text) else 0.0
    if persona == TEACHER:
        if tool_calls or not text.strip():
            return 0.0
        return 0.5 * is_specific(text, problem) + 0.5 * is_friendly(text)
    if persona == TOOL_USER:
        return 1.0 if problem is not None and _calls_weather_for(tool_calls, problem.city) else 0.0
    raise ValueError(f"unknown persona: {persona!r}")


def answer_correct(response_text: str, problem: Problem) -> bool:
    """True when the last number in the response is the problem's result (arithmetic personas)."""
    found = numbers_in(response_text)
    return bool(found) and found[-1] == str(problem.answer)
