"""Where the gateway of a slime run is: the bind address, the address file and the banner.

The gateway runs inside slime's RolloutManager actor, on whichever node Ray placed it.
``openclaw_gateway_host: node`` binds the IP address of that node (as Ray reports it),
``0.0.0.0``/``::`` bind every interface; anything but loopback needs a gateway key (the
config refuses it otherwise). Once the gateway listens, ``publish`` writes
``gateway.json`` into the run directory (the directory of ``--custom-config-path``, where
``slime-openclaw launch`` writes ``openclaw.yaml``; without ``--custom-config-path`` there is
no run directory and no file), atomically, and logs one banner line:

    {"url": "http://10.0.0.5:30080/v1", "host": "10.0.0.5", "port": 30080,
     "model": "policy", "api_key": "env:OPENCLAW_KEY", "pid": 1234, "started_at": ...}

``api_key`` is a reference, never the key: ``env:NAME`` (the variable that holds it, from
``openclaw_gateway_api_key_env``), ``config:openclaw_gateway_api_key`` (written in the
custom config file) or ``none`` (loopback without a key). So the file holds no secret and
is written with mode 0644; a client reads the key where the reference points.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.files import write_text_atomically

log = logging.getLogger(__name__)

ADDRESS_FILE = "gateway.json"
NODE_HOST = "node"
"""``openclaw_gateway_host`` value meaning: the IP address of the node the gateway runs on."""
WILDCARDS = ("0.0.0.0", "::")


def node_ip() -> str:
    """This node's IP address: Ray's view when Ray is importable, else the address of the
    interface that routes outwards (no packet is sent), else the host name's address."""
    try:
        import ray.util

        return str(ray.util.get_node_ip_address())
    except Exception:  # no Ray here (tests, a plain process): ask the socket layer
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def bind_host(host: str) -> str:
    """The address to bind for an ``openclaw_gateway_host`` value (``node``: this node's IP)."""
    return node_ip() if host == NODE_HOST else host


def advertised_host(bound: str) -> str:
    """The address clients use for a bound address (a wildcard bind: this node's IP)."""
    return node_ip() if bound in WILDCARDS else bound


def key_reference(config: OpenClawConfig) -> str:
    """Where the gateway's key is, never the key itself."""
    if config.gateway.api_key:
        return "config:openclaw_gateway_api_key"
    if config.gateway.api_key_env:
        return f"env:{config.gateway.api_key_env}"
    return "none"


def address_file(args: Any) -> Path | None:
    """``gateway.json`` beside ``--custom-config-path`` (the run directory); None without one
    (a Ray actor's working directory is no place a user looks)."""
    custom = getattr(args, "custom_config_path", None)
    return Path(custom).resolve().parent / ADDRESS_FILE if custom else None


def address(config: OpenClawConfig, bound_url: str) -> dict[str, Any]:
    """The address record of a gateway listening at ``bound_url`` (``http://host:port/v1``)."""
    rest = bound_url.split("://", 1)[1].rsplit("/v1", 1)[0]
    host, _, port = rest.rpartition(":")
    host = advertised_host(host.strip("[]"))
    shown = f"[{host}]" if ":" in host else host
    return {"url": f"http://{shown}:{port}/v1", "host": host, "port": int(port), "model": config.gateway.model_name,
            "api_key": key_reference(config), "pid": os.getpid(), "started_at": time.time()}


def write_address(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (a reader sees the old file or the new one)."""
    write_text_atomically(path, json.dumps(record, indent=2) + "\n", mode=0o644)


def publish(config: OpenClawConfig, bound_url: str, args: Any) -> dict[str, Any]:
    """Write the address file and log the banner; returns the record. A run directory that
    cannot be written costs the file, not the run (the banner still names the address)."""
    record = address(config, bound_url)
    path = address_file(args)
    try:
        if path is None:
            where = "no address file: no --custom-config-path names the run directory"
        else:
            write_address(path, record)
            where = f"address in {path}"
    except OSError as exc:
        where = f"address file {path} not written: {exc.strerror or exc}"
    log.warning("openclaw gateway: %s (model %s, key %s; %s)", record["url"], record["model"],
                record["api_key"], where)
    return record
