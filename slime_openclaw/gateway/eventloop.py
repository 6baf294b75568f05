"""The event loop the gateway runs on: asyncio's own, or uvloop.

uvloop (libuv under asyncio's API; ``pip install 'slime-openclaw[fast]'``) does the loop's
own work (selector, callbacks, timers, socket transports) in C. ``serve --event-loop``
chooses: ``asyncio`` (the default), ``uvloop`` (required to be installed) or ``auto``
(uvloop when it can be imported). Measured side by side with
``benchmarks/gateway_overhead.py --loop both`` on the 2-core machine (README, Benchmarks),
it gave the gateway no gain (1.09 vs 1.10 ms of CPU per request at c=64, throughput
within noise), so it is not the default; it stays a choice for machines where the loop's
own work shows in a profile.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from slime_openclaw.errors import ConfigError

LOOPS = ("auto", "uvloop", "asyncio")
_T = TypeVar("_T")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of ``choice``'s loop (None: asyncio's default); ``ConfigError`` when
    ``uvloop`` is asked for and cannot be imported, or for an unknown choice."""
    if choice not in LOOPS:
        raise ConfigError(f"event loop must be one of {', '.join(LOOPS)}, got {choice!r}")
    if choice == "asyncio" or sys.platform == "win32":
        if choice == "uvloop":
            raise ConfigError("uvloop does not run on Windows")
        return None
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--event-loop uvloop needs the uvloop package: pip install 'slime-openclaw[fast]'"
                              ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(choice: str = "auto") -> str:
    """``uvloop`` or ``asyncio``: the loop ``run(..., loop=choice)`` runs on."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, _T], *, loop: str = "auto") -> _T:
    """``asyncio.run(main)`` on the loop ``loop`` chooses."""
    try:
        factory = loop_factory(loop)
    except BaseException:
        main.close()
        raise
    if factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    event_loop = factory()  # Python 3.10: asyncio.run without a loop factory
    try:
        asyncio.set_event_loop(event_loop)
        return event_loop.run_until_complete(main)
    finally:
        event_loop.run_until_complete(event_loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        event_loop.close()
