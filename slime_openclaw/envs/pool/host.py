"""The host of pooled environments: what runs inside a Ray actor (or in-process).

An ``EnvHost`` builds environments from one ``EnvSpec``, each under a lease
(leases.py), and answers the four calls of the ``Environment`` interface by lease id;
``step`` goes through the lease's ``StepLedger`` (ledger.py) so a retried step is never
carried out twice. A reaper task closes the environments whose leases missed their
heartbeats. The Ray pool makes this class an actor (``ray.remote(EnvHost)``, one per
``openclaw_env_envs_per_actor`` slots); the local pool calls one instance directly. It
never imports ray, so an actor needs only slime_openclaw and the environment's module.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

from slime_openclaw.envs.base import Message, Observation, Outcome, Step
from slime_openclaw.envs.pool.leases import LeaseBook, close_quietly, reap
from slime_openclaw.envs.registry import EnvSpec

CLOSE_TIMEOUT_S = 30.0
"""How long closing one environment may take before it is abandoned (logged)."""


def rss_bytes() -> int:
    """This process's resident set size now (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class EnvHost:
    """Environments of one spec under leases (see the module docstring)."""

    def __init__(self, name: str, kwargs: dict[str, Any], lease_ttl_s: float) -> None:
        self.spec = EnvSpec(name, dict(kwargs))
        self.book = LeaseBook(lease_ttl_s)
        self._reaper: asyncio.Task[None] | None = None
        self.opened = self.step_calls = self.steps_run = 0

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                reap(self.book, lambda env: close_quietly(env, CLOSE_TIMEOUT_S)))

    async def ready(self) -> int:
        """The host's process id, once it is up (the pool waits on this after placing it)."""
        return os.getpid()

    async def open(self, lease_id: str) -> None:
        """Build a fresh environment under ``lease_id``."""
        self._start_reaper()
        env = self.spec.build()
        self.book.grant(lease_id, env)
        self.opened += 1

    async def reset(self, lease_id: str, task: dict[str, Any]) -> Observation:
        lease = self.book.get(lease_id)
        lease.ledger = type(lease.ledger)()  # a new episode: its own step keys
        return await lease.env.reset(task)

    async def step(self, lease_id: str, key: str, reply: Message) -> Step:
        """The answer to ``reply``; the first answer again for a key already seen."""
        lease = self.book.get(lease_id)
        self.step_calls += 1

        async def carry_out() -> Step:
            self.steps_run += 1
            return await lease.env.step(reply)

        return await lease.ledger.run(key, carry_out)

    async def outcome(self, lease_id: str) -> Outcome:
        return await self.book.get(lease_id).env.outcome()

    async def release(self, lease_id: str) -> bool:
        """Close the lease's environment; False when the lease was no longer held."""
        lease = self.book.release(lease_id)
        if lease is None:
            return False
        await close_quietly(lease.env, CLOSE_TIMEOUT_S)
        return True

    async def heartbeat(self, lease_ids: list[str]) -> list[str]:
        """Refresh the leases; the ids this host no longer holds (reclaimed or unknown)."""
        return self.book.beat(lease_ids)

    async def stats(self) -> dict[str, Any]:
        """Leases held, reclaimed, steps run and replayed, this process's RSS."""
        return {"pid": os.getpid(), "leases": len(self.book), "opened": self.opened,
                "reclaimed": self.book.reclaimed_total, "rss_bytes": rss_bytes(),
                "steps_run": self.steps_run, "steps_replayed": self.step_calls - self.steps_run}

    async def shutdown(self) -> int:
        """Close every environment (the pool is closing); how many were open."""
        leases = list(self.book.leases)
        for lease_id in leases:
            await self.release(lease_id)
        if self._reaper is not None:
            self._reaper.cancel()
        return len(leases)
