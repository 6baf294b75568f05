"""Synthetic dialogues that pre-train the tiny policy: the chat format, two styles, hint following.

Each dialogue is a simulated session of a persona (personas.py reacts exactly as it does
through the gateway), with assistant replies drawn so that the policy learns:

- the chat format, tool calls (``get_weather``) and answers from tool results;
- for the student and the teacher, the *undesired* style with probability ``1 - p_prior``
  when nothing in the context says what the user wants (the preference is hidden);
- the preferred style with probability ``p_follow`` when the context says it: a directive
  earlier in the conversation, or a hint placed exactly as the OPD teacher context places it
  (``signals.teacher.add_hint``, user-append or system), with the text the rule-based hint
  extractor produces (``The user wants this: "<directive>"``) or a free-form hint.

A "hint" dialogue is a session cut just before one of its assistant replies, hint added, and
only that last reply trained (``Dialogue.train``). Everything is drawn from the ``rng`` passed
in. This module does not tokenize or train (pretrain.py does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.local.personal import personas as P
from slime_openclaw.signals.teacher import HintPlacement, add_hint
from slime_openclaw.types import Message

CORRECTION_HINT = 'The user wants this: "{text}"'
"""The hint text ``signals.hints.CorrectionHintExtractor`` makes of a user's correction."""

FREE_HINTS: dict[str, tuple[str, ...]] = {
    P.STUDENT: ("Answer in one plain sentence, without bold, headings or lists.",
                "Do not format the answer: no lists and no bold, just say it plainly."),
    P.TEACHER: ("Write a friendly comment that mentions the student's numbers.",
                "Be specific and warm: say what the student did and praise it."),
    P.TOOL_USER: ("Call the get_weather tool before answering.",),
}
DIRECTIVES: dict[str, tuple[str, ...]] = {
    P.STUDENT: P.STUDENT_DIRECTIVES, P.TEACHER: P.TEACHER_DIRECTIVES, P.TOOL_USER: (P.TOOL_DIRECTIVE,),
}

_PLAIN = {
    "+": ("{a} plus {b} makes {r}.", "{a} and {b} together make {r}.", "If you add {a} and {b} you get {r}."),
    "-": ("{a} minus {b} leaves {r}.", "Take {b} away from {a} and you get {r}.", "{a} take away {b} is {r}."),
}
_AI_LOOK = (
    "**Answer:** {r}\n- Step: {a} {op} {b} = {r}",
    "## Solution\n1. {a} {op} {b} = {r}\n2. **Final answer:** {r}",
    "**Final answer:** {r}\n\n- We compute {a} {op} {b} = {r}.",
)
_SPECIFIC_ALL = ("Nice work: {a} {op} {b} = {r} is exactly right.",
                 "Great job! You wrote {a} {op} {b} = {r}, and that is correct.",
                 "Well done, {a} {op} {b} = {r} is correct. Keep it up!")
_SPECIFIC = {  # the student's own expression, copied whole: the easiest specific comment to learn
    "+": (*_SPECIFIC_ALL, "Nice work, you added {a} and {b} correctly to get {r}."),
    "-": (*_SPECIFIC_ALL, "Nice work, you took {b} away from {a} and got {r}."),
}
_GENERIC = ("Correct.", "Answer accepted.", "Correct, full marks.", "Graded: correct.")
_CLOSING = ("You're welcome!", "Glad I could help.", "Happy to help!")
_SORRY = "Sorry about that."
_WEATHER_ANSWER = ("It is {t} degrees and {sky} in {city}.", "In {city} it is {sky} and {t} degrees right now.")
_WEATHER_ERROR = "Sorry, I could not get the weather for {city} right now."
_WEATHER_GUESS = ("I think it is nice in {city} today.", "It is usually mild in {city}.")


@dataclass(frozen=True)
class StyleMix:
    """How the synthetic assistant picks a style."""

    p_prior: float = 0.3
    """Chance of the preferred style when the context does not say what the user wants."""
    p_follow: float = 0.95
    """Chance of the preferred style when a directive or a hint says it."""
    p_tool_prior: float = 0.85
    """Chance that the first reply to a weather question is a tool call."""


@dataclass
class Dialogue:
    """A conversation to train on: messages, tool definitions, and which messages carry loss."""

    messages: list[Message]
    tools: tuple[dict[str, Any], ...] = ()
    train: list[bool] = field(default_factory=list)
    """Per message: True for the assistant replies whose tokens are trained."""


def styled_reply(problem: P.Problem, preferred: bool, rng: random.Random) -> str:
    """A student answer or a teacher comment, in the preferred or the undesired style."""
    values = {"a": problem.a, "b": problem.b, "op": problem.op, "r": problem.answer}
    pool: tuple[str, ...]
    if problem.persona == P.STUDENT:
        pool = _PLAIN[problem.op] if preferred else _AI_LOOK
    else:
        pool = _SPECIFIC[problem.op] if preferred else _GENERIC
    return rng.choice(pool).format(**values)


def _context_says(messages: list[Message], persona: str) -> bool:
    directives = DIRECTIVES[persona]
    return any(m.get("role") == "user" and m.get("content") in directives for m in messages)


def _tool_call_message(city: str) -> Message:
    call = {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
    return {"role": "assistant", "content": "", "tool_calls": [call]}


def _weather_reply(problem: P.Problem, messages: list[Message], told: bool, mix: StyleMix,
                   rng: random.Random) -> Message:
    last = messages[-1]
    if last.get("role") == "tool":
        result = P.last_tool_result(messages) or {}
        if result.get("ok"):
            text = rng.choice(_WEATHER_ANSWER).format(t=result["temp_c"], sky=result["sky"], city=result["city"])
            return {"role": "assistant", "content": text}
        return {"role": "assistant", "content": _WEATHER_ERROR.format(city=problem.city)}
    if rng.random() < (mix.p_follow if told or len(messages) > 1 else mix.p_tool_prior):
        return _tool_call_message(problem.city)
    return {"role": "assistant", "content": rng.choice(_WEATHER_GUESS).format(city=problem.city)}


def _reply(problem: P.Problem, messages: list[Message], told: bool, mix: StyleMix, rng: random.Random) -> Message:
    if problem.persona == P.TOOL_USER:
        return _weather_reply(problem, messages, told, mix, rng)
    preferred = rng.random() < (mix.p_follow if told else mix.p_prior)
    return {"role": "assistant", "content": styled_reply(problem, preferred, rng)}


def _as_agent_reply(message: Message) -> P.AgentReply:
    calls = tuple(
        P.ToolCall(c["id"], c["function"]["name"], _arguments_text(c["function"]["arguments"]))
        for c in message.get("tool_calls") or ()
    )
    return P.AgentReply(str(message.get("content") or ""), calls)


def _arguments_text(arguments: Any) -> str:
    import json

    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def simulate_session(persona: P.Persona, mix: StyleMix, rng: random.Random) -> tuple[P.Problem, list[Message]]:
    """A whole session without hints: the persona's reactions to synthetic replies, closing reply included."""
    problem = persona.new_problem(rng)
    messages: list[Message] = [{"role": "user", "content": problem.text}]
    attempt = 0
    while True:
        attempt += 1
        reply = _reply(problem, messages, _context_says(messages, problem.persona), mix, rng)
        reaction = persona.react(problem, messages, _as_agent_reply(reply), attempt, rng)
        messages += [reply, *reaction.messages]
        if reaction.ends_session:
            closing = rng.choice(_CLOSING) if reaction.kind is P.ReactionKind.SATISFIED else _SORRY
            messages.append({"role": "assistant", "content": closing})
            return problem, messages


def _hint_text(persona: str, rng: random.Random) -> str:
    if rng.random() < 0.7:
        return CORRECTION_HINT.format(text=rng.choice(DIRECTIVES[persona]))
    return rng.choice(FREE_HINTS[persona])


def hinted_dialogue(persona: P.Persona, mix: StyleMix, rng: random.Random) -> Dialogue:
    """A session cut before one reply, the hint placed as the teacher context does; that reply trained."""
    problem, messages = simulate_session(persona, mix, rng)
    cuts = [i for i, m in enumerate(messages)
            if m["role"] == "assistant" and messages[i - 1]["role"] == "user"
            and messages[i - 1]["content"] not in P.THANKS and messages[i - 1]["content"] != P.GIVE_UP]
    cut = cuts[0] if rng.random() < 0.7 else rng.choice(cuts)  # mostly the first reply: short, and OPD's main case
    placement = HintPlacement.USER_APPEND if rng.random() < 0.8 else HintPlacement.SYSTEM
    if problem.tools and placement is HintPlacement.SYSTEM:
        placement = HintPlacement.USER_APPEND  # the tools' system text stays the template's own
    context = add_hint(messages[:cut], _hint_text(problem.persona, rng), placement)
    reply = _reply(problem, messages[:cut], True, mix, rng)
    return Dialogue([*context, reply], problem.tools, [False] * len(context) + [True])


def plain_dialogue(persona: P.Persona, mix: StyleMix, rng: random.Random) -> Dialogue:
    """A whole simulated session; every assistant reply trained."""
    problem, messages = simulate_session(persona, mix, rng)
    return Dialogue(messages, problem.tools, [m["role"] == "assistant" for m in messages])


def synthetic_dialogues(count: int, seed: int, *, mix: StyleMix = StyleMix(), p_hint: float = 0.4,
                        weights: tuple[float, float, float] = (0.4, 0.45, 0.15)) -> list[Dialogue]:
    """``count`` dialogues (student, teacher, tool user by ``weights``), ``p_hint`` of them hinted."""
    rng = random.Random(seed)
    people: tuple[P.Persona, ...] = (P.StudentPersona(), P.TeacherPersona(), P.ToolUserPersona())
    out = []
    for _ in range(count):
        persona = rng.choices(people, weights=weights)[0]
        make = hinted_dialogue if rng.random() < p_hint else plain_dialogue
        out.append(make(persona, mix, rng))
    return out
