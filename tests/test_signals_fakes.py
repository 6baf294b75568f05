"""Small faithful stand-ins for the signal tests: a scripted text generator and turn builders.

The generator follows the ``TextGenerator`` protocol exactly (messages in, reply text out,
raising on failure); each call consumes the next scripted step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slime_openclaw.types import FinishReason, Message, NextState, NextStateKind, Turn, TurnType


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
) -> Turn:
    """A recorded turn with consistent per-token arrays."""
    n = len(response_ids)
    return Turn(
        session_id=session_id,
        turn_index=turn_index,
        turn_type=turn_type,
        messages=tuple(messages),
        tools=tuple(tools),
        prompt_ids=(1, 5, 6, 7),
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
