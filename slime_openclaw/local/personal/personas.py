"""Simulated users of the embedded loop: scripted, seeded personas with a hidden preference.

Three personas, after the paper's personal-agent evaluation scaled to a ~1M-parameter policy:

- ``StudentPersona``: asks small arithmetic questions ("What is 7 + 5?") and wants answers
  without the "AI look" (no bold, headings, lists or "Final answer" banners).
- ``TeacherPersona``: asks for a grading comment on a student's (correct) answer and wants it
  specific (naming the student's numbers) and friendly.
- ``ToolUserPersona``: asks for the weather in a city with a ``get_weather`` tool; the next state
  of a tool call is the simulated tool's result, a success or an error JSON.

A persona reacts to each reply the way the rule-based signals of ``signals/`` can read:
satisfied -> a thanks ("Thanks!", a +1 for ``UserRatingJudge``); not satisfied -> a re-ask
("Please try again.", -1) or, with probability ``p_directive``, a directive correction opening
with "No, I meant ..." / "Please don't ..." (``explicit_correction`` turns it into the hint, and
the "No, I meant" forms are also -1 ratings); after ``max_attempts`` replies it gives up
("That's not what I asked for. Never mind.", -1). Every random choice comes from the ``rng``
passed in, so a seed fixes the whole conversation given the replies.

This module neither talks to the gateway (users.py does) nor scores first responses for the
evaluation (scoring.py does; ``satisfied_by`` here uses the same rules).
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from slime_openclaw.local.personal import scoring
from slime_openclaw.types import Message

STUDENT, TEACHER, TOOL_USER = scoring.STUDENT, scoring.TEACHER, scoring.TOOL_USER

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CITIES: tuple[str, ...] = (
    "Paris", "London", "Berlin", "Tokyo", "Madrid", "Rome", "Oslo", "Cairo", "Lima", "Sydney", "Boston", "Dublin",
)
SKIES: tuple[str, ...] = ("sunny", "cloudy", "rainy", "windy", "foggy")

THANKS: tuple[str, ...] = ("Thanks!", "Great, thanks!", "Perfect, thank you.", "Thanks, that helps.")
REASKS: tuple[str, ...] = ("Please try again.", "Try again, please.", "That's not what I wanted. {question}")
GIVE_UP = "That's not what I asked for. Never mind."

STUDENT_DIRECTIVES: tuple[str, ...] = (
    "No, I meant a plain answer: don't use bold, headings or lists.",
    "Please don't use bold or lists, just write it in a plain sentence.",
    "No, I meant it should not look AI-written: one plain sentence, no bold and no lists.",
)
TEACHER_DIRECTIVES: tuple[str, ...] = (
    "No, I meant a specific, friendly comment that mentions the student's step.",
    "Please don't be so generic: be friendly and mention what the student did.",
    "No, I meant a warm comment that names the numbers the student used.",
)
TOOL_DIRECTIVE = "No, I meant the current weather: please use the get_weather tool."


class ReactionKind(str, enum.Enum):
    """What the simulated user (or tool) does next."""

    SATISFIED = "satisfied"
    """Thanks the assistant; the session ends after this message."""
    REASK = "reask"
    """Asks again or rephrases (evaluative: the reply was not good)."""
    DIRECTIVE = "directive"
    """Says what it wants instead (directive: a hint for OPD)."""
    TOOL_RESULT = "tool_result"
    """The simulated tool answers the assistant's tool calls."""
    GIVE_UP = "give_up"
    """Leaves unsatisfied; the session ends after this message."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an assistant reply, as the OpenAI wire format carries it."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them (a JSON string when well formed)."""


@dataclass(frozen=True)
class AgentReply:
    """What the policy answered: visible text and tool calls."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class UserReaction:
    """The next message(s) of the conversation and what they mean."""

    kind: ReactionKind
    messages: tuple[Message, ...]
    """Appended to the conversation and sent with the next request."""

    @property
    def ends_session(self) -> bool:
        """True when the next request is the session's last (sent with ``X-Session-Done: 1``)."""
        return self.kind in (ReactionKind.SATISFIED, ReactionKind.GIVE_UP)


@dataclass(frozen=True)
class Problem:
    """One task a persona brings to a session."""

    persona: str
    text: str
    """The first user message."""
    a: int = 0
    op: str = "+"
    b: int = 0
    city: str = ""
    weather: tuple[int, str] = (0, "")
    """(temperature in Celsius, sky) the simulated tool reports for ``city``."""
    tools: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def answer(self) -> int:
        """The arithmetic result (0 for the tool persona)."""
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def question(self) -> str:
        """The bare arithmetic question, e.g. ``"What is 7 + 5?"`` (the tool persona's is its text)."""
        return self.text if self.persona == TOOL_USER else f"What is {self.a} {self.op} {self.b}?"


class Persona(Protocol):
    """A simulated user: makes problems and reacts to replies."""

    @property
    def name(self) -> str:
        """The persona's name (``student``, ``teacher``, ``tool_user``)."""
        ...

    @property
    def max_attempts(self) -> int:
        """Assistant replies before the persona gives up."""
        ...

    def new_problem(self, rng: random.Random) -> Problem:
        """A fresh problem drawn from ``rng``."""
        ...

    def react(self, problem: Problem, history: Sequence[Message], reply: AgentReply, attempt: int,
              rng: random.Random) -> UserReaction:
        """The reaction to ``reply`` (the ``attempt``-th reply of the session, from 1)."""
        ...


def arithmetic(rng: random.Random) -> tuple[int, str, int]:
    """Operands and operator of a small problem: one-digit addition or subtraction with a >= b."""
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    if rng.random() < 0.5:
        return a, "+", b
    return max(a, b), "-", min(a, b)


_STUDENT_TEMPLATES = ("What is {a} {op} {b}?", "How much is {a} {op} {b}?", "Can you work out {a} {op} {b}?")
_TEACHER_TEMPLATES = (
    "Please comment on this homework. Question: What is {a} {op} {b}? Student's answer: {r}",
    "Write a grading comment. The student wrote {a} {op} {b} = {r}.",
)


def _thanks(rng: random.Random) -> UserReaction:
    return UserReaction(ReactionKind.SATISFIED, ({"role": "user", "content": rng.choice(THANKS)},))


def _unsatisfied(problem: Problem, attempt: int, max_attempts: int, directives: Sequence[str], p_directive: float,
                 rng: random.Random) -> UserReaction:
    if attempt >= max_attempts:
        return UserReaction(ReactionKind.GIVE_UP, ({"role": "user", "content": GIVE_UP},))
    if rng.random() < p_directive:
        return UserReaction(ReactionKind.DIRECTIVE, ({"role": "user", "content": rng.choice(directives)},))
    text = rng.choice(REASKS).format(question=problem.text)
    return UserReaction(ReactionKind.REASK, ({"role": "user", "content": text},))


@dataclass(frozen=True)
class StudentPersona:
    """Wants homework answers that do not look AI-written."""

    name: str = STUDENT
    max_attempts: int = 3
    p_directive: float = 0.5
    """Chance that an unsatisfied reaction says what is wanted rather than re-asking."""

    def new_problem(self, rng: random.Random) -> Problem:
        """A one-digit arithmetic question."""
        a, op, b = arithmetic(rng)
        return Problem(STUDENT, rng.choice(_STUDENT_TEMPLATES).format(a=a, op=op, b=b), a, op, b)

    def react(self, problem: Problem, history: Sequence[Message], reply: AgentReply, attempt: int,
              rng: random.Random) -> UserReaction:
        """Thanks for a plain answer; re-ask or a "no lists, no bold" directive otherwise."""
        if scoring.preference_score(self.name, reply.content, problem, reply.tool_calls) >= 1.0:
            return _thanks(rng)
        return _unsatisfied(problem, attempt, self.max_attempts, STUDENT_DIRECTIVES, self.p_directive, rng)


@dataclass(frozen=True)
class TeacherPersona:
    """Wants grading comments that are specific (the student's numbers) and friendly."""

    name: str = TEACHER
    max_attempts: int = 3
    p_directive: float = 0.5

    def new_problem(self, rng: random.Random) -> Problem:
        """A request for a comment on a correct one-digit answer."""
        a, op, b = arithmetic(rng)
        r = a + b if op == "+" else a - b
        return Problem(TEACHER, rng.choice(_TEACHER_TEMPLATES).format(a=a, op=op, b=b, r=r), a, op, b)

    def react(self, problem: Problem, history: Sequence[Message], reply: AgentReply, attempt: int,
              rng: random.Random) -> UserReaction:
        """Thanks for a specific, friendly comment; re-ask or a directive otherwise."""
        if scoring.preference_score(self.name, reply.content, problem, reply.tool_calls) >= 1.0:
            return _thanks(rng)
        return _unsatisfied(problem, attempt, self.max_attempts, TEACHER_DIRECTIVES, self.p_directive, rng)


_WEATHER_TEMPLATES = ("What's the weather in {city}?", "How is the weather in {city} today?", "Weather in {city}?")


def run_weather_tool(problem: Problem, call: ToolCall, p_error: float, rng: random.Random) -> dict[str, Any]:
    """The simulated ``get_weather``: a success object, or an error object the rule judge reads as -1."""
    if call.name != "get_weather":
        return {"error": f"unknown function: {call.name}"}
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return {"error": "arguments are not valid JSON"}
    city = arguments.get("city") if isinstance(arguments, dict) else None
    if not isinstance(city, str) or not city.strip():
        return {"error": "missing argument: city"}
    known = {c.lower(): i for i, c in enumerate(CITIES)}
    key = city.strip().lower()
    if key not in known:
        return {"error": f"unknown city: {city}"}
    if rng.random() < p_error:
        return {"error": "weather service unavailable, try again"}
    if key != problem.city.lower():  # another real city: its own (fixed) weather
        index = known[key]
        return {"ok": True, "city": CITIES[index], "temp_c": 2 * index - 3, "sky": SKIES[index % len(SKIES)]}
    return {"ok": True, "city": problem.city, "temp_c": problem.weather[0], "sky": problem.weather[1]}


def last_tool_result(history: Sequence[Message]) -> dict[str, Any] | None:
    """The parsed last tool message after the last user message, if any."""
    for message in reversed(history):
        if message.get("role") == "user":
            return None
        if message.get("role") == "tool":
            try:
                value = json.loads(str(message.get("content") or ""))
            except ValueError:
                return {"error": "unreadable"}
            return value if isinstance(value, dict) else {"error": "unreadable"}
    return None


@dataclass(frozen=True)
class ToolUserPersona:
    """Asks for the weather with a ``get_weather`` tool; the tool's results are next states."""

    name: str = TOOL_USER
    max_attempts: int = 5
    """Assistant replies (tool calls included) before the user gives up."""
    p_error: float = 0.15
    """Chance of a transient tool error on a correct call."""

    def new_problem(self, rng: random.Random) -> Problem:
        """A weather question about a known city (the tool knows its weather)."""
        city = rng.choice(CITIES)
        weather = (rng.randint(-5, 35), rng.choice(SKIES))
        text = rng.choice(_WEATHER_TEMPLATES).format(city=city)
        return Problem(TOOL_USER, text, city=city, weather=weather, tools=(WEATHER_TOOL,))

    def react(self, problem: Problem, history: Sequence[Message], reply: AgentReply, attempt: int,
              rng: random.Random) -> UserReaction:
        """Tool results for tool calls; thanks for an answer naming the reported temperature."""
        if reply.tool_calls and attempt < self.max_attempts:
            results = tuple(
                {"role": "tool", "tool_call_id": call.id,
                 "content": json.dumps(run_weather_tool(problem, call, self.p_error, rng))}
                for call in reply.tool_calls
            )
            return UserReaction(ReactionKind.TOOL_RESULT, results)
        if attempt >= self.max_attempts:
            return UserReaction(ReactionKind.GIVE_UP, ({"role": "user", "content": GIVE_UP},))
        result = last_tool_result(history)
        if result is None:
            return UserReaction(ReactionKind.DIRECTIVE, ({"role": "user", "content": TOOL_DIRECTIVE},))
        if result.get("ok") and str(problem.weather[0]) in scoring.numbers_in(reply.content):
            return _thanks(rng)
        text = "Please try again." if result.get("error") else rng.choice(REASKS).format(question=problem.text)
        return UserReaction(ReactionKind.REASK, ({"role": "user", "content": text},))


def default_personas() -> tuple[Persona, ...]:
    """The demo's personas: student, teacher and tool user with default settings."""
    return (StudentPersona(), TeacherPersona(), ToolUserPersona())
