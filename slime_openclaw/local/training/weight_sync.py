"""Pushing a checkpoint into a running engine while it keeps serving.

``push_checkpoint`` speaks SGLang's admin API (the embedded engine implements the same
calls): ``/pause_generation`` with mode ``in_place`` (running requests are held with their
KV caches, new ones wait), ``/update_weights_from_disk`` with the checkpoint directory
and the new ``weight_version``, and ``/continue_generation``, always, in a ``finally``.
No client request fails: held requests continue on the new weights, and each token
reports the version that produced it. Mode ``swap`` skips the pause: the embedded engine
applies an update between two decode steps anyway (SGLang needs the pause).

This module does not write checkpoints and does not retry; the trainer decides what a
failed push means (the weights are on disk, the next push carries newer ones).
"""

from __future__ import annotations

import time
from typing import Literal, Protocol

PushMode = Literal["in_place", "retract", "swap", "none"]
PUSH_MODES: tuple[str, ...] = ("in_place", "retract", "swap", "none")


class EngineAdmin(Protocol):
    """The slice of ``EngineClient`` (engine/client.py) the weight push uses."""

    async def pause_generation(self, mode: str = "abort") -> None: ...

    async def continue_generation(self) -> None: ...

    async def update_weights_from_disk(
        self, path: str, weight_version: int | None = None, *, abort_all_requests: bool = False
    ) -> str: ...

    async def weight_version(self) -> int: ...


async def push_checkpoint(admin: EngineAdmin, path: str, weight_version: int, mode: PushMode = "in_place") -> float:
    """Load the checkpoint at ``path`` into the engine as ``weight_version``.

    Returns the seconds generation was paused (0 for ``swap``). Raises ``EngineError``
    (from the client) when the engine refuses or cannot be reached; generation is
    continued in every case once it was paused (or a pause was attempted).
    """
    if mode not in PUSH_MODES:
        raise ValueError(f"unknown push mode {mode!r}, expected one of {list(PUSH_MODES)}")
    if mode == "none":
        return 0.0
    if mode == "swap":
        await admin.update_weights_from_disk(path, weight_version)
        return 0.0
    started = time.monotonic()
    try:
        await admin.pause_generation(mode)
        await admin.update_weights_from_disk(path, weight_version)
    finally:
        await admin.continue_generation()
    return time.monotonic() - started
