"""``slime-openclaw serve``: run the gateway in front of an engine URL or an embedded engine.

``serve --engine-url URL`` talks to a running engine (SGLang or ``slime-openclaw engine``);
``serve --embedded [--model DIR]`` starts the embedded engine as a child process on a free
loopback port (the tiny default model when ``--model`` is absent), restarts it when it dies
(gateway/supervisor.py; 503 with ``Retry-After`` meanwhile) and stops it on exit; the child
exits by itself when the gateway dies, even by ``kill -9`` (engine/child.py). It requires a
bearer key generated per run (or ``--engine-api-key``), passed in its environment, never on
its command line; its address is not printed nor shown to clients.
Either way the gateway needs the model's tokenizer to render prompts and parse replies:
``--tokenizer DIR`` (default: ``--model``; with ``--engine-url`` and neither, the engine's
``/get_model_info`` ``tokenizer_path`` when that directory exists here).

``--config FILE.yaml`` reads the ``openclaw_*`` keys (slime_openclaw/config.py);
``--method {binary,opd,combine,none}`` overrides ``openclaw_method``. With a method (given,
or from ``--config``) the signal workers run beside the gateway on the same journal and turn
observed turns into training samples; ``none`` (the default without ``--config``) records
only. Gateway settings are the ``openclaw_gateway_*`` keys of ``--config`` (else their
defaults) with the flags given applied on top. ``--journal`` defaults to ``openclaw_journal_path``,
else the user data directory. The wiring is slime_openclaw/live.py.

Binding beyond loopback requires ``--api-key``. This module reads only its arguments; the
app itself is gateway/app.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from slime_openclaw.config import GatewayConfig, OpenClawConfig
from slime_openclaw.engine.child import EngineChild
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.errors import ConfigError, EngineError
from slime_openclaw.gateway import eventloop
from slime_openclaw.gateway.app import GatewaySettings
from slime_openclaw.gateway.auth import check_bind
from slime_openclaw.gateway.chat import ChatSettings
from slime_openclaw.gateway.collector import settle_collector
from slime_openclaw.gateway.supervisor import EngineSupervisor
from slime_openclaw.gateway.tokenizer_codec import model_context_length

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slime-openclaw serve``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--engine-url", help="base URL of a running engine (SGLang or `slime-openclaw engine`)")
    source.add_argument("--embedded", action="store_true", help="start the embedded engine as a child process")
    parser.add_argument("--model", help="model directory (embedded: the model served, default the tiny model)")
    parser.add_argument("--tokenizer", help="tokenizer/chat-template directory (default: --model)")
    parser.add_argument("--served-model-name", help="model name clients use (default: the model directory's name)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need --api-key)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every endpoint but /healthz")
    parser.add_argument("--engine-api-key", help="bearer key the engine expects, if any")
    parser.add_argument("--journal", default=None,
                        help="where turns are recorded: a SQLite file or ':memory:' (default: openclaw_journal_path "
                             "from --config, else $XDG_DATA_HOME/slime-openclaw/journal.sqlite)")
    parser.add_argument("--config", help="YAML file with openclaw_* keys (signals, journal; see the README's table)")
    parser.add_argument("--method", choices=("binary", "opd", "combine", "none"),
                        help="training signals to compute: binary, opd, combine, or none to record only "
                             "(default: openclaw_method with --config, else none)")
    defaults = GatewayConfig()  # every flag below defaults to its openclaw_gateway_* key (--config, else this)
    parser.add_argument("--max-concurrency", type=int,
                        help=f"chat completions in flight at most; more get 429 (default {defaults.max_inflight})")
    parser.add_argument("--session-ttl", type=float,
                        help=f"idle seconds before a session ends (default {defaults.session_ttl_s:g})")
    parser.add_argument("--max-sessions", type=int, help=f"open sessions at most (default {defaults.max_sessions})")
    parser.add_argument("--allowed-host", action="append", dest="allowed_host", metavar="NAME",
                        help="a Host name accepted besides loopback names and --host (repeatable; '*': any)")
    parser.add_argument("--max-body-bytes", type=int,
                        help="larger request bodies get 413 (default: 1 MiB + 32 bytes per context token)")
    parser.add_argument("--body-timeout", type=float,
                        help=f"seconds a request body may take to arrive (default {defaults.body_timeout_s:g})")
    parser.add_argument("--idle-timeout", type=float,
                        help="seconds a connection may stay without a complete request header "
                             f"(default {defaults.idle_timeout_s:g})")
    parser.add_argument("--default-max-tokens", type=int, default=1024, help="completion budget when none is given")
    parser.add_argument("--max-context-tokens", type=int,
                        help="prompt + completion limit (default: the model's max_position_embeddings, "
                             "else the engine's context_length, else unchecked)")
    parser.add_argument("--strict-token-continuity", action="store_true",
                        help="also require each prompt to start with the previous prompt and response tokens "
                             "(off by default: templates that trim or drop reasoning never continue token for "
                             "token; message-level continuity is always checked)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level (request text is never logged)")
    parser.add_argument("--engine-max-running", type=int, default=16, help="embedded engine: concurrent requests")
    parser.add_argument("--event-loop", choices=eventloop.LOOPS, default="asyncio",
                        help="the gateway's event loop: asyncio (default), uvloop, or auto (uvloop when installed); "
                             "uvloop measured no gain here (README, Benchmarks)")


_FLAG_KEYS = {"max_concurrency": "max_inflight", "session_ttl": "session_ttl_s", "max_sessions": "max_sessions",
              "allowed_host": "allowed_hosts", "max_body_bytes": "max_body_bytes", "body_timeout": "body_timeout_s",
              "idle_timeout": "idle_timeout_s"}
"""Flag (argparse dest) -> the ``openclaw_gateway_*`` field it overrides."""


def build_config(args: argparse.Namespace, model_name: str, context: int | None = None,
                 section: GatewayConfig | None = None) -> GatewaySettings:
    """The gateway settings: the ``openclaw_gateway_*`` section (``--config``, else the
    defaults) with the flags given applied, validated; ``context``: the model's context in
    tokens when known (``--max-context-tokens`` wins)."""
    overrides: dict[str, Any] = {key: getattr(args, flag) for flag, key in _FLAG_KEYS.items()
                                 if getattr(args, flag, None) is not None}
    if "allowed_hosts" in overrides:
        overrides["allowed_hosts"] = tuple(overrides["allowed_hosts"])
    gateway = replace(section or GatewayConfig(), host=args.host, **overrides)
    if args.default_max_tokens < 1:
        raise ConfigError("--default-max-tokens must be at least 1")
    try:
        OpenClawConfig.from_mapping({f"openclaw_gateway_{k}": v for k, v in overrides.items()})
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (from the flags: {', '.join('--' + f.replace('_', '-') for f in _FLAG_KEYS)})"
                          ) from None
    check_bind(args.host, args.api_key)
    return GatewaySettings.from_config(
        gateway, served_model_name=args.served_model_name or model_name, api_key=args.api_key,
        check_token_continuity=args.strict_token_continuity,
        chat=ChatSettings(default_max_tokens=args.default_max_tokens,
                          max_context_tokens=args.max_context_tokens or context),
    )


async def _engine_info(engine: EngineClient) -> tuple[dict, str]:
    """The engine's ``/get_model_info`` (empty when it does not answer) and why not."""
    try:
        return await engine.model_info(), ""
    except EngineError as exc:
        return {}, exc.message


def _tokenizer_dir(args: argparse.Namespace, info: dict, why: str, model: Path | None) -> Path:
    if args.tokenizer:
        if not Path(args.tokenizer).is_dir():
            raise ConfigError(f"--tokenizer {args.tokenizer} is not a directory")
        return Path(args.tokenizer)
    if model is not None:
        return model
    if why:
        raise ConfigError(f"pass --tokenizer DIR (the engine did not say where its tokenizer is: {why})")
    path = info.get("tokenizer_path")
    if not path or not Path(path).is_dir():
        raise ConfigError("pass --tokenizer DIR: the engine's tokenizer_path is not a directory on this machine")
    return Path(path)


def openclaw_config(args: argparse.Namespace) -> tuple[OpenClawConfig, bool]:
    """The ``openclaw_*`` config of ``--config`` with ``--method`` applied, and whether to record only."""
    values = {}
    if getattr(args, "config", None):
        values = OpenClawConfig.from_file(args.config).to_mapping()
    method = getattr(args, "method", None) or (None if values else "none")
    if method not in (None, "none"):
        values["openclaw_method"] = method
    return OpenClawConfig.from_mapping(values), method == "none"


@contextlib.asynccontextmanager
async def serving(args: argparse.Namespace, engine_url: str, model: Path | None,
                  supervisor: EngineSupervisor | None = None) -> AsyncIterator[str]:
    """Build and start the gateway (and signal workers); yields its base URL; stops everything on exit."""
    from slime_openclaw.live import live_service

    openclaw, record_only = openclaw_config(args)
    local = Path(args.tokenizer) if args.tokenizer else model
    info: dict = {}
    why = ""
    # The engine is asked only for what the directories here do not say (its tokenizer, the context).
    if local is None or not (args.max_context_tokens or model_context_length(local)):
        engine = EngineClient(engine_url, api_key=args.engine_api_key)
        try:
            info, why = await _engine_info(engine)
        finally:
            await engine.aclose()
    tokenizer_dir = _tokenizer_dir(args, info, why, model)
    context = args.max_context_tokens or model_context_length(model or tokenizer_dir, info)
    config = build_config(args, (model or tokenizer_dir).name, context, openclaw.gateway)
    async with live_service(openclaw, engine_url=engine_url, tokenizer_dir=tokenizer_dir, gateway=config,
                            host=args.host, port=args.port, journal_location=args.journal,
                            record_only=record_only, engine_api_key=args.engine_api_key,
                            supervisor=supervisor) as live:
        yield live.url


async def _serve_until_stopped(args: argparse.Namespace, engine_url: str, model: Path | None,
                               child: EngineChild | None = None) -> None:
    supervisor = None if child is None else EngineSupervisor(child)
    async with serving(args, engine_url, model, supervisor) as url:
        settle_collector()  # start-up (transformers, the tokenizer) frozen; young collections rarer
        print(f"gateway listening on {url} " + ("(embedded engine)" if child else f"(engine {engine_url})"), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        watcher = None if supervisor is None else asyncio.create_task(supervisor.run())
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)


def run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_bind(args.host, args.api_key)
    openclaw_config(args)  # a bad --config fails here, before any engine starts
    loop = getattr(args, "event_loop", "asyncio")
    eventloop.loop_factory(loop)  # so does --event-loop uvloop without uvloop
    model = Path(args.model) if args.model else None
    if model is not None and not model.is_dir():
        raise ConfigError(f"--model {model} is not a directory")
    if not args.embedded:
        eventloop.run(_serve_until_stopped(args, args.engine_url, model), loop=loop)
        return 0
    if model is None:
        from slime_openclaw.local.model.tiny_model import ensure_default_model

        model = ensure_default_model()
    args.engine_api_key = args.engine_api_key or secrets.token_urlsafe(32)
    with EngineChild(model, args.engine_max_running, api_key=args.engine_api_key) as child:
        eventloop.run(_serve_until_stopped(args, child.url, model, child), loop=loop)
    return 0
