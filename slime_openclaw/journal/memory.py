"""An in-memory journal: same interface as the durable one, nothing survives the process.

For tests and ``--journal :memory:``; the durable store is journal/sqlite.py.
"""

from __future__ import annotations

import threading
import time

from slime_openclaw.journal.base import TurnRecord
from slime_openclaw.types import NextState, Turn, TurnState


class MemoryJournal:
    """Turns kept in a dict, guarded by a lock (the gateway and signal workers share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, TurnRecord] = {}

    def record_turn(self, turn: Turn) -> None:
        with self._lock:
            if turn.key not in self._turns:
                self._turns[turn.key] = TurnRecord(turn=turn, state=TurnState.SERVED, updated_at=time.time())

    def attach_next_state(self, turn_key: str, next_state: NextState) -> None:
        with self._lock:
            record = self._turns[turn_key]
            if record.state is TurnState.SERVED:
                self._turns[turn_key] = TurnRecord(
                    turn=record.turn, state=TurnState.OBSERVED, next_state=next_state, updated_at=time.time()
                )

    def discard(self, turn_key: str, reason: str) -> None:
        with self._lock:
            record = self._turns[turn_key]
            self._turns[turn_key] = TurnRecord(
                turn=record.turn,
                state=TurnState.DISCARDED,
                next_state=record.next_state,
                discard_reason=reason,
                updated_at=time.time(),
            )

    def get(self, turn_key: str) -> TurnRecord | None:
        with self._lock:
            return self._turns.get(turn_key)

    def records(self) -> list[TurnRecord]:
        """All turns, oldest first."""
        with self._lock:
            return sorted(self._turns.values(), key=lambda r: r.turn.created_at)

    def close(self) -> None:
        pass
