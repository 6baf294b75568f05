"""What every harness shares: its error, what a run reports, finding its CLI."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slime_openclaw.errors import OpenClawError


class HarnessError(OpenClawError):
    """A harness episode could not run or its outcome could not be recorded (exit code 1)."""


@dataclass(frozen=True)
class HarnessRun:
    """What one harness run did (before grading)."""

    exit_code: int | None
    output_tail: str
    details: dict[str, Any]


def find_cli(name: str, explicit: str | None, candidates: Sequence[str | None], install_hint: str) -> str:
    """``explicit`` if given, else the first executable of ``candidates``; ``HarnessError`` saying how to install."""
    for candidate in [explicit] if explicit else candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise HarnessError(f"{name} not found{' at ' + explicit if explicit else ''}: {install_hint}")
