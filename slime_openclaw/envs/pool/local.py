"""The in-process pool (``openclaw_env_pool: local``): the pool API with no Ray at all.

Environments are built in this process by one ``EnvHost`` (host.py), under leases with
heartbeats, a time limit on every call and idempotent steps, exactly as on Ray; the
embedded loop and the slime generate function use it by default. An exception raised by
the environment's own code ends the episode as an environment failure (logged with its
traceback), not as the agent's fault and not as a crashed run.
"""

from __future__ import annotations

import logging
from typing import Any

from slime_openclaw.envs.base import EnvironmentFailure
from slime_openclaw.envs.pool.api import EnvPool, Handle
from slime_openclaw.envs.pool.host import EnvHost
from slime_openclaw.envs.registry import EnvSpec
from slime_openclaw.errors import ConfigError

log = logging.getLogger(__name__)


class LocalEnvPool(EnvPool):
    """Environments in this process (see the module docstring)."""

    kind = "local"

    def __init__(self, spec: EnvSpec, *, max_in_flight: int = 64, call_timeout_s: float = 600.0,
                 lease_ttl_s: float = 60.0) -> None:
        super().__init__(spec, max_in_flight=max_in_flight, call_timeout_s=call_timeout_s, lease_ttl_s=lease_ttl_s)
        self.host = EnvHost(spec.name, spec.kwargs, lease_ttl_s)

    async def _open(self, lease_id: str) -> Handle:
        try:
            await self.host.open(lease_id)
        except ConfigError:
            raise
        except Exception as exc:
            log.exception("building environment %s failed", self.spec.name)
            raise EnvironmentFailure(f"building {self.spec.name} raised {type(exc).__name__}: {exc}") from None
        return Handle(lease_id, self.host)

    async def _call(self, handle: Handle, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.host, method)(handle.lease_id, *args)
        except EnvironmentFailure:
            raise
        except Exception as exc:
            log.exception("environment %s: %s raised", self.spec.name, method)
            raise EnvironmentFailure(f"{method} raised {type(exc).__name__}: {exc}") from None

    async def _beat(self, handles: list[Handle]) -> None:
        self.mark_lost(await self.host.heartbeat([h.lease_id for h in handles]))

    async def _release(self, handle: Handle) -> None:
        await self.host.release(handle.lease_id)

    async def _shutdown(self) -> None:
        await self.host.shutdown()
