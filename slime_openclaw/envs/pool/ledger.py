"""Idempotent steps: a step is carried out at most once per idempotency key.

Every ``step`` sent through a pool carries a key (``<lease id>:<step index>``). The
environment's host keeps a ``StepLedger`` per lease: the first call with a key runs the
step; a retry with the same key (the answer was lost, the caller timed out and asked
again) gets the first call's result, or waits for it while it is still running. A step
that raised raises the same error again; it is never run a second time. The ledger lives
as long as the lease, so it holds at most one episode's steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class StepLedger:
    """Results (or the running attempt) of one lease's steps, by idempotency key."""

    def __init__(self) -> None:
        self._results: dict[str, asyncio.Future[Any]] = {}
        self.runs = 0
        """Steps actually carried out (a retry does not count)."""
        self.replays = 0
        """Calls answered from the ledger."""

    def __len__(self) -> int:
        return len(self._results)

    async def run(self, key: str, step: Callable[[], Awaitable[Any]]) -> Any:
        """``step()``'s result, carried out only by the first call with ``key``."""
        known = self._results.get(key)
        if known is not None:
            self.replays += 1
            return await asyncio.shield(known)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[key] = future
        self.runs += 1
        try:
            future.set_result(await step())
        except asyncio.CancelledError:  # whether it ran is unknown: a retry fails, never reruns it
            future.cancel()
            raise
        except Exception as exc:  # the same error answers every retry
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody retries
        return await asyncio.shield(future)
