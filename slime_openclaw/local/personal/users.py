"""Drives simulated users through the gateway with the real ``openai`` client.

``run_users(base_url, personas, interactions, ...)`` runs ``interactions`` sessions (persona
``i % len(personas)`` for session ``i``), at most ``concurrency`` at a time. A session is one
problem: the persona's first message, the policy's reply, the persona's reaction (tool results,
a re-ask, a directive correction) sent with the next request, and so on until the persona is
satisfied or gives up; that last reaction is sent with ``X-Session-Done: 1`` (its reply is
short and ends the session, so the gateway records every earlier turn's next state). Every
request carries ``X-Session-Id``. Each session yields an ``InteractionRecord`` (first-response
preference score, requests that succeeded or failed), handed to ``on_interaction`` as soon as
the session ends. A failed request ends its session and is recorded, never raised.

Randomness: session ``i`` draws from ``random.Random(f"{seed}:{i}")`` and sends sampling seeds
derived from it, so the users' side is reproducible given the policy's replies. This module
does not judge or train; it only plays the users.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slime_openclaw.local.personal.personas import AgentReply, Persona, Problem, ReactionKind, ToolCall
from slime_openclaw.local.personal.scoring import STUDENT, answer_correct, preference_score
from slime_openclaw.types import Message


@dataclass(frozen=True)
class UserSettings:
    """How the simulated users call the gateway."""

    max_tokens: int = 48
    """Completion budget of each reply."""
    closing_max_tokens: int = 8
    """Completion budget of the reply to a session's last message (thanks or giving up)."""
    temperature: float = 1.0
    timeout_s: float = 120.0
    max_retries: int = 2
    """Client retries (429 back-pressure, connection errors)."""
    model: str | None = None
    """Model name to ask for (default: the first one ``/v1/models`` lists)."""
    api_key: str = "local"
    session_prefix: str = "sim"
    train: bool = True
    """False sends ``X-OpenClaw-Train: off``: served, never recorded (evaluation rounds)."""


@dataclass(frozen=True)
class InteractionRecord:
    """What happened in one simulated session."""

    index: int
    session_id: str
    persona: str
    first_score: float
    """The persona's preference score of the session's first reply (the evaluation's number)."""
    satisfied: bool
    """The persona ended the session thanking the assistant."""
    replies: int
    """Assistant replies before the closing request."""
    requests_ok: int
    requests_failed: int
    reactions: tuple[str, ...]
    """Reaction kinds in order (``ReactionKind`` values)."""
    first_correct: bool | None = None
    """Student only: the first answer's last number is the right result."""
    error: str | None = None
    """The failure that ended the session early, if any."""


InteractionCallback = Callable[[InteractionRecord], "Awaitable[None] | None"]


def reply_from_message(message: Message) -> AgentReply:
    """The persona-side view of an OpenAI assistant message."""
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        calls.append(ToolCall(str(call.get("id", "")), str(function.get("name", "")),
                              str(function.get("arguments") or "")))
    return AgentReply(str(message.get("content") or ""), tuple(calls))


class _Session:
    """One persona's conversation through the gateway."""

    def __init__(self, client: Any, model: str, persona: Persona, index: int, seed: int,
                 settings: UserSettings) -> None:
        self.client, self.model, self.persona, self.index = client, model, persona, index
        self.settings = settings
        self.rng = random.Random(f"{seed}:{index}")
        self.session_id = f"{settings.session_prefix}-{seed}-{index}"
        self.ok = self.failed = 0

    async def _ask(self, messages: list[Message], tools: Sequence[dict[str, Any]], done: bool) -> Message:
        headers = {"X-Session-Id": self.session_id}
        if done:
            headers["X-Session-Done"] = "1"
        if not self.settings.train:
            headers["X-OpenClaw-Train"] = "off"
        extra: dict[str, Any] = {"tools": list(tools)} if tools else {}
        try:
            completion = await self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.settings.temperature,
                max_tokens=self.settings.closing_max_tokens if done else self.settings.max_tokens,
                extra_headers=headers, extra_body={"seed": self.rng.randrange(2**31)}, **extra)
        except Exception:
            self.failed += 1
            raise
        self.ok += 1
        message = completion.choices[0].message.model_dump(exclude_none=True)
        message.setdefault("content", "")
        return dict(message)

    async def run(self) -> InteractionRecord:
        problem = self.persona.new_problem(self.rng)
        messages: list[Message] = [{"role": "user", "content": problem.text}]
        reactions: list[str] = []
        first_score, first_correct, satisfied, error = 0.0, None, False, None
        try:
            for attempt in range(1, 1000):
                message = await self._ask(messages, problem.tools, done=False)
                reply = reply_from_message(message)
                if attempt == 1:
                    first_score, first_correct = self._first(problem, reply)
                reaction = self.persona.react(problem, messages, reply, attempt, self.rng)
                reactions.append(reaction.kind.value)
                messages += [message, *reaction.messages]
                if reaction.ends_session:
                    satisfied = reaction.kind is ReactionKind.SATISFIED
                    await self._ask(messages, problem.tools, done=True)
                    break
        except Exception as exc:  # a bad session is data, not a crash: recorded below
            error = f"{type(exc).__name__}: {exc}"[:300]
        return InteractionRecord(
            index=self.index, session_id=self.session_id, persona=self.persona.name, first_score=first_score,
            satisfied=satisfied, replies=len(reactions), requests_ok=self.ok, requests_failed=self.failed,
            reactions=tuple(reactions), first_correct=first_correct, error=error,
        )

    def _first(self, problem: Problem, reply: AgentReply) -> tuple[float, bool | None]:
        score = preference_score(self.persona.name, reply.content, problem, reply.tool_calls)
        correct = answer_correct(reply.content, problem) if self.persona.name == STUDENT else None
        return score, correct


async def _notify(callback: InteractionCallback | None, record: InteractionRecord) -> None:
    if callback is None:
        return
    result = callback(record)
    if inspect.isawaitable(result):
        await result


async def run_users(base_url: str, personas: Sequence[Persona], interactions: int, *, seed: int = 0,
                    concurrency: int = 4, on_interaction: InteractionCallback | None = None,
                    settings: UserSettings = UserSettings(), start_index: int = 0) -> list[InteractionRecord]:
    """Run ``interactions`` simulated sessions against the gateway at ``base_url`` (``.../v1``).

    Session ``i`` (from ``start_index``) uses ``personas[i % len(personas)]``. Returns the
    records in session order; ``on_interaction`` (sync or async) sees each as it completes.
    """
    if not personas:
        raise ValueError("run_users needs at least one persona")
    if concurrency < 1 or interactions < 0:
        raise ValueError("concurrency must be >= 1 and interactions >= 0")
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=settings.api_key, max_retries=settings.max_retries,
                         timeout=settings.timeout_s)
    try:
        model = settings.model or (await client.models.list()).data[0].id
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> InteractionRecord:
            async with gate:
                persona = personas[index % len(personas)]
                record = await _Session(client, model, persona, index, seed, settings).run()
            await _notify(on_interaction, record)
            return record

        indices = range(start_index, start_index + interactions)
        return list(await asyncio.gather(*(one(i) for i in indices)))
    finally:
        await client.close()


def mean_scores(records: Sequence[InteractionRecord]) -> dict[str, float]:
    """Mean first-response preference score per persona (sessions that failed before a reply excluded)."""
    totals: dict[str, list[float]] = {}
    for record in records:
        if record.replies:
            totals.setdefault(record.persona, []).append(record.first_score)
    return {name: sum(values) / len(values) for name, values in sorted(totals.items())}
