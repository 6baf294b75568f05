"""Small faithful stand-ins for the signal tests: a scripted text generator, turn builders and
a short chat with a hint for the teacher tests.

The generator follows the ``TextGenerator`` protocol exactly (messages in, reply text out,
raising on failure); each call consumes the next scripted step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slime_openclaw.types import FinishReason, Message, NextState, NextStateKind, Turn, TurnType

HINT = "Answer with only the number."
CHAT = (
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
)
"""A chat whose last question the hint answers the format of (teacher scoring tests)."""


@dataclass(frozen=True)
class Slow:
    """A step that answers ``text`` after ``seconds``."""

    seconds: float
    text: str


Step = str | Exception | Slow


class ScriptedGenerator:
    """Answers calls with scripted steps in order; the last step repeats once the script runs out."""

    name = "scripted"

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.calls: list[list[Message]] = []

    async def complete(self, messages: Sequence[Message]) -> str:
        self.calls.append(list(messages))
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        await asyncio.sleep(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, Slow):
            await asyncio.sleep(step.seconds)
            return step.text
        return step


def make_turn(
    *,
    session_id: str = "s1",
    turn_index: int = 0,
    messages: Sequence[Message] = ({"role": "user", "content": "What is 2+2?"},),
    response: str = "2+2 is 4.",
    response_ids: Sequence[int] = (11, 12, 13, 2),
    turn_type: TurnType = TurnType.MAIN,
    sampling: dict[str, Any] | None = None,
    tools: Sequence[dict[str, Any]] = (),
    prompt_ids: Sequence[int] = (1, 5, 6, 7),
) -> Turn:
    """A recorded turn with consistent per-token arrays."""
    n = len(response_ids)
    return Turn(
        session_id=session_id,
        turn_index=turn_index,
        turn_type=turn_type,
        messages=tuple(messages),
        tools=tuple(tools),
        prompt_ids=tuple(prompt_ids),
        response_ids=tuple(response_ids),
        response_log_probs=tuple(-0.5 - 0.1 * i for i in range(n)),
        weight_versions=(3,) * n,
        finish_reason=FinishReason.STOP,
        response_message={"role": "assistant", "content": response},
        sampling=dict(sampling or {"temperature": 1.0}),
        created_at=1.0,
    )


def user_next(text: str) -> NextState:
    """A next state made of one user message."""
    return NextState(kind=NextStateKind.USER, messages=({"role": "user", "content": text},), observed_at=2.0)


def tool_next(*contents: str) -> NextState:
    """A next state made of tool results."""
    messages = tuple({"role": "tool", "tool_call_id": f"c{i}", "content": c} for i, c in enumerate(contents))
    return NextState(kind=NextStateKind.TOOL, messages=messages, observed_at=2.0)


class CharRenderer:
    """``ChatRenderer`` stand-in: one id per character of the messages' JSON (deterministic)."""

    def render_ids(self, messages: Sequence[Message], tools: Any = None, add_generation_prompt: bool = True) -> list[int]:
        import json

        text = json.dumps(list(messages), sort_keys=True) + ("<gen>" if add_generation_prompt else "")
        return [ord(c) % 997 for c in text]


class ScoringEngine:
    """``Engine`` stand-in for scoring calls, with SGLang's input log-prob alignment (entry 0 is
    a None pad; entry j >= 1 scores ``input_ids[start + j]``) and a deterministic "model"."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.requests: list[Any] = []

    @staticmethod
    def log_prob(position: int, token: int) -> float:
        return -0.01 * ((position * 31 + token) % 97) - 0.001

    async def generate(self, request: Any) -> Any:
        from slime_openclaw.engine.protocol import GenerateOutput
        from slime_openclaw.errors import EngineError

        self.requests.append(request)
        await asyncio.sleep(0)
        if self.fail:
            raise EngineError("engine unreachable")
        ids, start = request.input_ids, request.logprob_start_len
        values = (None,) + tuple(self.log_prob(p, ids[p]) for p in range(start + 1, len(ids)))
        return GenerateOutput(
            output_ids=(), output_log_probs=(), finish_reason=FinishReason.LENGTH, weight_version=7,
            prompt_tokens=len(ids), input_log_probs=values,
        )
