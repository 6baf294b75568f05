"""The embedded engine's HTTP server (aiohttp) and the ``slime-openclaw engine`` command.

Speaks the subset of SGLang's native API this package uses, with SGLang's field names,
shapes and status codes (checked against sgl-project/sglang
``python/sglang/srt/entrypoints/http_server.py``, v0.5.x):

- ``POST|PUT /generate``: JSON body -> JSON body; with ``stream`` an SSE stream of
  ``data: {json}\\n\\n`` chunks closed by ``data: [DONE]\\n\\n``. Errors: 400
  ``{"error": {"message"}}`` (SGLang's ``_create_error_response``).
- ``GET /health``, ``GET /health_generate``: 200 or 503, empty body.
- ``GET /get_model_info`` (alias ``/model_info``), ``GET /get_weight_version``
  (``{"weight_version": "3"}``: a string, as in SGLang).
- ``POST /pause_generation`` ``{"mode": "abort"|"in_place"|"retract"}`` (default abort) and
  ``POST /continue_generation``: ``{"message", "status": "ok"}``.
- ``POST /abort_request`` ``{"rid", "abort_all"}``: 200, empty body.
- ``GET|POST /flush_cache``: 200 with SGLang's text (nothing is cached across requests).
- ``POST /update_weights_from_disk`` ``{"model_path", "weight_version"?, "abort_all_requests"?}``
  -> ``{"success", "message", "num_paused_requests"}``, 400 when not successful.

Deliberate differences from SGLang: only ``input_ids`` (no ``text``, no batches); fields
we do not implement are rejected with 400 instead of ignored; streaming is always
incremental (SGLang's ``--incremental-streaming-output``; by default SGLang repeats the
cumulative ``output_ids``/log-probs in every chunk, which ``EngineClient`` also handles);
``/update_weights_from_disk`` without ``weight_version`` increments the version (SGLang
keeps it) and does not wait for in-flight requests (they continue on the new weights).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from slime_openclaw.engine.child import engine_key_from_env, tie_to_parent
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.wire import GenerateCall, ResponseBuilder
from slime_openclaw.errors import ConfigError, EngineError, RequestError

log = logging.getLogger(__name__)
RUNTIME_KEY = web.AppKey("runtime", Runtime)
HEALTH_TIMEOUT_S = 20.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status)


async def _json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(f"invalid JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc.message, exc.status)
    except EngineError as exc:
        return _error(exc.message, 503)


def _api_key_middleware(api_key: str) -> Any:
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):  # constant time: the key is not guessable byte by byte
            return _error("invalid or missing API key", 401)
        return await handler(request)

    return check


def make_app(runtime: Runtime, *, api_key: str | None = None) -> web.Application:
    """The aiohttp application serving ``runtime`` (which the caller starts and closes)."""
    middlewares = [_errors] + ([_api_key_middleware(api_key)] if api_key else [])
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
    app[RUNTIME_KEY] = runtime
    app.router.add_route("POST", "/generate", generate)
    app.router.add_route("PUT", "/generate", generate)
    app.router.add_get("/health", health)
    app.router.add_get("/health_generate", health_generate)
    app.router.add_get("/get_model_info", model_info)
    app.router.add_get("/model_info", model_info)
    app.router.add_get("/get_weight_version", weight_version)
    app.router.add_post("/pause_generation", pause_generation)
    app.router.add_post("/continue_generation", continue_generation)
    app.router.add_post("/abort_request", abort_request)
    app.router.add_route("*", "/flush_cache", flush_cache)
    app.router.add_post("/update_weights_from_disk", update_weights_from_disk)
    return app


async def generate(request: web.Request) -> web.StreamResponse:
    """``/generate``: token-in generation or scoring, whole or streamed."""
    runtime = request.app[RUNTIME_KEY]
    call = GenerateCall(await _json_body(request))
    handle = runtime.submit(call.request)
    builder = ResponseBuilder(call, runtime.token_text)
    try:
        if not call.stream:
            async for progress in handle:
                builder.add(progress)
            return web.json_response(builder.final())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        async for progress in handle:
            await response.write(b"data: " + json.dumps(builder.chunk(progress)).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    finally:
        if not handle.finished:  # client went away or the handler was cancelled
            runtime.abort(handle.rid)


async def health(request: web.Request) -> web.Response:
    """200 while the scheduler thread runs, 503 otherwise."""
    return web.Response(status=200 if request.app[RUNTIME_KEY].healthy else 503)


async def health_generate(request: web.Request) -> web.Response:
    """200 when the engine produced a token recently or generates one now (SGLang's semantics)."""
    runtime = request.app[RUNTIME_KEY]
    if not runtime.healthy:
        return web.Response(status=503)
    if runtime.last_token_time and time.monotonic() - runtime.last_token_time < 1.0:
        return web.Response(status=200)
    call = GenerateCall({"input_ids": [0], "sampling_params": {"max_new_tokens": 1, "temperature": 0.0}})
    handle = runtime.submit(call.request)
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            async for _ in handle:
                pass
    except TimeoutError:
        runtime.abort(handle.rid)
        return web.Response(status=503)
    return web.Response(status=200)


async def model_info(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    return web.json_response(
        {
            "model_path": runtime.model_path,
            "tokenizer_path": runtime.model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": str(runtime.weight_version),
            "context_length": runtime.context_length,
        }
    )


async def weight_version(request: web.Request) -> web.Response:
    return web.json_response({"weight_version": str(request.app[RUNTIME_KEY].weight_version)})


async def pause_generation(request: web.Request) -> web.Response:
    body = await _json_body(request, optional=True)
    mode = body.get("mode", "abort")
    if not isinstance(mode, str):
        raise RequestError("'mode' must be a string", param="mode")
    await asyncio.wrap_future(request.app[RUNTIME_KEY].pause(mode))
    return web.json_response({"message": "Generation paused successfully.", "status": "ok"})


async def continue_generation(request: web.Request) -> web.Response:
    await asyncio.wrap_future(request.app[RUNTIME_KEY].resume())
    return web.json_response({"message": "Generation continued successfully.", "status": "ok"})


async def abort_request(request: web.Request) -> web.Response:
    body = await _json_body(request)
    rid, abort_all = body.get("rid") or None, body.get("abort_all", False)
    if (rid is not None and not isinstance(rid, str)) or not isinstance(abort_all, bool):
        raise RequestError("'rid' must be a string and 'abort_all' a boolean")
    await asyncio.wrap_future(request.app[RUNTIME_KEY].abort(rid, abort_all=abort_all))
    return web.Response(status=200)


async def flush_cache(request: web.Request) -> web.Response:
    text = (
        "Cache flushed.\nPlease check backend logs for more details. "
        "(When there are running or waiting requests, the operation will not be performed.)\n"
    )
    return web.Response(text=text, status=200)


async def update_weights_from_disk(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    body = await _json_body(request)
    path, raw_version = body.get("model_path"), body.get("weight_version")
    if not isinstance(path, str) or not path:
        raise RequestError("'model_path' is required", param="model_path")
    try:
        version = None if raw_version is None else int(raw_version)
    except (TypeError, ValueError):
        raise RequestError("'weight_version' must be an integer (or its string)", param="weight_version") from None
    if body.get("abort_all_requests") is True:
        await asyncio.wrap_future(runtime.abort(None, abort_all=True))
    try:
        new_version = await asyncio.to_thread(runtime.load_weights_from_disk, path, version)
    except (OSError, ValueError) as exc:
        payload = {"success": False, "message": f"Failed to update weights: {exc}", "num_paused_requests": 0}
        return web.json_response(payload, status=400)
    message = f"Succeeded to update model weights. Weight version updated to {new_version}."
    return web.json_response({"success": True, "message": message, "num_paused_requests": 0})


# -- running it -------------------------------------------------------------------------
async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner (call ``cleanup()``) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


class ServerThread:
    """Serves a runtime on a background thread with its own event loop (tests, demos).

    ``with ServerThread(runtime) as url:`` binds 127.0.0.1 on a free port and yields the
    base URL; the server stops on exit (the runtime is the caller's to close).
    """

    def __init__(self, runtime: Runtime, host: str = "127.0.0.1", port: int = 0):
        self.runtime, self.host, self.port = runtime, host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine-http", daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> str:
        self._thread.start()
        coroutine = start_site(make_app(self.runtime), self.host, self.port)
        self._runner, self.port = asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)
        return f"http://{self.host}:{self.port}"

    def __exit__(self, *exc: object) -> None:
        try:
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slime-openclaw engine``."""
    parser.add_argument("--model", required=True, help="Hugging Face causal-LM directory")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=30000, help="port (default 30000, SGLang's)")
    parser.add_argument("--max-running", type=int, default=16, help="requests decoded concurrently (default 16)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (needed off loopback)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the decoding thread (default 1)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted (or, as a gateway's child, until the gateway is gone)."""
    tie_to_parent()
    args.api_key = args.api_key or engine_key_from_env()
    if not _is_loopback(args.host) and not args.api_key:
        raise ConfigError(f"refusing to bind {args.host} without --api-key (only loopback is open)")
    if args.max_running < 1 or args.threads < 1:
        raise ConfigError("--max-running and --threads must be at least 1")
    import torch

    try:
        runtime = Runtime.load(
            args.model, max_running=args.max_running, dtype=getattr(torch, args.dtype), threads=args.threads
        )
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from exc
    with runtime:
        asyncio.run(_serve_forever(make_app(runtime, api_key=args.api_key), args.host, args.port))
    return 0


async def _serve_forever(app: web.Application, host: str, port: int) -> None:
    runner, bound = await start_site(app, host, port)
    print(f"engine listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

