"""The child processes of benchmarks/gateway_overhead.py: engine, gateway, byte relay.

Each prints ``<role> http://127.0.0.1:PORT`` once it listens, then serves until terminated.

* engine: the scripted engine (tests/scripted_engine.py) over SGLang's ``/generate``, plus
  an OpenAI-compatible ``/v1/chat/completions`` face of the same engine (same answer, same
  token delays, one token per SSE event) for the peer proxy, which speaks only OpenAI.
* gateway: the real app (``make_app``) with a real journal, on the event loop ``--loop``
  names; with ``reuse_port`` several gateway processes share one port (``SO_REUSEPORT``:
  the kernel spreads connections over them) and one journal file.
* relay: ``/generate`` in, the engine's answer out as bytes, over the gateway's HTTP client
  (``own``) or a tuned library client (``aiohttp``: one session, no per-request timeout
  objects, ``auto_decompress=False``, raw reads; ``httpcore``: its connection pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from slime_openclaw.gateway import eventloop
from slime_openclaw.gateway.collector import settle_collector

RELAY_CLIENTS = ("own", "aiohttp", "httpcore")


async def serve_app(app: web.Application, ready: str, *, port: int = 0, reuse_port: bool = False) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port or None).start()
    print(f"{ready} http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


# -- engine --------------------------------------------------------------------------
def engine_child(model_dir: str, token_delay: float, answer_text: str) -> None:
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: test support
    from tests.scripted_engine import ScriptedEngine, make_scripted_app

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answer = tokenizer.encode(answer_text + "<|im_end|>", add_special_tokens=False)
    engine = ScriptedEngine(lambda ids: answer, chunk_size=1, delay=token_delay, log_requests=False)
    app = make_scripted_app(engine)
    texts = {i: tokenizer.decode([i]) for i in answer[:-1]}
    if "".join(texts[i] for i in answer[:-1]) != answer_text:
        raise SystemExit("the answer's tokens do not decode one by one to the answer")
    app.router.add_post("/v1/chat/completions", openai_face(engine, texts, answer_text))
    gc.freeze()  # start-up objects out of the collector's way: the engine's latency stays fixed
    asyncio.run(serve_app(app, "engine"))


def openai_face(engine: Any, texts: dict[int, str], answer_text: str) -> Callable[[web.Request], Any]:
    """``/v1/chat/completions`` over ``engine``: its answer as OpenAI chat completion (chunks)."""
    from slime_openclaw.engine.protocol import GenerateRequest, SamplingParams

    async def chat(http: web.Request) -> web.StreamResponse:
        body = orjson.loads(await http.read())
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        request = GenerateRequest(input_ids=(0,), sampling=SamplingParams(max_new_tokens=max_tokens))
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.get("model", "tiny")
        if not body.get("stream"):
            out = await engine.generate(request)
            text = "".join(texts.get(i, "") for i in out.output_ids)
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(out.output_ids),
                          "total_tokens": 1 + len(out.output_ids)}})
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(http)
        first, total = True, 0
        async for delta in engine.stream(request):
            total += len(delta.output_ids)
            content = "".join(texts.get(i, "") for i in delta.output_ids)
            choice: dict[str, Any] = {"index": 0, "delta": {"role": "assistant", "content": content} if first
                                      else {"content": content}, "finish_reason": None}
            if delta.finish_reason is not None:
                choice["finish_reason"] = "stop"
            first = False
            await response.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 1, "completion_tokens": total, "total_tokens": 1 + total}
            await response.write(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    return chat


# -- gateway -------------------------------------------------------------------------
def gateway_child(model_dir: str, engine_url: str, journal: str, merge_chunks: bool, loop: str,
                  port: int = 0, reuse_port: bool = False) -> None:
    import logging

    from slime_openclaw.engine.client import EngineClient
    from slime_openclaw.gateway.app import GatewayDeps, GatewaySettings, make_app
    from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
    from slime_openclaw.journal.location import open_journal

    logging.disable(logging.INFO)
    codec = TokenizerCodec.from_dir(model_dir)
    recorder = open_journal(journal)

    async def main() -> None:
        deps = GatewayDeps(EngineClient(engine_url, merge_chunks=merge_chunks), recorder, codec,
                           GatewaySettings(served_model_name="tiny", max_concurrency=4096))
        settle_collector()  # as ``serve`` does once started
        await serve_app(make_app(deps), "gateway", port=port, reuse_port=reuse_port)

    eventloop.run(main(), loop=loop)


# -- relay ---------------------------------------------------------------------------
Upstream = Callable[[bytes], contextlib.AbstractAsyncContextManager[tuple[int, str, AsyncIterator[bytes]]]]


def _own(engine_url: str) -> Upstream:
    from slime_openclaw.engine.http import HttpPool

    pool = HttpPool(engine_url)

    @contextlib.asynccontextmanager
    async def post(body: bytes) -> AsyncIterator[tuple[int, str, AsyncIterator[bytes]]]:
        async with await pool.request("POST", "/generate", body, read_timeout=600) as upstream:
            yield upstream.status, upstream.headers.get("content-type", "application/json"), upstream.chunks()

    return post


def _aiohttp(engine_url: str) -> Upstream:
    import aiohttp

    session: list[aiohttp.ClientSession] = []

    @contextlib.asynccontextmanager
    async def post(body: bytes) -> AsyncIterator[tuple[int, str, AsyncIterator[bytes]]]:
        if not session:  # one session for the process, created on its loop
            session.append(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0), auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=600), skip_auto_headers=("User-Agent",)))
        async with session[0].post(f"{engine_url}/generate", data=body,
                                   headers={"Content-Type": "application/json"}) as upstream:
            yield upstream.status, upstream.headers.get("Content-Type", "application/json"), upstream.content.iter_any()

    return post


def _httpcore(engine_url: str) -> Upstream:
    import httpcore

    pool = httpcore.AsyncConnectionPool(max_connections=4096, max_keepalive_connections=256, keepalive_expiry=4.0)
    url = f"{engine_url}/generate".encode()
    extensions = {"timeout": {"connect": 2.0, "read": 600.0}}

    @contextlib.asynccontextmanager
    async def post(body: bytes) -> AsyncIterator[tuple[int, str, AsyncIterator[bytes]]]:
        async with pool.stream("POST", url, headers=[(b"Content-Type", b"application/json")], content=body,
                               extensions=extensions) as upstream:
            headers = {k.lower(): v for k, v in upstream.headers}
            content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
            yield upstream.status, content_type, upstream.aiter_stream()

    return post


def relay_child(engine_url: str, client: str, loop: str) -> None:
    """A process in the middle that only relays bytes: ``/generate`` in, the engine's answer out,
    over ``client``. No rendering, parsing, sessions or journal."""
    post = {"own": _own, "aiohttp": _aiohttp, "httpcore": _httpcore}[client](engine_url)

    async def relay(request: web.Request) -> web.StreamResponse:
        async with post(await request.read()) as (status, content_type, pieces):
            if not content_type.startswith("text/event-stream"):
                return web.Response(body=b"".join([p async for p in pieces]), status=status,
                                    headers={"Content-Type": content_type})
            response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
            await response.prepare(request)
            async for piece in pieces:
                await response.write(piece)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_post("/generate", relay)
    settle_collector()  # the same collector settings as the gateway's: the floor stays a fair one
    eventloop.run(serve_app(app, "relay"), loop=loop)
