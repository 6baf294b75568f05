"""What the rollout process opens besides slime: the journal, and where the engines are.

``open_journal`` builds the durable journal from the config. ``resolve_endpoint`` turns an
engine reference from the config into a URL inside the RolloutManager process: ``policy``
is slime's own SGLang router (``args.sglang_router_ip/port``), ``slime:NAME`` a frozen
model slime serves through ``--sglang-config`` (``args.sglang_model_routers[NAME]``, filled
in by slime when it starts the routers), a URL is used as is.

``start_services`` starts the gateway and signal workers in this process. It is the seam
the gateway and signal packages plug into (``slime_openclaw.gateway.serve.start_live``);
until a build provides it, run them beside slime with ``slime-openclaw serve`` on the same
journal file, which is equivalent (the journal is the only state they share).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError

log = logging.getLogger(__name__)


def open_journal(config: OpenClawConfig) -> Any:
    """The SQLite journal at ``openclaw_journal_path`` with the configured retention."""
    from slime_openclaw.journal.retention import RetentionPolicy
    from slime_openclaw.journal.sqlite import SqliteJournal

    retention = RetentionPolicy(
        keep_text=config.journal.keep_text, delete_consumed_after_hours=config.journal.retention_hours
    )
    return SqliteJournal(config.journal.path, retention=retention, drain_lease_seconds=config.journal.drain_lease_s)


def resolve_endpoint(endpoint: str, args: Any) -> str:
    """URL of an engine reference (``policy``, ``slime:NAME`` or a URL) in this process."""
    if endpoint == "policy":
        ip, port = getattr(args, "sglang_router_ip", None), getattr(args, "sglang_router_port", None)
        if not ip or not port:
            raise ConfigError("slime's SGLang router address is not known (args.sglang_router_ip/port unset)")
        return f"http://{ip}:{port}"
    if endpoint.startswith("slime:"):
        name = endpoint.split(":", 1)[1]
        routers = getattr(args, "sglang_model_routers", None) or {}
        if name not in routers:
            known = ", ".join(sorted(routers)) or "none"
            raise ConfigError(f"{endpoint}: slime serves no model named {name!r} (models: {known}); add it to --sglang-config")
        ip, port = routers[name]
        return f"http://{ip}:{port}"
    return endpoint.rstrip("/")


def start_services(config: OpenClawConfig, args: Any, journal: Any) -> Any:
    """Start gateway and signal workers in this process, when the build provides them."""
    try:
        module = importlib.import_module("slime_openclaw.gateway.serve")
    except ModuleNotFoundError:
        module = None
    start_live = getattr(module, "start_live", None)
    if start_live is None:
        log.warning(
            "openclaw: gateway/signal services are not started in the rollout process; "
            "run `slime-openclaw serve` on journal %s beside slime",
            config.journal.path,
        )
        return None
    endpoints = {
        "policy": resolve_endpoint("policy", args),
        "teacher": resolve_endpoint(config.teacher.endpoint, args),
        "judge": [resolve_endpoint(e, args) for e in config.judge.endpoints],
        "hint": [resolve_endpoint(e, args) for e in config.hint_endpoints],
    }
    return start_live(config, journal, endpoints)
