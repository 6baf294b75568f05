"""The ``openclaw_env_*`` keys: where general-agent environments run (envs/pool/).

``openclaw_env_pool`` picks the pool: ``local`` (in-process, the embedded default; Ray is
never imported) or ``ray`` (each environment on a Ray actor of the cluster slime started).
The other keys bound the pool (episodes in flight), size the actors (Ray resources per
environment; the built-in types have defaults in envs/pool/resources.py) and time it
(a limit on every call, leases kept alive by heartbeats). config.py makes this the ``env``
section of ``OpenClawConfig``. Nothing here imports ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slime_openclaw.errors import ConfigError

POOLS = ("local", "ray")


@dataclass(frozen=True)
class EnvPoolConfig:
    """The environment pool (``openclaw_env_*``)."""

    pool: str = "local"
    """Where environments run: ``local`` (in this process) or ``ray`` (on Ray actors of the cluster slime started, ``envs_per_actor`` each; README: Environment pool)."""
    max_in_flight: int = 64
    """Episodes holding an environment at once; more wait for a slot (back-pressure, never an error)."""
    envs_per_actor: int = 1
    """Environments one Ray actor hosts at once (raise it for light, I/O-bound environments)."""
    cpus: float | None = None
    """Ray CPUs per environment (an actor asks for ``cpus * envs_per_actor``); empty: the environment type's default."""
    memory_mb: int | None = None
    """Ray memory per environment in MiB; empty: the environment type's default."""
    resources: str = ""
    """Custom Ray resources per environment as ``name=amount`` pairs separated by commas (empty: the type's default; gui asks for ``openclaw_gui=1``)."""
    call_timeout_s: float = 600.0
    """Limit on every reset/step/outcome call; past it the episode ends as an environment failure and its environment is reclaimed."""
    lease_ttl_s: float = 60.0
    """An environment whose lease got no heartbeat for this long is closed and its slot freed (the driver died); heartbeats go every quarter of it."""
    ray_address: str = "auto"
    """Ray cluster to join (``auto``: the one running here, as slime started it); a cluster is never started."""
    ship_code: bool = True
    """Ship slime_openclaw and a dotted-path environment's package to the actors in Ray's runtime_env (false: the nodes have them installed)."""

    def resource_pairs(self) -> dict[str, float]:
        """``resources`` as ``{name: amount}``."""
        out: dict[str, float] = {}
        for part in (p.strip() for p in self.resources.split(",")):
            if not part:
                continue
            name, sep, amount = part.partition("=")
            try:
                value = float(amount)
            except ValueError:
                value = -1.0
            if not sep or not name.strip() or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"openclaw_env_resources: {part!r} is not name=amount with amount > 0")
            out[name.strip()] = value
        return out

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ConfigError(f"openclaw_env_pool: must be local or ray, got {self.pool!r}")
        for key, value in (("max_in_flight", self.max_in_flight), ("envs_per_actor", self.envs_per_actor)):
            if value < 1:
                raise ConfigError(f"openclaw_env_{key}: must be >= 1, got {value}")
        for key, number in (("call_timeout_s", self.call_timeout_s), ("lease_ttl_s", self.lease_ttl_s)):
            if not (math.isfinite(number) and number > 0):
                raise ConfigError(f"openclaw_env_{key}: must be a number > 0, got {number}")
        if self.cpus is not None and not (math.isfinite(self.cpus) and self.cpus >= 0):
            raise ConfigError(f"openclaw_env_cpus: must be empty or a number >= 0, got {self.cpus}")
        if self.memory_mb is not None and self.memory_mb < 0:
            raise ConfigError(f"openclaw_env_memory_mb: must be empty or >= 0, got {self.memory_mb}")
        self.resource_pairs()
