"""The live service: one journal, the gateway and the signal workers in one process.

``live_service(config, engine_url=..., tokenizer_dir=...)`` is an async context manager
that opens the journal (or uses the one given), serves the gateway in front of the engine,
and, unless ``record_only``, runs the signal workers that turn OBSERVED turns into READY
samples for ``config.method``. It yields a ``LiveService`` (gateway URL, journal, worker
counters, metrics) and stops everything on exit, gateway first, then workers, then the
journal it opened. ``LiveThread`` runs the same in a background thread with its own event
loop, for synchronous hosts (slime's RolloutManager, the demo).

Where models come from: ``policy`` is the engine at ``engine_url``; judge and hint
endpoints (``openclaw_judge_endpoints``) and a frozen teacher are resolved to URLs by
``resolve`` (inside slime: ``slime.services.resolve_endpoint``; elsewhere ``slime:NAME``
is an error). ``policy`` and ``slime:NAME`` judges speak the native protocol, rendered with
the policy's chat template (or ``openclaw_judge_tokenizer``); URL judges speak
``openclaw_judge_protocol``.

Sessions of a previous process (crash, restart) cannot be continued, so their last turns
would wait in SERVED forever: a sweeper gives every SERVED turn idle longer than the
session TTL a session-end next state, exactly what the TTL would have done had the
process lived. This module builds and wires; the parts are gateway/, signals/, journal/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.errors import ConfigError
from slime_openclaw.gateway.app import GatewayDeps, GatewaySettings, make_runner
from slime_openclaw.gateway.matching import session_end
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.gateway.supervisor import EngineSupervisor, SupervisedEngine
from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec, model_context_length
from slime_openclaw.journal.base import JournalStore
from slime_openclaw.journal.location import open_journal
from slime_openclaw.signals.config import SignalsConfig, build_pipeline, make_generator
from slime_openclaw.signals.judge_backends import (
    EngineTextGenerator,
    SpreadGenerator,
    TextGenerator,
    aclose_quietly,
)
from slime_openclaw.signals.worker import SignalWorker
from slime_openclaw.types import TurnState

log = logging.getLogger(__name__)

Resolver = Callable[[str], str]
"""An engine reference from the config (``policy``, ``slime:NAME``, URL) -> its URL."""


def gateway_settings(config: OpenClawConfig, served_model_name: str | None = None, **extra: Any) -> GatewaySettings:
    """The gateway app's settings from the ``openclaw_gateway_*`` keys (``extra``: fields no key sets)."""
    return GatewaySettings.from_config(config.gateway, served_model_name=served_model_name,
                                       api_key=config.gateway_api_key(), **extra)


def default_resolver(engine_url: str) -> Resolver:
    """``policy`` -> ``engine_url``; URLs as they are; ``slime:NAME`` refused (no slime here)."""

    def resolve(endpoint: str) -> str:
        if endpoint == "policy":
            return engine_url
        if endpoint.startswith("slime:"):
            raise ConfigError(f"{endpoint}: slime:NAME endpoints exist only inside a slime run; use a URL")
        return endpoint.rstrip("/")

    return resolve


@dataclass
class LiveService:
    """A running live service."""

    url: str
    """Base URL of the gateway's OpenAI API (``http://host:port/v1``)."""
    journal: JournalStore
    worker: SignalWorker | None
    """None when recording only."""
    gateway_metrics: GatewayMetrics
    orphans_closed: int = 0
    """SERVED turns of ended (or dead) sessions given a session-end next state by the sweeper."""

    @property
    def counters(self) -> dict[str, float]:
        """The signal workers' counters (empty when recording only)."""
        return self.worker.counters.snapshot() if self.worker is not None else {}

    def metrics(self) -> dict[str, float]:
        """Flat ``openclaw/...`` metrics: worker counters, journal states, lags, turns served."""
        out = {f"openclaw/signals_{k}": v for k, v in self.counters.items()}
        stats = self.journal.stats()
        out.update({f"openclaw/turns_{k}": float(v) for k, v in stats.turns_by_state.items()})
        out.update({f"openclaw/samples_{k}": float(v) for k, v in stats.samples_by_state.items()})
        out["openclaw/judge_lag_s"] = float(stats.judge_lag_seconds)
        out["openclaw/ready_lag_s"] = float(stats.ready_lag_seconds)
        out["openclaw/gateway_turns_recorded"] = float(self.gateway_metrics.turns_recorded)
        out["openclaw/gateway_recorder_errors"] = float(self.gateway_metrics.recorder_errors)
        out["openclaw/orphans_closed"] = float(self.orphans_closed)
        return out


@dataclass
class _Stack:
    """The signal side's resources, closed in reverse."""

    closers: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        for obj in reversed(self.closers):
            await aclose_quietly(obj)
        self.closers.clear()


SignalStack = _Stack
"""What ``build_signal_pipeline`` registers its generators on (close it with ``aclose``)."""


def _generator(
    config: OpenClawConfig, endpoints: tuple[str, ...], resolve: Resolver, codec: TokenizerCodec,
    judge_codec: TokenizerCodec, stack: _Stack, policy_key: str | None = None,
) -> TextGenerator:
    """One text generator over ``endpoints``, votes spread over them (``policy_key``: the policy engine's key)."""
    signals = SignalsConfig.from_openclaw(config)
    generators: list[TextGenerator] = []
    for endpoint in endpoints:
        url = resolve(endpoint)
        native = endpoint == "policy" or endpoint.startswith("slime:") or config.judge.protocol == "sglang"
        if native:
            template = codec if endpoint == "policy" else judge_codec
            generators.append(EngineTextGenerator(
                EngineClient(url, api_key=policy_key if endpoint == "policy" else None), template.renderer, template.tokenizer, signals.sampling,
                template.stop_token_ids, name=endpoint, owns_engine=True,
            ))
        else:
            generators.append(make_generator([url], "openai", signals.sampling, model=config.judge.model,
                                             api_key=config.judge.api_key or None))
    stack.closers.extend(generators)
    return generators[0] if len(generators) == 1 else SpreadGenerator(generators)


def build_signal_pipeline(
    config: OpenClawConfig, codec: TokenizerCodec, policy: EngineClient, resolve: Resolver, stack: _Stack,
    policy_key: str | None = None,
) -> Any:
    """The signal pipeline of ``config`` over the policy engine and the configured judges."""
    signals = SignalsConfig.from_openclaw(config)
    judge_codec = TokenizerCodec.from_dir(config.judge.tokenizer) if config.judge.tokenizer else codec
    judge_gen = hint_gen = None
    if config.uses_judge and "llm" in signals.judge:
        judge_gen = _generator(config, config.judge.endpoints, resolve, codec, judge_codec, stack, policy_key)
    if config.uses_teacher and "llm" in signals.hint:
        if judge_gen is not None and config.hint_endpoints == config.judge.endpoints:
            hint_gen = judge_gen
        else:
            hint_gen = _generator(config, config.hint_endpoints, resolve, codec, judge_codec, stack, policy_key)
    reference = None
    if config.uses_teacher and signals.teacher == "reference":
        reference = EngineClient(resolve(config.teacher.endpoint),
                                 api_key=policy_key if config.teacher.endpoint == "policy" else None)
        stack.closers.append(reference)
    return build_pipeline(signals, codec.renderer, judge_gen, policy, reference, hint_gen)


def close_orphans(journal: JournalStore, idle_s: float, now: float | None = None) -> int:
    """Give SERVED turns idle longer than ``idle_s`` a session-end next state; returns how many."""
    now = time.time() if now is None else now
    stale = [r.turn.key for r in journal.iter_turns(TurnState.SERVED) if now - r.updated_at > idle_s]
    for key in stale:
        journal.attach_next_state(key, session_end(now))
    return len(stale)


async def _sweep_orphans(service: LiveService, idle_s: float) -> None:
    period = max(0.05, min(idle_s / 2, 60.0))
    while True:
        try:
            service.orphans_closed += close_orphans(service.journal, idle_s)
        except Exception:  # a journal hiccup must not end the sweeper; the next round retries
            log.exception("closing orphaned turns failed")
        await asyncio.sleep(period)


@contextlib.asynccontextmanager
async def _gateway_site(deps: GatewayDeps, host: str, port: int) -> AsyncIterator[str]:
    runner = make_runner(deps)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1] if runner.addresses else port
        yield f"http://{host}:{bound}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def live_service(
    config: OpenClawConfig,
    *,
    engine_url: str,
    tokenizer_dir: str | Path,
    journal: JournalStore | None = None,
    journal_location: str | None = None,
    gateway: GatewaySettings | None = None,
    host: str | None = None,
    port: int | None = None,
    record_only: bool = False,
    resolve: Resolver | None = None,
    engine_api_key: str | None = None,
    poll_interval_s: float = 0.25,
    supervisor: EngineSupervisor | None = None,
) -> AsyncIterator[LiveService]:
    """Run journal + gateway + signal workers; yields the running ``LiveService``.

    ``journal``: use this journal (the caller closes it); else open ``journal_location`` or
    the config's journal (closed on exit). ``gateway``: the app settings (default from the
    ``openclaw_gateway_*`` keys); ``host``/``port`` override ``openclaw_gateway_host/port``
    (port 0 picks a free one). ``record_only``: no signal workers (turns stay OBSERVED).
    ``supervisor``: the embedded engine child's (gateway/supervisor.py): the gateway answers
    503 while it restarts the child, and ``/healthz`` reports its state.
    """
    codec = TokenizerCodec.from_dir(tokenizer_dir)
    settings = gateway or gateway_settings(config)
    if settings.chat.max_context_tokens is None:  # a prompt over the model's context is the client's 400
        chat = replace(settings.chat, max_context_tokens=model_context_length(tokenizer_dir))
        settings = replace(settings, chat=chat)
    owned = journal is None
    store = open_journal(journal_location, settings=config.journal) if journal is None else journal
    # Chunks that one read brought in become one delta (same weight version): a gateway
    # that falls behind relays several tokens per SSE event instead of queueing more work.
    engine = EngineClient(engine_url, api_key=engine_api_key, merge_chunks=True)
    stack = _Stack()
    worker: SignalWorker | None = None
    try:
        if not record_only:
            pipeline = build_signal_pipeline(config, codec, engine, resolve or default_resolver(engine_url), stack,
                                             engine_api_key)
            worker = SignalWorker(store, pipeline, concurrency=config.signal_workers, poll_interval_s=poll_interval_s)
        gateway_engine = engine if supervisor is None else SupervisedEngine(engine, supervisor)
        deps = GatewayDeps(gateway_engine, store, codec, settings, outcomes=store,
                           engine_health=None if supervisor is None else supervisor.health)
        bind_port = config.gateway.port if port is None else port
        async with _gateway_site(deps, host or config.gateway.host, bind_port) as url:
            service = LiveService(url, store, worker, deps.metrics)
            sweeper = asyncio.create_task(_sweep_orphans(service, settings.session_ttl))
            if worker is not None:
                worker.start()
            try:
                yield service
            finally:
                sweeper.cancel()
                await asyncio.gather(sweeper, return_exceptions=True)
    finally:
        if worker is not None:
            await worker.stop()
        await stack.aclose()
        await engine.aclose()
        if owned:
            store.close()


class LiveThread:
    """``live_service`` in a background thread with its own event loop (synchronous hosts).

    ``start()`` returns once the gateway listens (or raises what stopped it from starting);
    ``close()`` stops it and joins the thread. ``service`` is the running ``LiveService``.
    """

    def __init__(self, config: OpenClawConfig, **kwargs: Any) -> None:
        self.config = config
        self.kwargs = kwargs
        self.service: LiveService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="openclaw-live", daemon=True)

    def start(self, timeout_s: float = 300.0) -> LiveThread:
        """Start the thread and wait until the service is up."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the live service did not start within {timeout_s:.0f}s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with live_service(self.config, **self.kwargs) as service:
                self.service = service
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # reported to start(), or logged when it happens later
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("the live service stopped with an error")
        finally:
            self._ready.set()

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        if self.service is None:
            raise RuntimeError("the live service is not running")
        return self.service.url

    def metrics(self) -> dict[str, float]:
        """The running service's metrics (empty once stopped)."""
        return self.service.metrics() if self.service is not None and self._thread.is_alive() else {}

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the service (gateway, workers, journal if it opened it) and join the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just finished
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
