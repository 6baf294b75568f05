"""What the rollout process opens besides slime: the journal, the live service, engine URLs.

``open_journal`` builds the durable journal from the config. ``resolve_endpoint`` turns an
engine reference from the config into a URL inside the RolloutManager process: ``policy``
is the router of the policy's model, found by name in ``--sglang-config`` (``policy_model``;
without that file slime's one router, ``args.sglang_router_ip/port``), ``slime:NAME`` a frozen
model slime serves through ``--sglang-config`` (``args.sglang_model_routers[NAME]``, filled
in by slime when it starts the routers), a URL is used as is.

``start_services`` starts the live service (slime_openclaw/live.py: gateway in front of the
router, signal workers) in a background thread with its own event loop, on the journal the
rollout function drains; ``close()`` on the returned object stops it. The gateway binds
``openclaw_gateway_host`` (``node``: this node's IP) and its address goes to ``gateway.json``
in the run directory (slime/address.py). The chat template is
the policy checkpoint's (``args.hf_checkpoint``). Trainable turns are generated within slime's
length limits (``TrainLimits``: ``--rollout-max-response-len``, also the budget of a request
that names none, and ``--rollout-max-context-len``). Nothing here imports slime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import address

log = logging.getLogger(__name__)

POLICY_MODEL = "actor"
"""The policy's model name in ``--sglang-config`` (what launch writes)."""


@dataclass(frozen=True)
class TrainLimits:
    """The sample lengths slime is configured for (None: not bounded)."""

    max_response_tokens: int | None = None
    """``--rollout-max-response-len``."""
    max_context_tokens: int | None = None
    """``--rollout-max-context-len``: prompt plus response."""

    @classmethod
    def from_args(cls, args: Any) -> TrainLimits:
        """The limits in slime's parsed arguments (absent or 0: not bounded)."""
        def limit(name: str) -> int | None:
            value = getattr(args, name, None)
            return int(value) if value else None

        return cls(limit("rollout_max_response_len"), limit("rollout_max_context_len"))


def open_journal(config: OpenClawConfig) -> Any:
    """The journal at ``openclaw_journal_path`` (default: the user data directory) with the
    configured retention and drain lease."""
    from slime_openclaw.journal.location import open_journal

    return open_journal(settings=config.journal)


def resolve_endpoint(endpoint: str, args: Any) -> str:
    """URL of an engine reference (``policy``, ``slime:NAME`` or a URL) in this process."""
    if endpoint == "policy":
        name = policy_model(args)
        if name is not None:
            return resolve_endpoint(f"slime:{name}", args)
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


def policy_model(args: Any) -> str | None:
    """The policy's model name in ``--sglang-config`` (None without one: slime's one router).

    By name, never by position (slime's ``sglang_router_ip`` is the first model's router,
    which a hand-written file may make the judge): the model named ``actor`` (the name
    launch writes), else the one model that receives weight updates (``update_weights:
    true``, or unset with ``model_path`` the ``--hf-checkpoint``: slime's own rule)."""
    path = getattr(args, "sglang_config", None)
    if not path:
        return None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--sglang-config {path}: unreadable ({exc})") from None
    models = data.get("sglang") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) and "name" in m for m in models):
        raise ConfigError(f"--sglang-config {path}: no 'sglang' list of named models")
    names = [str(m["name"]) for m in models]
    if POLICY_MODEL in names:
        return POLICY_MODEL
    checkpoint = getattr(args, "hf_checkpoint", None)
    updated = [str(m["name"]) for m in models if m.get("update_weights") is True
               or (m.get("update_weights") is None and _model_path(m) in (None, checkpoint))]
    if len(updated) != 1:
        raise ConfigError(f"--sglang-config {path}: cannot tell the policy among {', '.join(names)}; "
                          f"name it {POLICY_MODEL!r} (or give exactly one model update_weights: true)")
    return updated[0]


def _model_path(model: dict[str, Any]) -> str | None:
    groups = model.get("server_groups") or model.get("engine_groups") or []
    paths = {g.get("model_path") for g in groups if isinstance(g, dict) and g.get("model_path")}
    return model.get("model_path") or (paths.pop() if len(paths) == 1 else None)


def start_services(config: OpenClawConfig, args: Any, journal: Any, limits: TrainLimits | None = None) -> Any:
    """Start gateway and signal workers in this process on ``journal``; returns a ``LiveThread``
    (``close()``, ``metrics()``), already listening. Trainable turns are generated within
    ``limits`` (default: those in ``args``)."""
    from slime_openclaw.gateway.chat import ChatSettings
    from slime_openclaw.live import LiveThread, gateway_settings

    tokenizer_dir = getattr(args, "hf_checkpoint", None)
    if not tokenizer_dir:
        raise ConfigError("the gateway needs the policy's chat template: slime's --hf-checkpoint is not set")
    policy = resolve_endpoint("policy", args)
    limits = limits or TrainLimits.from_args(args)
    chat = ChatSettings(default_max_tokens=limits.max_response_tokens or ChatSettings.default_max_tokens,
                        train_max_new_tokens=limits.max_response_tokens,
                        train_max_context_tokens=limits.max_context_tokens)
    host = address.bind_host(config.gateway.host)
    config = replace(config, gateway=replace(config.gateway, host=host))
    live = LiveThread(
        config,
        engine_url=policy,
        tokenizer_dir=tokenizer_dir,
        journal=journal,
        gateway=gateway_settings(config, chat=chat),
        resolve=lambda endpoint: resolve_endpoint(endpoint, args),
    )
    live.start()
    log.info("openclaw: gateway listening on %s (policy %s, method %s)", live.url, policy, config.method.value)
    address.publish(config, live.url, args)
    return live
