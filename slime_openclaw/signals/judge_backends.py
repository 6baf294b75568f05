"""How a model-based judge or hint extractor gets text: the ``TextGenerator`` seam.

Two implementations:
- ``EngineTextGenerator``: any engine behind the ``Engine`` protocol (SGLang or the embedded
  engine; a separate judge model or the policy's own engine). It renders the chat messages
  with the chat template, calls ``/generate`` token-in, and decodes the output.
- ``OpenAIChatGenerator``: any OpenAI-compatible ``/v1/chat/completions`` URL, over aiohttp.

``call_with_retries`` is the one place a vote's per-call timeout and bounded retries live:
a failed call becomes an ``Outcome`` with ``value=None`` and the error recorded, never an
exception. Prompting and parsing live in judge.py and hints.py, not here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from slime_openclaw.engine.protocol import Engine, GenerateRequest, SamplingParams
from slime_openclaw.errors import JudgeError
from slime_openclaw.types import FinishReason, Message

log = logging.getLogger(__name__)
T = TypeVar("T")


class TextGenerator(Protocol):
    """Chat messages in, the model's reply text out. Raises on failure (the caller retries)."""

    name: str
    """Short name for metrics and verdicts (``"engine"``, ``"openai:<model>"``)."""

    async def complete(self, messages: Sequence[Message]) -> str:
        """One sampled reply to ``messages``."""
        ...


class ChatRendererLike(Protocol):
    """The slice of ``ChatRenderer`` used here: messages to prompt token ids."""

    def render_ids(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None, add_generation_prompt: bool = True
    ) -> list[int]: ...


class Detokenizer(Protocol):
    """The slice of a Hugging Face tokenizer used here."""

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Per-call timeout and bounded retries for one vote."""

    timeout_s: float = 60.0
    """Each attempt is cancelled after this many seconds."""
    retries: int = 2
    """Attempts after the first (so at most ``retries + 1`` calls)."""
    backoff_s: float = 0.5
    """Wait before retry ``i`` is ``backoff_s * 2**i``."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The result of one bounded call: a value, or the error that ended the last attempt."""

    value: T | None
    """The call's result, or None when every attempt failed."""
    error: str | None = None
    """Why the last attempt failed (``"timeout"``, ``"JudgeError: ..."``), None on success."""
    attempts: int = 1
    """Calls made."""


VoteOutcome = Outcome[str]
"""One judge or hint vote: the model's reply text, or the failure."""


async def call_with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> Outcome[T]:
    """Run ``call`` with ``policy``'s timeout and retries; never raises (except cancellation)."""
    error = "not attempted"
    for attempt in range(policy.retries + 1):
        if attempt:
            await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))
        try:
            value = await asyncio.wait_for(call(), timeout=policy.timeout_s)
            return Outcome(value=value, attempts=attempt + 1)
        except asyncio.TimeoutError:
            error = "timeout"
        except Exception as exc:  # the judge boundary: any failure becomes a recorded failed call
            error = f"{type(exc).__name__}: {exc}"[:300]
        log.debug("attempt %d failed: %s", attempt + 1, error)
    return Outcome(value=None, error=error, attempts=policy.retries + 1)


@dataclass(frozen=True)
class JudgeSampling:
    """Sampling for judge and hint votes (independent votes need temperature > 0)."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512


class EngineTextGenerator:
    """Judge text from an engine speaking SGLang's ``/generate`` (token-in, decoded here)."""

    def __init__(
        self,
        engine: Engine,
        renderer: ChatRendererLike,
        tokenizer: Detokenizer,
        sampling: JudgeSampling | None = None,
        stop_token_ids: Sequence[int] = (),
        name: str = "engine",
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.tokenizer = tokenizer
        self.sampling = sampling or JudgeSampling()
        self.stop_token_ids = tuple(stop_token_ids)
        self.name = name
        self.owns_engine = owns_engine

    async def complete(self, messages: Sequence[Message]) -> str:
        """Render, generate, decode without special tokens."""
        input_ids = self.renderer.render_ids(list(messages), tools=None, add_generation_prompt=True)
        params = SamplingParams(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_new_tokens=self.sampling.max_new_tokens,
            stop_token_ids=self.stop_token_ids,
            skip_special_tokens=True,
        )
        output = await self.engine.generate(
            GenerateRequest(input_ids=tuple(input_ids), sampling=params, return_logprob=False)
        )
        if output.finish_reason is FinishReason.ABORT:  # a weight update cut the reply short: retry the vote
            raise JudgeError("the engine aborted the vote (weight update)")
        return self.tokenizer.decode(list(output.output_ids), skip_special_tokens=True)

    async def aclose(self) -> None:
        """Close the engine client when this generator was given ownership of it."""
        if self.owns_engine:
            await aclose_quietly(self.engine)


class OpenAIChatGenerator:
    """Judge text from any OpenAI-compatible chat completions URL (a separate judge model).

    Use as an async context manager, or call ``aclose()``; the HTTP session opens lazily.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        sampling: JudgeSampling | None = None,
        connections: int = 64,
    ) -> None:
        base = base_url.rstrip("/")
        self.url = base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        self.model = model
        self.api_key = api_key
        self.sampling = sampling or JudgeSampling()
        self.connections = connections
        self.name = f"openai:{model}"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            connector = aiohttp.TCPConnector(limit=self.connections)
            self._session = aiohttp.ClientSession(headers=headers, connector=connector)
        return self._session

    async def complete(self, messages: Sequence[Message]) -> str:
        """POST the messages; the reply's ``choices[0].message.content``."""
        body = {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_tokens": self.sampling.max_new_tokens,
            "stream": False,
        }
        async with self._client().post(self.url, json=body) as response:
            if response.status != 200:
                detail = (await response.text())[:200]
                raise JudgeError(f"judge endpoint answered HTTP {response.status}: {detail}")
            payload = await response.json()
        try:
            content = payload["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise JudgeError("judge endpoint answered without choices[0].message") from exc
        return content if isinstance(content, str) else ""

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OpenAIChatGenerator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SpreadGenerator:
    """Spreads calls over several generators in turn (votes over several judge endpoints)."""

    def __init__(self, generators: Sequence[TextGenerator]) -> None:
        if not generators:
            raise ValueError("SpreadGenerator needs at least one generator")
        self.generators = tuple(generators)
        self.name = "+".join(g.name for g in self.generators)
        self._next = 0

    async def complete(self, messages: Sequence[Message]) -> str:
        """The next generator's reply."""
        generator = self.generators[self._next % len(self.generators)]
        self._next += 1
        return await generator.complete(messages)

    async def aclose(self) -> None:
        """Close every generator that can be closed."""
        for generator in self.generators:
            await aclose_quietly(generator)


async def aclose_quietly(obj: object) -> None:
    """Await ``obj.aclose()`` when it has one."""
    close = getattr(obj, "aclose", None)
    if close is not None:
        await close()
