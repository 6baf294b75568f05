"""Value parsing for config.py: YAML files, ``--set`` overrides, typed coercion of one value.

Split from config.py to keep that module about the keys themselves; config.py re-exports
``load_yaml_mapping`` and ``parse_override``. Nothing here knows the key table.
"""

from __future__ import annotations

import ipaddress
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from slime_openclaw.errors import ConfigError
from slime_openclaw.types import Method


def load_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file: empty mapping)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys to values")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` from ``--set``: the value is parsed as YAML (``3``, ``true``, ``[a, b]``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def resolve_mode(mode: str, endpoints: tuple[str, ...]) -> str:
    if mode == "auto":
        return "rules+llm" if endpoints else "rules"
    return mode


def positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}: must be >= 1, got {value}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def coerce(key: str, raw: Any, hint: Any) -> Any:
    """Check (and gently convert) one value against its field's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(key, raw, inner)
    if origin is tuple:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of strings, got {raw!r}")
        return tuple(coerce(key, item, str) for item in items)
    if hint is Method:
        try:
            return Method(str(raw).lower())
        except ValueError:
            raise ConfigError(f"{key}: must be one of {', '.join(m.value for m in Method)}, got {raw!r}") from None
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        raise ConfigError(f"{key}: expected true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise ConfigError(f"{key}: expected an integer, got {raw!r}")
    if hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)  # YAML 1.1 reads 1e-3 as a string
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {raw!r}")
    if hint is str:
        if isinstance(raw, str):
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise ConfigError(f"{key}: expected a string, got {raw!r}")
    raise ConfigError(f"{key}: unsupported type {hint}")  # pragma: no cover - table is fixed
