"""Leases on hosted environments: granted per episode, kept alive by heartbeats, reclaimed.

A host (a Ray actor, or the in-process pool) keeps a ``LeaseBook``: each environment it
hosts is held under a lease id with the time of its last heartbeat. The driver's pool
sends heartbeats every quarter of the lease's time to live; ``reap`` closes the
environment of every lease that got none for ``ttl_s`` (its driver died or hung) and
frees its slot. Any later call on that lease raises ``LeaseLost``, which is an
``EnvironmentFailure``: the episode ends as the environment's failure, never as a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.envs.base import EnvironmentFailure
from slime_openclaw.envs.pool.ledger import StepLedger

log = logging.getLogger(__name__)


class LeaseLost(EnvironmentFailure):
    """The lease is not (or no longer) held: reclaimed after missed heartbeats, or released."""


@dataclass
class Lease:
    """One hosted environment under its lease."""

    lease_id: str
    env: Any
    beat: float
    """Monotonic time of the last heartbeat (or of the grant)."""
    ledger: StepLedger = field(default_factory=StepLedger)


class LeaseBook:
    """The leases of one host (see the module docstring)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self.leases: dict[str, Lease] = {}
        self.reclaimed: list[str] = []
        """Lease ids reclaimed for missed heartbeats, oldest first (ids only; bounded)."""
        self.reclaimed_total = 0

    def __len__(self) -> int:
        return len(self.leases)

    def grant(self, lease_id: str, env: Any) -> Lease:
        """Hold ``env`` under ``lease_id`` (a new id; ``ValueError`` when it is taken)."""
        if lease_id in self.leases:
            raise ValueError(f"lease {lease_id} is already held")
        lease = Lease(lease_id, env, self.clock())
        self.leases[lease_id] = lease
        return lease

    def get(self, lease_id: str) -> Lease:
        """The live lease ``lease_id``; ``LeaseLost`` when it was reclaimed or released."""
        lease = self.leases.get(lease_id)
        if lease is None:
            why = "reclaimed after missed heartbeats" if lease_id in self.reclaimed else "not held"
            raise LeaseLost(f"lease {lease_id} is {why}")
        return lease

    def beat(self, lease_ids: list[str]) -> list[str]:
        """Refresh these leases; returns the ids no longer held (their drivers must give up)."""
        now, lost = self.clock(), []
        for lease_id in lease_ids:
            lease = self.leases.get(lease_id)
            if lease is None:
                lost.append(lease_id)
            else:
                lease.beat = now
        return lost

    def release(self, lease_id: str) -> Lease | None:
        """Drop the lease (its holder is done); the lease, or None when it was not held."""
        return self.leases.pop(lease_id, None)

    def expire(self) -> list[Lease]:
        """Drop and return the leases whose last heartbeat is older than ``ttl_s``."""
        cutoff = self.clock() - self.ttl_s
        stale = [lease for lease in self.leases.values() if lease.beat < cutoff]
        for lease in stale:
            del self.leases[lease.lease_id]
            self.reclaimed.append(lease.lease_id)
            self.reclaimed_total += 1
        del self.reclaimed[:-1024]
        return stale


async def close_quietly(env: Any, timeout_s: float) -> bool:
    """``env.close()`` within ``timeout_s``; False (logged) when it raised or ran past it."""
    try:
        await asyncio.wait_for(env.close(), timeout_s)
        return True
    except Exception as exc:  # a reclaimed environment must not take its host down
        log.warning("closing a reclaimed environment failed: %s: %s", type(exc).__name__, exc)
        return False


async def reap(book: LeaseBook, close: Callable[[Any], Awaitable[Any]], interval_s: float | None = None) -> None:
    """Forever: every ``interval_s`` (default ttl/4), close the environments of expired leases."""
    interval = interval_s if interval_s is not None else max(0.05, book.ttl_s / 4)
    while True:
        await asyncio.sleep(interval)
        for lease in book.expire():
            log.warning("lease %s missed its heartbeats for %.0fs: environment reclaimed", lease.lease_id, book.ttl_s)
            await close(lease.env)
