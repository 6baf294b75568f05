"""The gateway's aiohttp application, built from its dependencies: ``make_app(deps)``.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/sessions/{id}/outcome`` (gateway/outcomes.py), ``GET /healthz`` and ``GET /metrics``. One middleware turns every failure into an
OpenAI-style error body with a deliberate status (400/401/404/413/429/502, 500 for bugs,
without traceback), counts requests, and checks the bearer token. Back-pressure: more than
``max_concurrency`` chat completions in flight get 429 with ``Retry-After``. A background
task ends idle sessions; at shutdown the journal writes still queued are applied.

The app knows nothing of how the engine, the recorder or the codec are built: see
gateway/serve.py for the command line and process wiring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from slime_openclaw.config import GatewayConfig
from slime_openclaw.engine.protocol import Engine
from slime_openclaw.errors import EngineError, NotFoundError, OpenClawError, OverloadedError, RequestError
from slime_openclaw.gateway.admission import (
    CLIENT_CLOSED,
    ClientGone,
    check_host,
    check_json_content_type,
    read_body,
)
from slime_openclaw.gateway.auth import check_bearer
from slime_openclaw.gateway.chat import ChatService, ChatSettings
from slime_openclaw.gateway.codec import ChatCodec
from slime_openclaw.gateway.logs import redact_server_logs
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.gateway.outcomes import record_outcome
from slime_openclaw.gateway.recording import TurnBook, turn_context
from slime_openclaw.gateway.runner import GatewayRunner
from slime_openclaw.gateway.sessions import SessionTable
from slime_openclaw.gateway.wire import ChatRequest, parse_chat_request, parse_json_body
from slime_openclaw.journal.base import OutcomeStore, TurnRecorder

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_KEYS = GatewayConfig()
"""The defaults of the ``openclaw_gateway_*`` keys: the one source of every default below."""


@dataclass(frozen=True)
class GatewaySettings:
    """The app's settings: the ``openclaw_gateway_*`` section (``config.GatewayConfig``) as
    the app reads it, plus what the process wiring resolves (served model name, the key
    itself, chat limits). Build it with ``from_config``; defaults are the section's."""

    served_model_name: str
    """The one model name clients may ask for (``/v1/models`` lists it)."""
    api_key: str | None = None
    """When set, every endpoint but ``/healthz`` requires ``Authorization: Bearer <key>``."""
    max_concurrency: int = _KEYS.max_inflight
    """Chat completions in flight at most; more get 429."""
    retry_after: float = 1.0
    """Seconds suggested in ``Retry-After`` on 429."""
    max_body_bytes: int = _KEYS.max_body_bytes
    """Larger request bodies get 413 (0: derived from the context, see ``body_limit``)."""
    session_ttl: float = _KEYS.session_ttl_s
    """Idle seconds after which a session ends."""
    max_sessions: int = _KEYS.max_sessions
    """Open sessions at most (least recently active ends first)."""
    check_token_continuity: bool = False
    """Also require token-level continuity for a next state (see gateway/sessions.py)."""
    health_timeout: float = 2.0
    """Seconds ``/healthz`` waits for the engine."""
    host: str = _KEYS.host
    """The address the gateway is bound to (a ``Host`` naming it is always accepted)."""
    allowed_hosts: tuple[str, ...] = _KEYS.allowed_hosts
    """Further ``Host`` names accepted (``*``: any); see gateway/admission.py."""
    body_timeout: float = _KEYS.body_timeout_s
    """Seconds a request body may take to arrive (408 after)."""
    idle_timeout: float = _KEYS.idle_timeout_s
    """Seconds a connection may wait without a complete request header (new or kept alive)."""
    chat: ChatSettings = field(default_factory=ChatSettings)

    @classmethod
    def from_config(cls, section: GatewayConfig, *, served_model_name: str | None = None,
                    api_key: str | None = None, **extra: Any) -> GatewaySettings:
        """The settings of an ``openclaw_gateway_*`` section (``api_key``: the resolved key;
        ``extra``: the fields no key sets, e.g. ``chat``)."""
        return cls(served_model_name=served_model_name or section.model_name, api_key=api_key or None,
                   max_concurrency=section.max_inflight, max_body_bytes=section.max_body_bytes,
                   session_ttl=section.session_ttl_s, max_sessions=section.max_sessions, host=section.host,
                   allowed_hosts=section.allowed_hosts, body_timeout=section.body_timeout_s,
                   idle_timeout=section.idle_timeout_s, **extra)


@dataclass
class GatewayDeps:
    """The gateway's dependencies, each the narrow slice it uses."""

    engine: Engine
    recorder: TurnRecorder
    codec: ChatCodec
    config: GatewaySettings
    clock: Callable[[], float] = time.time
    """Wall clock (turn timestamps, session TTLs)."""
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    outcomes: OutcomeStore | None = None
    """Where ``POST /v1/sessions/{id}/outcome`` records (the journal); None: that route answers 404."""
    engine_health: Callable[[], dict[str, Any]] | None = None
    """What ``/healthz`` adds about the engine beyond whether it answers (a supervised child's state)."""


GATEWAY_KEY = web.AppKey("gateway", object)
LINGER_S = 1.0
OFFLOAD_BYTES = 32 * 1024
"""Bodies this large are parsed, rendered and tokenized in a thread, off the event loop."""
OFFLOAD_THREADS = 2
DEFAULT_BODY_BYTES = 8 * 1024 * 1024
"""The body limit when neither it nor the model's context is known."""
_T = TypeVar("_T")


def body_limit(config: GatewaySettings) -> int:
    """``max_body_bytes``, else 1 MiB plus 32 bytes per context token (a prompt that fits the
    context fits with room for JSON escapes and tools), else ``DEFAULT_BODY_BYTES``."""
    if config.max_body_bytes:
        return config.max_body_bytes
    context = config.chat.max_context_tokens
    return (1 << 20) + 32 * context if context else DEFAULT_BODY_BYTES


def _parse(raw: bytes) -> ChatRequest:
    return parse_chat_request(parse_json_body(raw))


@dataclass
class _Gateway:
    deps: GatewayDeps
    service: ChatService
    book: TurnBook
    started: int = field(default_factory=lambda: int(time.time()))
    offload: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(OFFLOAD_THREADS))

    @property
    def config(self) -> GatewaySettings:
        return self.deps.config

    @property
    def metrics(self) -> GatewayMetrics:
        return self.deps.metrics

    async def chat_completions(self, http: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        check_json_content_type(http)
        raw = await read_body(http, max_bytes=body_limit(self.config), timeout_s=self.config.body_timeout)
        large = len(raw) >= OFFLOAD_BYTES
        request = await self._off_loop(_parse, raw) if large else _parse(raw)
        if request.model != self.config.served_model_name:
            raise NotFoundError(f"model '{request.model}' does not exist; this gateway serves "
                                f"'{self.config.served_model_name}'", param="model")
        context = turn_context(http.headers, request)
        if self.metrics.in_flight >= self.config.max_concurrency:
            self.metrics.overloaded += 1
            raise OverloadedError("too many requests in flight; retry shortly", retry_after=self.config.retry_after)
        self.metrics.in_flight += 1
        try:
            if large:
                exchange = await self._off_loop(self.service.prepare, request, context, started)
            else:
                exchange = self.service.prepare(request, context, started)
            return await self.service.complete(http, exchange)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.latency.observe(time.monotonic() - started)

    async def _off_loop(self, work: Callable[..., _T], *args: Any) -> _T:
        """Run CPU work of a large request in a thread (at most ``OFFLOAD_THREADS`` at once)."""
        async with self.offload:
            return await asyncio.to_thread(work, *args)

    async def models(self, http: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [self._model_card()]})

    async def model(self, http: web.Request) -> web.StreamResponse:
        if http.match_info["model"] != self.config.served_model_name:
            raise NotFoundError(f"model '{http.match_info['model']}' does not exist", param="model")
        return web.json_response(self._model_card())

    def _model_card(self) -> dict:
        return {"id": self.config.served_model_name, "object": "model", "created": self.started,
                "owned_by": "slime-openclaw"}

    async def session_outcome(self, http: web.Request) -> web.StreamResponse:
        check_json_content_type(http)  # a write like the chat route: no cross-site form posts
        body = parse_json_body(await read_body(http, max_bytes=body_limit(self.config),
                                               timeout_s=self.config.body_timeout))
        return web.json_response(await record_outcome(
            http.match_info["session"], body, self.deps.outcomes, self.deps.recorder, self.book.flush))

    async def healthz(self, http: web.Request) -> web.StreamResponse:
        try:
            healthy = await asyncio.wait_for(self.deps.engine.health(), self.config.health_timeout)
        except (OpenClawError, OSError, asyncio.TimeoutError):
            healthy = False
        journal = self.book.health.check()
        status = "ok" if healthy and journal else "engine_unavailable" if not healthy else "journal_failing"
        body = {"status": status, "engine": healthy, "journal": journal,
                "in_flight": self.metrics.in_flight, "sessions_open": len(self.book.sessions)}
        if not journal:
            body["journal_error"] = self.book.health.error
        if self.deps.engine_health is not None:
            body.update(self.deps.engine_health())
        return web.json_response(body, status=200 if status == "ok" else 503)

    async def metrics_text(self, http: web.Request) -> web.StreamResponse:
        self.metrics.sessions_open = len(self.book.sessions)
        self.metrics.journal_ok = int(self.book.health.ok)
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def sweep_sessions(self, app: web.Application) -> AsyncIterator[None]:
        """Background task (cleanup context): end idle sessions periodically."""
        period = max(0.05, min(self.config.session_ttl / 4, 30.0))

        async def loop() -> None:
            while True:
                await asyncio.sleep(period)
                self.book.expire()

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def journal_writes(self, app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: at shutdown, apply the journal writes still queued, then stop the writer."""
        yield
        await self.book.flush()
        self.book.writer.apply_now()


def _endpoint(http: web.Request) -> str:
    resource = http.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


_CLOSING_CODES = frozenset({"invalid_body", "request_timeout", "request_too_large"})


def _error_response(error: OpenClawError) -> web.Response:
    headers = {}
    retry_after = getattr(error, "retry_after", None)  # 429 overloaded, 503 unavailable
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    response = web.json_response(error.to_openai(), status=error.status, headers=headers)
    if error.code in _CLOSING_CODES:  # the rest of that body cannot be read: end the connection
        response.force_close()
    return response


def _admit(http: web.Request, config: GatewaySettings) -> None:
    """Host and key checks of every request (``/healthz`` needs neither)."""
    if http.path == "/healthz":
        return
    if config.allowed_hosts or not config.api_key:  # with a key and no list, the key is the guard
        check_host(http.headers.get("Host"), config.host, config.allowed_hosts)
    check_bearer(http.headers.get("Authorization"), config.api_key)


def _middleware(gateway: _Gateway) -> Any:
    @web.middleware
    async def middleware(http: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            _admit(http, gateway.config)
            response = await handler(http)
        except ClientGone:
            gateway.metrics.requests[(_endpoint(http), CLIENT_CLOSED)] += 1
            log.info("client left during the request on %s", http.path)
            return web.Response(status=CLIENT_CLOSED)  # nobody reads it: the connection is gone
        except EngineError as exc:
            log.warning("engine error on %s %s: %s", http.method, http.path, exc.message)
            response = _error_response(exc)
        except OpenClawError as exc:
            response = _error_response(exc)
        except web.HTTPException as exc:  # routing: unknown path, wrong method
            error = RequestError(f"{http.method} {http.path}: {exc.reason}", status=exc.status, code="not_found"
                                 if exc.status == 404 else "method_not_allowed")
            response = _error_response(error)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: the client gets a generic 500, the log gets the traceback
            log.exception("unhandled error on %s %s", http.method, http.path)
            response = _error_response(OpenClawError("internal error in the gateway"))
        gateway.metrics.requests[(_endpoint(http), response.status)] += 1
        return response

    return middleware


def make_runner(deps: GatewayDeps) -> web.AppRunner:
    """A runner for the gateway app with its connection timeouts (no access log) and error
    JSON for requests aiohttp cannot parse (gateway/runner.py).

    aiohttp's keep-alive timer runs from a connection's start and after each response, so
    it also ends connections whose request header never completes; after an error answer,
    the rest of an unread body is drained for at most ``LINGER_S``."""
    return GatewayRunner(make_app(deps), access_log=None, keepalive_timeout=deps.config.idle_timeout,
                         lingering_time=LINGER_S)


def make_app(deps: GatewayDeps) -> web.Application:
    """Build the gateway application from its dependencies."""
    config = deps.config
    redact_server_logs()
    book = TurnBook(
        recorder=deps.recorder,
        sessions=SessionTable(ttl=config.session_ttl, max_sessions=config.max_sessions),
        metrics=deps.metrics,
        clock=deps.clock,
        check_token_continuity=config.check_token_continuity,
    )
    service = ChatService(deps.engine, deps.codec, book, deps.metrics, config.served_model_name, config.chat)
    gateway = _Gateway(deps, service, book)
    app = web.Application(client_max_size=body_limit(config), middlewares=[_middleware(gateway)])
    app[GATEWAY_KEY] = gateway
    app.router.add_post("/v1/chat/completions", gateway.chat_completions)
    app.router.add_get("/v1/models", gateway.models)
    app.router.add_get("/v1/models/{model}", gateway.model)
    app.router.add_post("/v1/sessions/{session}/outcome", gateway.session_outcome)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/metrics", gateway.metrics_text)
    app.cleanup_ctx.append(gateway.journal_writes)
    app.cleanup_ctx.append(gateway.sweep_sessions)
    return app
