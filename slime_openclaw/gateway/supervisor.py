"""Keeps the embedded engine child running: ``serve --embedded`` restarts it when it dies.

``EngineSupervisor.run`` (a task on the gateway's loop) watches the child; when it exits, the
supervisor starts it again on the same port after a back-off (``backoff_s``: 0.5 s doubling
to 30 s; reset once a child stayed up for ``stable_s``), until one listens. In between,
``SupervisedEngine`` (the gateway's engine) answers every call with 503
``engine_restarting`` and a ``Retry-After`` of the expected wait, and ``/healthz`` reports
``engine_state: "restarting"`` with the restart count. The child is spawned from the loop's
thread, which lives as long as the gateway (the parent-death signal of engine/child.py
follows the thread that started the child).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.engine.child import EngineChild
from slime_openclaw.engine.protocol import Engine, GenerateDelta, GenerateOutput, GenerateRequest
from slime_openclaw.errors import EngineError, UnavailableError

log = logging.getLogger(__name__)

RUNNING, RESTARTING = "running", "restarting"


@dataclass
class EngineSupervisor:
    """Restarts ``child`` with back-off whenever it exits; knows whether the engine is up."""

    child: EngineChild
    backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    stable_s: float = 60.0
    """A child that ran this long resets the back-off."""
    poll_s: float = 0.2
    clock: Callable[[], float] = time.monotonic
    state: str = RUNNING
    restarts: int = 0
    last_exit_code: int | None = None
    start_seconds: float = 5.0
    """How long a start took last time (part of the ``Retry-After`` estimate)."""
    _started_at: float = field(default_factory=time.monotonic)
    _ready_at: float = 0.0
    _failures: int = 0

    def check(self) -> None:
        """Raise 503 ``engine_restarting`` unless the child is up."""
        if self.state != RUNNING:
            raise UnavailableError("the engine is restarting; retry shortly", code="engine_restarting",
                                   retry_after=self.retry_after())

    def retry_after(self) -> float:
        """Seconds until the engine should be back."""
        return max(1.0, self._ready_at - self.clock())

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports about the child."""
        body: dict[str, Any] = {"engine_state": self.state, "engine_restarts": self.restarts}
        if self.state != RUNNING:
            body["engine_retry_after"] = round(self.retry_after(), 1)
        return body

    async def run(self) -> None:
        """Watch the child until cancelled, restarting it whenever it exits."""
        while True:
            await asyncio.sleep(self.poll_s)
            code = self.child.exit_code()
            if code is not None:
                self.last_exit_code = code
                await self._restart()

    async def _restart(self) -> None:
        self.state = RESTARTING
        if self.clock() - self._started_at >= self.stable_s:
            self._failures = 0
        log.error("embedded engine exited (code %s); restarting it", self.last_exit_code)
        while True:
            delay = self.backoff_s[min(self._failures, len(self.backoff_s) - 1)]
            self._ready_at = self.clock() + delay + self.start_seconds
            await asyncio.sleep(delay)
            self.child.stop(timeout=5.0)
            began = self.clock()
            self.child.spawn()  # on this thread: see the module docstring
            try:
                await asyncio.to_thread(self.child.wait_listening)
            except EngineError as exc:
                self._failures += 1
                log.error("embedded engine restart failed (%s); next try in %.1f s", exc.message,
                          self.backoff_s[min(self._failures, len(self.backoff_s) - 1)])
                continue
            self._started_at = self.clock()
            self.start_seconds = self._started_at - began
            self._failures += 1  # reset only once this child proves stable
            self.restarts += 1
            self.state = RUNNING
            log.warning("embedded engine restarted (restart %d)", self.restarts)
            return


@dataclass
class SupervisedEngine:
    """The gateway's engine while a supervisor owns it: 503 while restarting, else ``engine``."""

    engine: Engine
    supervisor: EngineSupervisor

    async def generate(self, request: GenerateRequest) -> GenerateOutput:
        self.supervisor.check()
        return await self.engine.generate(request)

    def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateDelta]:
        self.supervisor.check()
        return self.engine.stream(request)

    async def weight_version(self) -> int:
        self.supervisor.check()
        return await self.engine.weight_version()

    async def health(self) -> bool:
        return self.supervisor.state == RUNNING and await self.engine.health()
