"""Naming and building environments: built-in short names, dotted paths, typed arguments.

``--env terminal`` or ``--env package.module.ClassName``; ``--env-arg key=value`` strings
become keyword arguments typed from the class's ``__init__`` annotations (``int``,
``float``, ``bool``, ``str``; anything else is read as JSON, falling back to the string).
Every mistake is a ``ConfigError`` with one line that says what to fix.

``EnvSpec`` is the picklable recipe (name + keyword arguments) that travels to workers
(Ray actors, the slime generate function) and builds a fresh environment there.
Built-ins may also provide task generators and reference trajectories
(``builtin_tasks``, ``reference_replies``, ``mistaken_replies``) for the embedded loop.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.errors import ConfigError

BUILTIN: dict[str, str] = {
    "gui": "slime_openclaw.envs.gui.GuiEnv",
    "terminal": "slime_openclaw.envs.terminal.TerminalEnv",
    "toolcall": "slime_openclaw.envs.toolcall.ToolCallEnv",
    "swe": "slime_openclaw.envs.swe.SweEnv",
}
"""Built-in short name -> dotted path (``slime-openclaw agents list`` prints these)."""

_METHODS = ("reset", "step", "outcome", "close")


def resolve_path(name: str) -> str:
    """The dotted path for a short name or a dotted path (validated for shape only)."""
    if name in BUILTIN:
        return BUILTIN[name]
    parts = name.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise ConfigError(
            f"unknown environment {name!r}: use a built-in ({', '.join(sorted(BUILTIN))}) "
            "or a dotted path package.module.ClassName"
        )
    return name


def load_env_class(name: str) -> type:
    """Import the class named by ``name``; it must have async reset/step/outcome/close."""
    path = resolve_path(name)
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"environment {name!r}: cannot import module {module_name!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise ConfigError(f"environment {name!r}: module {module_name!r} has no class {class_name!r}")
    missing = [m for m in _METHODS if not inspect.iscoroutinefunction(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"environment {name!r}: {class_name} lacks async method(s) {', '.join(missing)}")
    return cls


def parse_env_args(pairs: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> ``{key: value}`` (values stay strings until ``build``)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--env-arg {pair!r}: expected key=value with key a Python identifier")
        if key in out:
            raise ConfigError(f"--env-arg {key!r} given twice")
        out[key] = value
    return out


def coerce_args(cls: type, name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from ``raw``: unknown keys rejected, strings typed."""
    params = _init_params(cls)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except Exception:  # unresolvable annotations: fall back to JSON typing
        hints = {}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in params and not accepts_any:
            known = ", ".join(k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
            raise ConfigError(f"environment {name!r}: unknown argument {key!r} (accepts: {known or 'none'})")
        kwargs[key] = _typed(value, hints.get(key), f"environment {name!r} argument {key!r}")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"environment {name!r}: {exc}") from None
    return kwargs


def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}
    return {k: p for k, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _typed(value: Any, hint: Any, what: str) -> Any:
    if not isinstance(value, str):
        return value
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) else [hint]
    if str in kinds:
        return value
    for kind in kinds:
        converted = _convert(value, kind)
        if converted is not _FAIL:
            return converted
    if kinds and all(k in (int, float, bool) for k in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{what}: {value!r} is not a valid {names}")
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


_FAIL = object()
_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _convert(value: str, kind: Any) -> Any:
    try:
        if kind is bool:
            return _BOOLS.get(value.strip().lower(), _FAIL)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
    except ValueError:
        return _FAIL
    return _FAIL


@dataclass(frozen=True)
class EnvSpec:
    """A picklable recipe for an environment: name (short or dotted) and keyword arguments."""

    name: str
    """Built-in short name or dotted path ``package.module.ClassName``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments (strings are typed from the class's annotations when built)."""

    @classmethod
    def parse(cls, name: str, env_args: Iterable[str] = ()) -> EnvSpec:
        """From ``--env NAME`` and ``--env-arg key=value`` strings, checked eagerly."""
        spec = cls(name, parse_env_args(env_args))
        spec.check()
        return spec

    @property
    def path(self) -> str:
        """The dotted path this spec resolves to."""
        return resolve_path(self.name)

    def check(self) -> dict[str, Any]:
        """Import the class and type the arguments without building; returns the typed kwargs."""
        return coerce_args(load_env_class(self.name), self.name, self.kwargs)

    def build(self) -> Any:
        """A fresh environment instance."""
        cls = load_env_class(self.name)
        return cls(**coerce_args(cls, self.name, self.kwargs))


def build_env(name: str, env_args: Iterable[str] | Mapping[str, Any] = ()) -> Any:
    """Build an environment from a name and ``key=value`` strings or a mapping."""
    raw = dict(env_args) if isinstance(env_args, Mapping) else parse_env_args(env_args)
    return EnvSpec(name, raw).build()


def builtin_tasks(name: str, split: str, *, seed: int = 0) -> list[dict[str, Any]]:
    """The generated tasks of an environment that ships a generator (``split``: train | eval)."""
    cls = load_env_class(name)
    generate = getattr(cls, "generate_tasks", None)
    if generate is None:
        raise ConfigError(f"environment {name!r} ships no task generator: pass --tasks FILE")
    if split not in ("train", "eval"):
        raise ConfigError(f"unknown split {split!r} (train or eval)")
    return list(generate(split, seed=seed))


def reference_replies(name: str, task: dict[str, Any]) -> list[dict[str, Any]]:
    """Assistant replies that solve ``task`` (for synthetic pre-training data)."""
    cls = load_env_class(name)
    reference = getattr(cls, "reference_replies", None)
    if reference is None:
        raise ConfigError(f"environment {name!r} provides no reference trajectories")
    return list(reference(task))


def mistaken_replies(name: str, task: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Assistant replies that follow a plausible wrong strategy for ``task`` (synthetic
    pre-training data with errors RL can correct); None where the environment has none."""
    mistaken = getattr(load_env_class(name), "mistaken_replies", None)
    replies = None if mistaken is None else mistaken(task)
    return None if replies is None else list(replies)
