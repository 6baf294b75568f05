"""The pool API: ``async with pool.lease() as env`` gives an ``Environment`` for one episode.

``EnvPool`` is the part every pool shares: a bounded number of leases in flight (more
callers wait for a slot: back-pressure, never an error), a heartbeat loop that keeps the
leases alive on their hosts, and ``PooledEnv``, the ``Environment`` the driver sees. Its
calls go to the lease's host (host.py) with a time limit each; ``step`` carries an
idempotency key (``<lease id>:<step index>``, or the caller's) so a step retried after a
lost answer returns the first result. When the host fails (its actor died, a call ran past
``call_timeout_s``, the lease was reclaimed), the call raises ``EnvironmentFailure`` and
every later call on that lease does too: the driver ends the episode as an environment
failure. Subclasses say how to open, call, beat and release a lease (local.py, ray_pool.py).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.envs.base import Environment, EnvironmentFailure, Message, Observation, Outcome, Step
from slime_openclaw.envs.pool.leases import LeaseLost
from slime_openclaw.envs.pool.metrics import PoolMetrics
from slime_openclaw.envs.registry import EnvSpec

log = logging.getLogger(__name__)


@dataclass
class Handle:
    """One lease as the pool holds it."""

    lease_id: str
    host: Any
    """Where the environment lives (an ``EnvHost``, or the Ray pool's actor slot)."""
    failure: str = ""
    """Why the lease failed (empty while it is healthy); set once, never cleared."""
    reclaimed: bool = False
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class EnvPool(abc.ABC):
    """Leases of environments built from ``spec`` (see the module docstring)."""

    kind = "local"

    def __init__(self, spec: EnvSpec, *, max_in_flight: int, call_timeout_s: float, lease_ttl_s: float) -> None:
        spec.check()
        self.spec = spec
        self.max_in_flight, self.call_timeout_s, self.lease_ttl_s = max_in_flight, call_timeout_s, lease_ttl_s
        self.metrics = PoolMetrics(kind=self.kind)
        self.handles: dict[str, Handle] = {}
        self._slots: asyncio.Semaphore | None = None
        self._beater: asyncio.Task[None] | None = None
        self.closed = False

    # -- what a pool provides -----------------------------------------------------------

    @abc.abstractmethod
    async def _open(self, lease_id: str) -> Handle:
        """Place and build the lease's environment (``EnvironmentFailure`` when it cannot)."""

    @abc.abstractmethod
    async def _call(self, handle: Handle, method: str, *args: Any) -> Any:
        """Call ``method`` of the lease's host, raising ``EnvironmentFailure`` for a host failure."""

    @abc.abstractmethod
    async def _beat(self, handles: list[Handle]) -> None:
        """Send one round of heartbeats for ``handles``; mark those reported lost."""

    @abc.abstractmethod
    async def _release(self, handle: Handle) -> None:
        """Give the lease back (close its environment, or reclaim its host after a failure)."""

    async def _shutdown(self) -> None:  # noqa: B027 - nothing to stop by default
        """Stop what the pool started (hosts, actors)."""

    # -- the shared part ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[PooledEnv]:
        """A fresh environment for one episode; waits while ``max_in_flight`` are out."""
        if self.closed:
            raise RuntimeError("the environment pool is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        self.metrics.enter(queued=1)
        try:
            await self._slots.acquire()
        finally:
            self.metrics.enter(queued=-1)
        self.metrics.enter(running=1)
        try:
            handle = await self._open_lease()
            try:
                yield PooledEnv(self, handle)
            finally:
                await self._give_back(handle)
        finally:
            self.metrics.enter(running=-1)
            self._slots.release()

    async def _open_lease(self) -> Handle:
        lease_id = uuid.uuid4().hex
        try:
            handle = await self._open(lease_id)
        except EnvironmentFailure:
            self.metrics.failed += 1
            raise
        self.handles[lease_id] = handle
        self.metrics.leased += 1
        self._start_heartbeats()
        return handle

    async def _give_back(self, handle: Handle) -> None:
        self.handles.pop(handle.lease_id, None)
        if handle.failure:
            self.metrics.reclaimed += 1
        try:
            await asyncio.shield(self._release(handle))
        except Exception as exc:  # a failed release must not mask the episode's own result
            log.warning("releasing lease %s failed: %s: %s", handle.lease_id, type(exc).__name__, exc)

    def fail(self, handle: Handle, why: str) -> EnvironmentFailure:
        """Mark ``handle`` failed (counted once) and the error its caller raises."""
        if not handle.failure:
            handle.failure = why
            self.metrics.failed += 1
            log.warning("environment lease %s failed: %s", handle.lease_id, why)
        return LeaseLost(handle.failure) if handle.reclaimed else EnvironmentFailure(handle.failure)

    def mark_lost(self, lease_ids: list[str]) -> None:
        """The host no longer holds these leases (reclaimed after missed heartbeats): they fail."""
        for lease_id in lease_ids:
            handle = self.handles.get(lease_id)
            if handle is not None:
                handle.reclaimed = True
                self.fail(handle, f"lease {lease_id} was reclaimed after missed heartbeats")

    async def call(self, handle: Handle, method: str, *args: Any) -> Any:
        """``method`` on the lease's host within ``call_timeout_s``; failures as ``EnvironmentFailure``."""
        if handle.failure:
            raise LeaseLost(handle.failure) if handle.reclaimed else EnvironmentFailure(handle.failure)
        try:
            return await asyncio.wait_for(self._call(handle, method, *args), self.call_timeout_s)
        except asyncio.TimeoutError:
            raise self.fail(handle, f"{method} ran past openclaw_env_call_timeout_s={self.call_timeout_s:g}") from None
        except LeaseLost as exc:
            handle.reclaimed = True
            raise self.fail(handle, str(exc)) from None
        except EnvironmentFailure as exc:
            raise self.fail(handle, str(exc)) from None

    def _start_heartbeats(self) -> None:
        if self._beater is None or self._beater.done():
            self._beater = asyncio.get_running_loop().create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        interval = max(0.05, self.lease_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            live = [h for h in self.handles.values() if not h.failure]
            if live:
                try:
                    await asyncio.wait_for(self._beat(live), interval * 2)
                except Exception as exc:  # the next round tries again; leases expire only on the host
                    log.warning("environment heartbeats failed: %s: %s", type(exc).__name__, exc)

    def stop_heartbeats(self) -> None:
        """Stop sending heartbeats (what a dead driver does; its hosts then reclaim its leases)."""
        if self._beater is not None:
            self._beater.cancel()
            self._beater = None

    async def close(self) -> None:
        """Stop heartbeats and every host the pool started; leases still out fail."""
        if self.closed:
            return
        self.closed = True
        self.stop_heartbeats()
        await self._shutdown()

    async def __aenter__(self) -> EnvPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class PooledEnv(Environment):
    """The ``Environment`` of one lease (see the module docstring)."""

    def __init__(self, pool: EnvPool, handle: Handle) -> None:
        self.pool, self.handle = pool, handle

    @property
    def failure(self) -> str:
        """Why the lease failed; empty while it is healthy."""
        return self.handle.failure

    async def reset(self, task: dict[str, Any]) -> Observation:
        self.handle.steps = 0
        return await self.pool.call(self.handle, "reset", task)

    def next_key(self) -> str:
        """The idempotency key of the next step (advances the step index)."""
        key = f"{self.handle.lease_id}:{self.handle.steps}"
        self.handle.steps += 1
        return key

    async def step(self, reply: Message, *, key: str | None = None) -> Step:
        """Answer ``reply``; a repeated ``key`` returns the first answer without running the step again."""
        started = time.monotonic()
        answer = await self.pool.call(self.handle, "step", key or self.next_key(), reply)
        self.pool.metrics.observe_step(time.monotonic() - started)
        return answer

    async def outcome(self) -> Outcome:
        return await self.pool.call(self.handle, "outcome")

    async def close(self) -> None:
        """Nothing to do: the lease closes the environment when its ``async with`` ends."""
