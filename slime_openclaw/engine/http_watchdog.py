"""The read timeouts of engine/http.py's connections: one timer per pool instead of one per wait.

Pure bookkeeping over the connections of one ``HttpPool``: a read that waits records its
deadline here, and one timer, running only while some read waits, expires the reads past
theirs.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Waiting(Protocol):
    """A connection with a read waiting on it."""

    deadline: float
    """When the read waiting now times out (loop time)."""

    def expire(self) -> None:
        """The read waited past its deadline: fail it with ``TimeoutError``."""
        ...


class Watchdog:
    """The read timeouts of one pool's connections: one timer for all of them.

    A timer per wait (``call_later`` and its cancel, twice per streamed chunk) cost more
    than anything else the client does per chunk; instead a waiting read records its
    deadline, and one timer, running only while some read waits, expires those past it
    every ``tick`` (a quarter of the shortest timeout seen, at most 1 s): a read times out
    between its timeout and that plus one tick.
    """

    def __init__(self) -> None:
        self.waiting: set[Waiting] = set()
        self.tick = 1.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, conn: Waiting, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        conn.deadline = loop.time() + timeout
        self.waiting.add(conn)
        if timeout < 4 * self.tick:
            self.tick = max(timeout / 4, 0.001)
        if self._timer is None or self._loop is not loop:  # (a pool used from a later event loop)
            self._loop = loop
            self._timer = loop.call_later(self.tick, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self.waiting if c.deadline <= now]:
            self.waiting.discard(conn)
            conn.expire()
        if self.waiting:
            self._timer = loop.call_later(self.tick, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
