"""Generation that rides through weight updates: the abort-and-resume loop over an ``Engine``.

When slime pauses the engine to load new weights, SGLang ends in-flight requests with
``finish_reason: abort`` (a streamed request gets it on its last chunk, a non-streamed one
in its single answer, which then holds the tokens generated so far). ``ResumableGeneration``
then asks again with the prompt plus the tokens generated so far and the remaining budget,
until the engine stops or runs out of budget. The caller sees one uninterrupted token
stream; the result keeps, per token, the exact id, its behaviour log-prob and the weight
version that produced it.

Each attempt is either an ``Engine.stream`` (tokens as they are produced) or, with
``stream=False``, one ``Engine.generate`` call (one answer per attempt: a caller that only
needs the whole reply saves the per-chunk work on both sides); the tokens of a
non-streamed attempt all carry that answer's weight version, as SGLang reports one.

It does not render prompts, parse responses or know about HTTP clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from slime_openclaw.engine.protocol import Engine, GenerateDelta, GenerateRequest, SamplingParams
from slime_openclaw.errors import EngineError
from slime_openclaw.types import FinishReason


@dataclass(frozen=True)
class ResumePolicy:
    """How long to keep resuming an aborted request."""

    stall_timeout: float = 600.0
    """Seconds without a new token across aborts before giving up with ``EngineError``."""
    first_backoff: float = 0.02
    """Wait before resubmitting after an abort that produced no token; doubles each time."""
    max_backoff: float = 1.0


@dataclass
class ResumableGeneration:
    """One response, generated over as many engine requests as weight updates require."""

    engine: Engine
    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    request_id: str = ""
    """Prefix of the engine ``rid`` of each attempt (``{request_id}-{attempt}``)."""
    policy: ResumePolicy = field(default_factory=ResumePolicy)
    clock: Callable[[], float] = time.monotonic
    on_resume: Callable[[], None] = lambda: None
    """Called once per resubmission (metrics)."""
    stream: bool = True
    """Stream each attempt (``Engine.stream``); False: one ``Engine.generate`` call per attempt."""
    routing_key: str | None = None
    """The session of the request, sent with every attempt (cache-affine routing)."""
    transport_failures: tuple[type[BaseException], ...] = (asyncio.TimeoutError, ConnectionError)
    """What the engine's transport raises when it fails (the caller's HTTP client adds its
    own): each attempt raises these as ``EngineError``, in this generator, so a consumer
    needs no wrapper of its own (one generator layer less per streamed chunk)."""

    output_ids: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    weight_versions: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    resumes: int = 0
    """Number of resubmissions after an abort."""

    async def run(self) -> AsyncGenerator[tuple[int, ...], None]:
        """Yield newly generated token ids as they arrive, across aborts, until done.

        Streamed attempts yield a batch per engine delta, non-streamed ones one batch per
        attempt (none when an attempt produced no token).
        """
        budget = self.sampling.max_new_tokens
        backoff = self.policy.first_backoff
        last_progress = self.clock()
        attempt = 0
        while True:
            remaining = budget - len(self.output_ids)
            if remaining <= 0:
                self.finish_reason = FinishReason.LENGTH
                return
            request = GenerateRequest(
                input_ids=self.prompt_ids + tuple(self.output_ids),
                sampling=self.sampling if remaining == budget else replace(self.sampling, max_new_tokens=remaining),
                rid=f"{self.request_id}-{attempt}" if self.request_id else None,
                routing_key=self.routing_key,
            )
            before = len(self.output_ids)
            finish = None
            deltas = self.engine.stream(request) if self.stream else _whole(self.engine, request)
            try:
                async for delta in deltas:
                    new = self._accept(delta)
                    if new:
                        yield new
                    if delta.finish_reason is not None:
                        finish = delta.finish_reason
                        break
            except self.transport_failures as exc:
                raise EngineError(f"engine request failed: {type(exc).__name__}") from exc
            finally:
                await _close(deltas)
            if finish is None:
                raise EngineError("engine stream ended without a finish reason")
            if finish is not FinishReason.ABORT:
                self.finish_reason = finish
                return
            attempt += 1
            self.resumes += 1
            self.on_resume()
            if len(self.output_ids) > before:
                last_progress, backoff = self.clock(), self.policy.first_backoff
                continue
            if self.clock() - last_progress > self.policy.stall_timeout:
                raise EngineError(f"engine kept aborting for {self.policy.stall_timeout:.0f}s without progress")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.policy.max_backoff)

    def _accept(self, delta: GenerateDelta) -> tuple[int, ...]:
        ids = tuple(delta.output_ids)
        if len(delta.output_log_probs) != len(ids):
            raise EngineError(f"engine returned {len(delta.output_log_probs)} log-probs for {len(ids)} tokens")
        self.output_ids.extend(ids)
        self.log_probs.extend(delta.output_log_probs)
        self.weight_versions.extend([delta.weight_version] * len(ids))
        return ids


async def _whole(engine: Engine, request: GenerateRequest) -> AsyncIterator[GenerateDelta]:
    """One non-streaming ``generate`` call as a single delta (partial output when aborted)."""
    out = await engine.generate(request)
    yield GenerateDelta(out.output_ids, out.output_log_probs, out.weight_version, out.finish_reason,
                        out.prompt_tokens)


async def _close(stream: AsyncIterator[GenerateDelta]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
