"""``POST /v1/chat/completions``: render, generate (resuming through aborts), parse, answer, record.

The prompt is rendered to token ids here, generation runs on those ids, and the reply is
parsed from the exact generated ids, so the recorded turn holds precisely what the engine
produced. A non-streamed request asks the engine for whole answers (one non-streaming
``/generate`` per attempt); a streamed one streams from the engine too and sends SSE
chunks as tokens arrive (only these observe the time-to-first-token metric; the writes:
gateway/sse_writer.py); the response headers are sent only once the engine produced its
first tokens, so an engine that is down still gets a plain 502. Errors after that point end
the stream with an SSE ``error`` event and ``[DONE]``.
The turn is recorded before the final chunk leaves, so a client's next request always
finds it; when it cannot be recorded the client gets an error instead of the final chunk
(an SSE ``error`` event before ``[DONE]``) or instead of the answer (503 with ``Retry-After``
when the journal's storage is failing).

Request validation is gateway/wire.py, response shapes gateway/responses.py, sessions
and recording gateway/recording.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from slime_openclaw.engine.protocol import Engine, SamplingParams
from slime_openclaw.errors import OpenClawError, RequestError
from slime_openclaw.gateway import responses as R
from slime_openclaw.gateway.codec import ChatCodec, MessageDelta, StreamParser
from slime_openclaw.gateway.generation import ResumableGeneration, ResumePolicy
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.gateway.recording import GeneratedTurn, TurnBook, TurnContext
from slime_openclaw.gateway.sessions import Assignment
from slime_openclaw.gateway.sse_writer import SseWriter
from slime_openclaw.gateway.wire import ChatRequest
from slime_openclaw.types import FinishReason, Message, TurnType

log = logging.getLogger(__name__)

_ENGINE_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass(frozen=True)
class ChatSettings:
    """Limits of the chat endpoint."""

    default_max_tokens: int = 1024
    """Completion budget when the request gives none."""
    max_context_tokens: int | None = None
    """Prompt plus completion at most (None: unchecked, the engine decides)."""
    train_max_new_tokens: int | None = None
    """Completion of a trainable turn at most (slime's ``--rollout-max-response-len``), whatever
    the client asks; it sees ``finish_reason: length`` at the cap. None: no cap."""
    train_max_context_tokens: int | None = None
    """Prompt plus completion of a trainable turn at most (slime's ``--rollout-max-context-len``);
    a prompt already over it is served (within the model's context) and not trained."""
    resume: ResumePolicy = field(default_factory=ResumePolicy)


@dataclass
class _Exchange:
    """The state of one request while it is served."""

    request: ChatRequest
    context: TurnContext
    cid: str
    created: int
    started: float
    prompt_ids: tuple[int, ...]
    generation: ResumableGeneration
    parser: StreamParser
    trimmer: R.StopTrimmer
    chunks: R.ChunkEncoder
    seen_first: bool = False
    recorded: asyncio.Future[BaseException | None] | None = None
    """Resolves once the turn is in the journal (None) or failed (set by ``_finish``)."""


@dataclass
class ChatService:
    """Serves chat completions over an engine; one per app."""

    engine: Engine
    codec: ChatCodec
    book: TurnBook
    metrics: GatewayMetrics
    model_name: str
    settings: ChatSettings = field(default_factory=ChatSettings)
    monotonic: Callable[[], float] = time.monotonic

    def prepare(self, request: ChatRequest, context: TurnContext, started: float) -> _Exchange:
        """Render the prompt and set up generation (raises ``RequestError`` for bad input)."""
        self._check_length_bound(request)
        prompt_ids = tuple(self.codec.render_ids(request.messages, request.render_tools,
                                                 template_kwargs=dict(request.template_kwargs)))
        budget = request.max_tokens or self.settings.default_max_tokens
        limit = self.settings.max_context_tokens
        if limit is not None:
            if len(prompt_ids) >= limit:
                raise context_exceeded(limit, len(prompt_ids), request.max_tokens)
            budget = min(budget, limit - len(prompt_ids))
        budget = min(budget, self._train_budget(context, len(prompt_ids)) or budget)
        sampling = SamplingParams(
            temperature=request.temperature, top_p=request.top_p, top_k=request.top_k, min_p=request.min_p,
            repetition_penalty=request.repetition_penalty, max_new_tokens=budget, stop=request.stop,
            stop_token_ids=self.codec.stop_token_ids, skip_special_tokens=False, no_stop_trim=True,
            sampling_seed=request.seed,
        )
        cid = R.completion_id()
        generation = ResumableGeneration(self.engine, prompt_ids, sampling, request_id=cid,
                                         policy=self.settings.resume, on_resume=self._count_resume,
                                         stream=request.stream, transport_failures=_ENGINE_FAILURES)
        created = int(time.time())
        return _Exchange(request, context, cid, created, started, prompt_ids, generation,
                         self.codec.new_parser(prompt_ids), R.StopTrimmer(request.stop),
                         R.ChunkEncoder(cid=cid, created=created, model=self.model_name))

    def _train_budget(self, context: TurnContext, prompt_len: int) -> int | None:
        """The completion budget the training limits leave a turn that may train (None: no cap)."""
        if not context.train or context.turn_type is TurnType.SIDE:
            return None
        caps = [self.settings.train_max_new_tokens or 0]
        context_cap = self.settings.train_max_context_tokens
        if context_cap and prompt_len < context_cap:
            caps.append(context_cap - prompt_len)
        return min((c for c in caps if c > 0), default=None)

    def _check_length_bound(self, request: ChatRequest) -> None:
        """Refuse, before tokenizing, a prompt whose characters alone prove it over the context.

        No token covers more than ``codec.max_token_chars`` characters, so a prompt holding
        ``n`` characters of message text has at least ``n / max_token_chars`` tokens."""
        limit = self.settings.max_context_tokens
        if limit is None:
            return
        chars = sum(len(m["content"].strip()) for m in request.messages
                    if m["role"] != "assistant" and isinstance(m.get("content"), str))
        at_least = -(-chars // max(1, self.codec.max_token_chars))
        if at_least >= limit:
            raise context_exceeded(limit, at_least, request.max_tokens, lower_bound=True)

    async def complete(self, http: web.Request, ex: _Exchange) -> web.StreamResponse:
        """Serve the exchange (streamed or not) and record it."""
        assignment = self.book.open(ex.context, ex.request.messages, ex.prompt_ids) if ex.context.train else None
        ex.generation.routing_key = assignment.session_id if assignment is not None else ex.context.session_id
        tokens = ex.generation.run()  # transport failures come out as EngineError
        try:
            if ex.request.stream:
                return await self._stream(http, ex, tokens, assignment)
            async for ids in tokens:  # one batch per engine attempt
                ex.parser.feed(ids)
            ex.parser.close()
            message = self._finish(ex, assignment)
        finally:
            await tokens.aclose()  # a client that went away must not leave the engine generating
            if assignment is not None and ex.recorded is None:  # failed before its turn was recorded
                self.book.abandon(assignment)
        body = R.chat_completion(
            cid=ex.cid, created=ex.created, model=self.model_name, message=message,
            finish_reason=self._client_finish(ex, message), usage_obj=self._usage(ex),
            logprobs=self._logprobs(ex, ex.generation.output_ids, ex.generation.log_probs),
        )
        await self._recorded(ex)
        return R.json_response(body)

    async def _stream(self, http: web.Request, ex: _Exchange, tokens: AsyncGenerator[tuple[int, ...], None],
                      assignment: Assignment | None) -> web.StreamResponse:
        first = await anext(tokens, None)  # engine failures before this point are plain HTTP errors
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(http)
        head = ex.chunks.encode({"role": "assistant", "content": ""})
        writer = SseWriter(http, response)
        try:
            await writer.write(head + (self._chunks(ex, first) if first else b""))
            async for ids in tokens:
                await writer.write(self._chunks(ex, ids))
            closing = self._closing_chunks(ex)
            message = self._finish(ex, assignment)
            data = closing + ex.chunks.encode({}, finish_reason=self._client_finish(ex, message))
            if ex.request.include_usage:
                data += R.sse(R.usage_chunk(cid=ex.cid, created=ex.created, model=self.model_name,
                                            usage_obj=self._usage(ex)))
            await self._recorded(ex)
            await response.write_eof(data + R.SSE_DONE)  # one write: last events and the body's end
            return response
        except ConnectionError:
            log.info("client went away during stream %s", ex.cid)
            return response
        except OpenClawError as exc:
            self.metrics.stream_errors += 1
            log.warning("stream %s ended by %s: %s", ex.cid, type(exc).__name__, exc.message)
            await _write_quietly(response, R.sse_error(exc) + R.SSE_DONE)
        except Exception:  # a bug after the headers went out: still end the stream properly
            self.metrics.stream_errors += 1
            log.exception("stream %s failed", ex.cid)
            await _write_quietly(response, R.sse_error(OpenClawError("internal error in the gateway")) + R.SSE_DONE)
        await response.write_eof()
        return response

    def _closing_chunks(self, ex: _Exchange) -> bytes:
        """What the parser and the stop trimmer held back until the end."""
        deltas = [d for d in (self._visible(ex, d) for d in ex.parser.close()) if d]
        held = ex.trimmer.flush()
        if held:
            deltas.append({"content": held})
        return b"".join(ex.chunks.encode(d) for d in deltas)

    def _chunks(self, ex: _Exchange, ids: tuple[int, ...]) -> bytes:
        if not ex.seen_first:
            self._first_token(ex)
        parsed = ex.parser.feed(ids)
        if len(parsed) == 1 and not ex.request.logprobs:  # the common chunk: one delta
            visible = self._visible(ex, parsed[0])
            return ex.chunks.encode(visible) if visible else b""
        deltas = [d for d in (self._visible(ex, d) for d in parsed) if d]
        logprobs = None
        if ex.request.logprobs:
            log_probs = ex.generation.log_probs
            logprobs = self._logprobs(ex, ids, log_probs[len(log_probs) - len(ids):])
        if not deltas:
            if logprobs is None:
                return b""
            deltas = [{}]
        if len(deltas) == 1:
            return ex.chunks.encode(deltas[0], logprobs=logprobs)
        return b"".join(ex.chunks.encode(delta, logprobs=logprobs if i == 0 else None)
                        for i, delta in enumerate(deltas))

    @staticmethod
    def _visible(ex: _Exchange, delta: MessageDelta) -> dict:
        out: dict = {}
        if delta.reasoning_content:
            out["reasoning_content"] = delta.reasoning_content
        if delta.content:
            text = ex.trimmer.feed(delta.content)
            if text:
                out["content"] = text
        if delta.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in delta.tool_calls]
        return out

    def _finish(self, ex: _Exchange, assignment: Assignment | None) -> Message:
        """Build the final message, record the turn, account usage (after ``parser.close``)."""
        message = dict(ex.parser.finish())
        if ex.request.stop and message.get("content"):
            trimmer = R.StopTrimmer(ex.request.stop)
            message["content"] = trimmer.feed(message["content"]) + trimmer.flush()
        gen = ex.generation
        assert gen.finish_reason is not None
        self.metrics.prompt_tokens += len(ex.prompt_ids)
        self.metrics.completion_tokens += len(gen.output_ids)
        if assignment is not None:
            generated = GeneratedTurn(
                prompt_ids=ex.prompt_ids, response_ids=tuple(gen.output_ids), log_probs=tuple(gen.log_probs),
                weight_versions=tuple(gen.weight_versions), message=message,
                finish_reason=FinishReason(self._client_finish(ex, message)),  # as the client is told
                sampling={**ex.request.sampling_summary(), "max_new_tokens": gen.sampling.max_new_tokens},
            )
            ex.recorded = self.book.close(assignment, ex.request, generated, session_done=ex.context.session_done)
        log.info("served %s: %d prompt + %d completion tokens, %d resumes, %.3fs", ex.cid, len(ex.prompt_ids),
                 len(gen.output_ids), gen.resumes, self.monotonic() - ex.started)
        return message

    async def _recorded(self, ex: _Exchange) -> None:
        """Wait until the turn is in the journal: the client's next request, and a crash, find it there.

        Raises the client's error when it could not be recorded: the answer is withheld.
        """
        error = None if ex.recorded is None else await ex.recorded
        if error is not None:
            self.metrics.unrecorded += 1
            raise self.book.health.unrecorded(error)

    def _client_finish(self, ex: _Exchange, message: Message) -> str:
        assert ex.generation.finish_reason is not None
        return R.client_finish_reason(ex.generation.finish_reason, bool(message.get("tool_calls")))

    def _usage(self, ex: _Exchange) -> dict[str, int]:
        return R.usage(len(ex.prompt_ids), len(ex.generation.output_ids))

    def _logprobs(self, ex: _Exchange, ids: Sequence[int], log_probs: Sequence[float]) -> dict | None:
        if not ex.request.logprobs:
            return None
        return R.logprobs_content(ids, log_probs, self.codec.token_text)

    def _first_token(self, ex: _Exchange) -> None:
        if not ex.seen_first:
            ex.seen_first = True
            self.metrics.first_token.observe(self.monotonic() - ex.started)

    def _count_resume(self) -> None:
        self.metrics.resumes += 1


def context_exceeded(limit: int, prompt_tokens: int, max_tokens: int | None, *,
                     lower_bound: bool = False) -> RequestError:
    """OpenAI's ``context_length_exceeded`` error (``lower_bound``: the prompt was not
    tokenized; it has at least ``prompt_tokens`` tokens)."""
    completion = max_tokens or 0
    least = "at least " if lower_bound else ""
    return RequestError(
        f"This model's maximum context length is {limit} tokens. However, you requested {least}"
        f"{prompt_tokens + completion} tokens ({least}{prompt_tokens} in the messages, {completion} in the completion). "
        "Please reduce the length of the messages or completion.",
        code="context_length_exceeded", param="messages",
    )


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionError:
        log.info("client went away before the error event")
