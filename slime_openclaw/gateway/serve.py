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
only. Gateway settings come from the flags. ``--journal`` defaults to ``openclaw_journal_path``,
else the user data directory. The wiring is slime_openclaw/live.py.

Binding beyond loopback requires ``--api-key``. This module reads only its arguments; the
app itself is gateway/app.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from slime_openclaw.engine.child import EngineChild
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.errors import ConfigError, EngineError
from slime_openclaw.gateway.app import GatewayConfig
from slime_openclaw.gateway.auth import check_bind
from slime_openclaw.gateway.chat import ChatSettings
from slime_openclaw.gateway.supervisor import EngineSupervisor

if TYPE_CHECKING:
    from slime_openclaw.config import OpenClawConfig

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
    parser.add_argument("--max-concurrency", type=int, default=256,
                        help="chat completions in flight at most; more get 429 (default 256)")
    parser.add_argument("--session-ttl", type=float, default=1800.0, help="idle seconds before a session ends")
    parser.add_argument("--max-sessions", type=int, default=10_000, help="open sessions at most (default 10000)")
    parser.add_argument("--default-max-tokens", type=int, default=1024, help="completion budget when none is given")
    parser.add_argument("--max-context-tokens", type=int, help="prompt + completion limit (default: unchecked)")
    parser.add_argument("--strict-token-continuity", action="store_true",
                        help="also require each prompt to start with the previous prompt and response tokens "
                             "(off by default: templates that trim or drop reasoning never continue token for "
                             "token; message-level continuity is always checked)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level (request text is never logged)")
    parser.add_argument("--engine-max-running", type=int, default=16, help="embedded engine: concurrent requests")


def build_config(args: argparse.Namespace, model_name: str) -> GatewayConfig:
    """The gateway settings from the command line (validated)."""
    for name in ("max_concurrency", "max_sessions", "default_max_tokens"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.session_ttl <= 0:
        raise ConfigError("--session-ttl must be positive")
    check_bind(args.host, args.api_key)
    return GatewayConfig(
        served_model_name=args.served_model_name or model_name,
        api_key=args.api_key,
        max_concurrency=args.max_concurrency,
        session_ttl=args.session_ttl,
        max_sessions=args.max_sessions,
        check_token_continuity=args.strict_token_continuity,
        chat=ChatSettings(default_max_tokens=args.default_max_tokens, max_context_tokens=args.max_context_tokens),
    )


async def _tokenizer_dir(args: argparse.Namespace, engine: EngineClient, model: Path | None) -> Path:
    if args.tokenizer:
        if not Path(args.tokenizer).is_dir():
            raise ConfigError(f"--tokenizer {args.tokenizer} is not a directory")
        return Path(args.tokenizer)
    if model is not None:
        return model
    try:
        info = await engine.model_info()
    except EngineError as exc:
        raise ConfigError(f"pass --tokenizer DIR (the engine did not say where its tokenizer is: {exc.message})") from None
    path = info.get("tokenizer_path") if isinstance(info, dict) else None
    if not path or not Path(path).is_dir():
        raise ConfigError("pass --tokenizer DIR: the engine's tokenizer_path is not a directory on this machine")
    return Path(path)


def openclaw_config(args: argparse.Namespace) -> tuple[OpenClawConfig, bool]:
    """The ``openclaw_*`` config of ``--config`` with ``--method`` applied, and whether to record only."""
    from slime_openclaw.config import OpenClawConfig

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
    engine = EngineClient(engine_url, api_key=args.engine_api_key)
    try:
        tokenizer_dir = await _tokenizer_dir(args, engine, model)
    finally:
        await engine.aclose()
    config = build_config(args, (model or tokenizer_dir).name)
    async with live_service(openclaw, engine_url=engine_url, tokenizer_dir=tokenizer_dir, gateway=config,
                            host=args.host, port=args.port, journal_location=args.journal,
                            record_only=record_only, engine_api_key=args.engine_api_key,
                            supervisor=supervisor) as live:
        yield live.url


async def _serve_until_stopped(args: argparse.Namespace, engine_url: str, model: Path | None,
                               child: EngineChild | None = None) -> None:
    supervisor = None if child is None else EngineSupervisor(child)
    async with serving(args, engine_url, model, supervisor) as url:
        gc.freeze()  # what start-up loaded (transformers, the tokenizer) is never scanned by the collector
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
    model = Path(args.model) if args.model else None
    if model is not None and not model.is_dir():
        raise ConfigError(f"--model {model} is not a directory")
    if not args.embedded:
        asyncio.run(_serve_until_stopped(args, args.engine_url, model))
        return 0
    if model is None:
        from slime_openclaw.local.model.tiny_model import ensure_default_model

        model = ensure_default_model()
    args.engine_api_key = args.engine_api_key or secrets.token_urlsafe(32)
    with EngineChild(model, args.engine_max_running, api_key=args.engine_api_key) as child:
        asyncio.run(_serve_until_stopped(args, child.url, model, child))
    return 0
