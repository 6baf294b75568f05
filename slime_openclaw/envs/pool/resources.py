"""What a Ray actor of the pool asks for, and the code it is shipped with.

Resources are per environment; an actor hosting ``envs_per_actor`` environments asks for
that many times as much. Each built-in type has a default (``TYPE_RESOURCES``; a
dotted-path class may declare its own as a ``pool_resources`` class attribute, same
shape); the ``openclaw_env_cpus`` / ``_memory_mb`` / ``_resources`` keys override it. A GUI
(browser) environment asks for the custom resource ``openclaw_gui``: only nodes started with
``ray start --resources '{"openclaw_gui": N}'`` take them. ``runtime_env`` ships
slime_openclaw and, for a dotted path, the environment's top-level package (or its single
module file) through ``py_modules``, so nodes need neither installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slime_openclaw.config_envpool import EnvPoolConfig
from slime_openclaw.envs.registry import BUILTIN, EnvSpec, load_env_class
from slime_openclaw.errors import ConfigError

GUI_RESOURCE = "openclaw_gui"


@dataclass(frozen=True)
class EnvResources:
    """Ray resources of one environment."""

    cpus: float = 1.0
    memory_mb: int = 0
    custom: dict[str, float] = field(default_factory=dict)

    def actor_options(self, envs_per_actor: int) -> dict[str, Any]:
        """``actor.options(...)`` keywords for an actor hosting ``envs_per_actor`` of them."""
        options: dict[str, Any] = {"num_cpus": self.cpus * envs_per_actor}
        if self.memory_mb:
            options["memory"] = self.memory_mb * envs_per_actor * 1024 * 1024
        if self.custom:
            options["resources"] = {k: v * envs_per_actor for k, v in self.custom.items()}
        return options


TYPE_RESOURCES: dict[str, EnvResources] = {
    "terminal": EnvResources(cpus=1.0, memory_mb=512),
    "toolcall": EnvResources(cpus=0.5, memory_mb=256),
    "swe": EnvResources(cpus=1.0, memory_mb=2048),
    "gui": EnvResources(cpus=1.0, memory_mb=1024, custom={GUI_RESOURCE: 1.0}),
}
"""Defaults of the built-in environment types."""


def env_resources(spec: EnvSpec, config: EnvPoolConfig) -> EnvResources:
    """The type's default (or the class's ``pool_resources``), overridden by the config keys."""
    base = TYPE_RESOURCES.get(spec.name) if spec.name in BUILTIN else None
    if base is None:
        declared = getattr(load_env_class(spec.name), "pool_resources", None)
        base = declared if isinstance(declared, EnvResources) else EnvResources()
    custom = config.resource_pairs() or base.custom
    return EnvResources(cpus=base.cpus if config.cpus is None else config.cpus,
                        memory_mb=base.memory_mb if config.memory_mb is None else config.memory_mb,
                        custom=dict(custom))


def check_cluster_offers(resources: EnvResources, offered: dict[str, float]) -> None:
    """``ConfigError`` when no node of the cluster offers a custom resource asked for (it would wait forever)."""
    for name in resources.custom:
        if offered.get(name, 0.0) <= 0:
            hint = f"start its nodes with ray start --resources '{{\"{name}\": N}}'"
            raise ConfigError(f"environment pool: no node of the Ray cluster offers resource {name!r}: {hint}, "
                              "or set openclaw_env_resources")


def _package_root(module_name: str) -> Path | None:
    """The directory of the top-level package (or the file of a top-level module) of ``module_name``."""
    top = module_name.split(".", 1)[0]
    found = importlib.util.find_spec(top)
    if found is None:
        return None
    if found.submodule_search_locations:
        locations = list(found.submodule_search_locations)
        return Path(locations[0]) if len(locations) == 1 else None
    return Path(found.origin) if found.origin and found.origin.endswith(".py") else None


def runtime_env(spec: EnvSpec) -> dict[str, Any]:
    """Ray ``runtime_env`` that ships slime_openclaw and the environment's own package."""
    import slime_openclaw

    modules = [str(Path(slime_openclaw.__file__).parent)]
    top = spec.path.split(".", 1)[0]
    if top != "slime_openclaw":
        root = _package_root(spec.path.rpartition(".")[0])
        if root is None:
            raise ConfigError(f"environment {spec.name!r}: cannot ship its module to Ray (a namespace package "
                              "spread over several folders?): install it on every node and set openclaw_env_ship_code: false")
        modules.append(str(root))
    return {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"]}
