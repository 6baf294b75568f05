"""The journal's interfaces: the only state shared between the serving, signal and
training loops.

``TurnRecorder`` is the slice the gateway uses on the serving path; ``Journal`` adds what
the signal workers and trainers use. Both are synchronous: a journal write is a local
SQLite transaction (well under a millisecond in WAL mode), cheaper than a thread hop.
Implementations: ``MemoryJournal`` (journal/memory.py, tests and ``--journal :memory:``)
and ``SqliteJournal`` (journal/sqlite.py, durable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from slime_openclaw.types import Hint, NextState, TrainingSample, Turn, TurnState, Verdict


@dataclass(frozen=True)
class TurnRecord:
    """A turn with everything the journal knows about it."""

    turn: Turn
    state: TurnState
    next_state: NextState | None = None
    verdict: Verdict | None = None
    hint: Hint | None = None
    discard_reason: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class JournalStats:
    """Counts for `journal stats` and metrics."""

    turns_by_state: dict[str, int] = field(default_factory=dict)
    samples_by_state: dict[str, int] = field(default_factory=dict)
    samples_by_method: dict[str, int] = field(default_factory=dict)
    judge_lag_seconds: float = 0.0
    """Age of the oldest turn waiting for judging (0 when none)."""


class TurnRecorder(Protocol):
    """What the gateway needs: record served turns and attach next states."""

    def record_turn(self, turn: Turn) -> None:
        """Durably record a served turn (state SERVED). Idempotent on ``turn.key``."""
        ...

    def attach_next_state(self, turn_key: str, next_state: NextState) -> None:
        """Attach the next state and move the turn to OBSERVED."""
        ...

    def discard(self, turn_key: str, reason: str) -> None:
        """Move a turn to the terminal DISCARDED state with a reason."""
        ...


class Journal(TurnRecorder, Protocol):
    """The full journal: signal workers and trainers use this."""

    def get(self, turn_key: str) -> TurnRecord | None: ...

    def claim_observed(self, limit: int) -> list[TurnRecord]:
        """Oldest OBSERVED turns not yet being judged (claims expire, so a crash resumes)."""
        ...

    def record_signals(
        self, turn_key: str, verdict: Verdict | None, hint: Hint | None, samples: Sequence[TrainingSample]
    ) -> None:
        """Attach signals and samples in one transaction: JUDGED, then READY or DISCARDED."""
        ...

    def drain(self, n: int, consumer: str = "") -> list[TrainingSample]:
        """Hand out up to ``n`` READY samples, oldest first, each exactly once until returned."""
        ...

    def ack(self, sample_ids: Sequence[str]) -> None:
        """The consumer trained on these samples: CONSUMED."""
        ...

    def nack(self, sample_ids: Sequence[str]) -> None:
        """The consumer gives these samples back: READY again."""
        ...

    def stats(self) -> JournalStats: ...

    def close(self) -> None: ...
