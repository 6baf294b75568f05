"""Where environments run: an in-process pool, or Ray actors across a cluster (one API).

``async with pool.lease() as env:`` hands one episode a fresh ``Environment``; the
episode driver uses it like any other. Modules, one concern each:

- ``api``: ``EnvPool`` (bounded leases in flight with back-pressure, heartbeats, a time
  limit on every call) and ``PooledEnv`` (the lease's ``Environment``, idempotent steps);
- ``host``: ``EnvHost``, the environments of one spec under leases (a Ray actor's body);
- ``leases`` / ``ledger``: heartbeats and reclaim; a step run at most once per key;
- ``local``: ``LocalEnvPool`` (``openclaw_env_pool: local``, the default; no Ray);
- ``ray_pool``: ``RayEnvPool`` (``openclaw_env_pool: ray``; imported only then);
- ``resources``: Ray resources per environment type, the code shipped in ``runtime_env``;
- ``metrics``: running, queued, reclaimed, failed, step latency;
- ``probe``: light environments (echo, sleep) that measure the pool itself.
"""

from __future__ import annotations

from slime_openclaw.config_envpool import EnvPoolConfig
from slime_openclaw.envs.base import EnvironmentFailure
from slime_openclaw.envs.pool.api import EnvPool, PooledEnv
from slime_openclaw.envs.pool.leases import LeaseLost
from slime_openclaw.envs.pool.local import LocalEnvPool
from slime_openclaw.envs.pool.metrics import PoolMetrics
from slime_openclaw.envs.registry import EnvSpec


def open_pool(spec: EnvSpec, config: EnvPoolConfig | None = None) -> EnvPool:
    """The pool ``config.pool`` names for ``spec`` (Ray is imported only for ``ray``)."""
    config = config or EnvPoolConfig()
    if config.pool == "ray":
        from slime_openclaw.envs.pool.ray_pool import RayEnvPool

        return RayEnvPool(spec, config)
    return LocalEnvPool(spec, max_in_flight=config.max_in_flight, call_timeout_s=config.call_timeout_s,
                        lease_ttl_s=config.lease_ttl_s)


__all__ = ["EnvPool", "EnvPoolConfig", "EnvironmentFailure", "LeaseLost", "LocalEnvPool", "PoolMetrics",
           "PooledEnv", "open_pool"]
