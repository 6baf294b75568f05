"""A scripted engine: answers from a script instead of a model, for tests and the overhead benchmark.

Test support, not part of the installed package: tests import it as ``tests.scripted_engine``;
``benchmarks/gateway_overhead.py`` (in its engine child process) and ``benchmarks/journal.py``
import it the same way with the repository root on ``sys.path``.

``ScriptedEngine`` implements the ``Engine`` protocol in-process; ``make_scripted_app``
(or ``served``, which runs it on 127.0.0.1 on a free port) serves it over the SGLang ``/generate`` wire subset (JSON or incremental SSE stream,
``meta_info`` with ``output_token_logprobs``, ``finish_reason``, ``weight_version``), plus
``/health`` and ``/get_weight_version``. Its own latency is fixed and small, so what a benchmark measures
through it is the caller's overhead. Fault injection: ``abort_next(after)`` ends the next
request with ``abort`` after that many tokens and bumps the weight version, as SGLang does
when slime pauses it to load weights. A scoring request (``max_new_tokens=0`` with
``logprob_start_len >= 0``) gets input log-probs in SGLang's alignment (a ``None`` pad for
the token at ``logprob_start_len``); ``abort_next`` aborts it with only half of them. Over
HTTP, each request's ``X-SMG-Routing-Key`` header lands in its ``routing_key``.

It is not a model: the answer to a prompt is ``script(input_ids)``, emitted in chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from slime_openclaw.engine.protocol import GenerateDelta, GenerateOutput, GenerateRequest, SamplingParams
from slime_openclaw.types import FinishReason

Script = Callable[[tuple[int, ...]], Sequence[int]]


def token_log_prob(position: int, token_id: int) -> float:
    """The deterministic log-prob the scripted engine reports for a token."""
    return -((position * 31 + token_id) % 97) / 100.0 - 0.01


@dataclass
class ScriptedEngine:
    """An ``Engine`` whose answer to a prompt is ``script(prompt)``.

    A resumed request (a recent prompt followed by a prefix of its answer) continues that
    answer where it stopped, as a real engine would continue its own tokens.
    """

    script: Script
    chunk_size: int = 2
    """Tokens per streamed delta."""
    delay: float = 0.0
    """Seconds to wait before each delta (0: yield to the loop only)."""
    weight: int = 0
    log_requests: bool = True
    """Keep every request in ``requests`` (tests read them; a long benchmark turns it off)."""
    requests: list[GenerateRequest] = field(default_factory=list)
    _abort_after: int | None = None
    _recent: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def abort_next(self, after: int) -> None:
        """End the next request with ``abort`` after ``after`` tokens, then bump the weight version."""
        self._abort_after = after

    async def generate(self, request: GenerateRequest) -> GenerateOutput:
        if request.sampling.max_new_tokens == 0 and request.logprob_start_len >= 0:
            return await self._score(request)
        ids: list[int] = []
        lps: list[float] = []
        finish = FinishReason.STOP
        version = self.weight
        async for delta in self.stream(request):
            ids.extend(delta.output_ids)
            lps.extend(delta.output_log_probs)
            version = delta.weight_version
            finish = delta.finish_reason or finish
        return GenerateOutput(tuple(ids), tuple(lps), finish, version, len(request.input_ids))

    async def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateDelta]:
        if self.log_requests:
            self.requests.append(request)
        answer = self._answer(tuple(request.input_ids))
        budget = request.sampling.max_new_tokens
        stops = set(request.sampling.stop_token_ids)
        cut = next((i + 1 for i, t in enumerate(answer) if t in stops), len(answer))
        finish = FinishReason.STOP if cut <= budget else FinishReason.LENGTH
        answer = answer[: min(cut, budget)]
        abort_at, self._abort_after = self._abort_after, None
        if abort_at is not None and abort_at < len(answer):
            answer, finish = answer[:abort_at], FinishReason.ABORT
        start = len(request.input_ids)
        sent = 0
        while True:
            await asyncio.sleep(self.delay)
            piece = answer[sent: sent + self.chunk_size]
            sent += len(piece)
            done = sent >= len(answer)
            lps = tuple(token_log_prob(start + sent - len(piece) + i, t) for i, t in enumerate(piece))
            version = self.weight
            if done and finish is FinishReason.ABORT:
                self.weight += 1  # the weight update the abort made room for
            yield GenerateDelta(tuple(piece), lps, version, finish if done else None, start)
            if done:
                break

    async def _score(self, request: GenerateRequest) -> GenerateOutput:
        if self.log_requests:
            self.requests.append(request)
        await asyncio.sleep(self.delay)
        ids, start = request.input_ids, request.logprob_start_len
        values = (None, *(token_log_prob(p, ids[p]) for p in range(start + 1, len(ids))))
        finish, version = FinishReason.LENGTH, self.weight
        if self._abort_after is not None:
            self._abort_after = None
            values, finish = values[: len(values) // 2], FinishReason.ABORT
            self.weight += 1
        return GenerateOutput((), (), finish, version, len(ids), input_log_probs=values)

    def _answer(self, input_ids: tuple[int, ...]) -> list[int]:
        for prompt, full in reversed(self._recent):
            if len(prompt) < len(input_ids) <= len(prompt) + len(full) and input_ids[: len(prompt)] == prompt:
                done = input_ids[len(prompt):]
                if full[: len(done)] == done:
                    return list(full[len(done):])
        full = tuple(self.script(input_ids))
        self._recent = [*self._recent[-63:], (input_ids, full)]
        return list(full)

    async def weight_version(self) -> int:
        return self.weight

    async def health(self) -> bool:
        return True


ENGINE_KEY = web.AppKey("scripted_engine", ScriptedEngine)


def make_scripted_app(engine: ScriptedEngine) -> web.Application:
    """Serve ``engine`` over the SGLang ``/generate`` subset."""
    app = web.Application()
    app[ENGINE_KEY] = engine
    app.router.add_post("/generate", _generate)
    app.router.add_get("/health", _health)
    app.router.add_get("/get_weight_version", _weight_version)
    return app


@contextlib.asynccontextmanager
async def served(engine: ScriptedEngine) -> AsyncIterator[str]:
    """``engine`` over HTTP on 127.0.0.1 on a free port: yields its base URL and always stops it."""
    runner = web.AppRunner(make_scripted_app(engine))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _health(http: web.Request) -> web.Response:
    return web.Response(status=200)


async def _weight_version(http: web.Request) -> web.Response:
    return web.json_response({"weight_version": str(http.app[ENGINE_KEY].weight)})


def _request_from_json(body: dict[str, Any], routing_key: str | None = None) -> GenerateRequest:
    sp = body.get("sampling_params") or {}
    sampling = SamplingParams(
        temperature=float(sp.get("temperature", 1.0)), top_p=float(sp.get("top_p", 1.0)),
        max_new_tokens=int(sp.get("max_new_tokens", 128)), stop=tuple(sp.get("stop") or ()),
        stop_token_ids=tuple(sp.get("stop_token_ids") or ()),
    )
    return GenerateRequest(input_ids=tuple(body["input_ids"]), sampling=sampling, rid=body.get("rid"),
                           logprob_start_len=int(body.get("logprob_start_len", -1)), routing_key=routing_key)


def _meta(delta: GenerateDelta, completion_tokens: int) -> dict[str, Any]:
    finish = None if delta.finish_reason is None else {"type": delta.finish_reason.value}
    return {
        "output_token_logprobs": [[lp, t, None]
                                  for lp, t in zip(delta.output_log_probs, delta.output_ids, strict=True)],
        "finish_reason": finish,
        "weight_version": str(delta.weight_version),
        "prompt_tokens": delta.prompt_tokens,
        "completion_tokens": completion_tokens,
    }


async def _generate(http: web.Request) -> web.StreamResponse:
    engine = http.app[ENGINE_KEY]
    body = await http.json()
    request = _request_from_json(body, http.headers.get("X-SMG-Routing-Key"))
    if not body.get("stream"):
        out = await engine.generate(request)
        delta = GenerateDelta(out.output_ids, out.output_log_probs, out.weight_version, out.finish_reason,
                              out.prompt_tokens)
        meta = _meta(delta, len(out.output_ids))
        if request.logprob_start_len >= 0:
            meta["input_token_logprobs"] = [[lp, request.input_ids[request.logprob_start_len + i], None]
                                            for i, lp in enumerate(out.input_log_probs)]
        return web.json_response({"text": "", "output_ids": list(out.output_ids), "meta_info": meta})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(http)
    total = 0
    async for delta in engine.stream(request):
        total += len(delta.output_ids)
        chunk = {"text": "", "output_ids": list(delta.output_ids), "meta_info": _meta(delta, total)}
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
