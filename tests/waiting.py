"""Waiting on a condition with a deadline, the way tests synchronise with servers and workers.

``eventually`` (async) and ``wait_until`` (blocking) poll ``condition`` until it is true and
fail with ``what`` once ``timeout_s`` has passed; a fixed sleep would pass or fail with the
machine's load instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], object], what: str, *, timeout_s: float = 30.0,
                     interval_s: float = 0.01) -> None:
    """Return once ``condition()`` is truthy; ``AssertionError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:g}s: {what}")
        await asyncio.sleep(interval_s)


def wait_until(condition: Callable[[], object], what: str, *, timeout_s: float = 30.0,
               interval_s: float = 0.05) -> None:
    """The blocking form of ``eventually``, for tests without an event loop."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:g}s: {what}")
        time.sleep(interval_s)
