"""Session outcomes in the SQLite journal: the ``session_outcomes`` table (schema v2).

One row per session, written once: the first outcome recorded stands, a later one is
ignored (``record`` returns False). The state machine of turns and samples does not
depend on it; step rewards and ``journal export`` read it. Called inside the journal's
transactions (journal/sqlite.py); this module opens nothing.
"""

from __future__ import annotations

import json
import sqlite3

from slime_openclaw.journal import codec
from slime_openclaw.types import SessionOutcome


def record(conn: sqlite3.Connection, outcome: SessionOutcome, now: float) -> bool:
    """Insert ``outcome`` unless its session has one; True when written."""
    passed = None if outcome.passed is None else int(outcome.passed)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO session_outcomes (session_id, score, passed, details, recorded_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (outcome.session_id, float(outcome.score), passed, codec.dumps(outcome.details), outcome.recorded_at or now),
    )
    return cursor.rowcount == 1


def from_row(row: sqlite3.Row) -> SessionOutcome:
    """The outcome of one ``session_outcomes`` row."""
    passed = row["passed"]
    return SessionOutcome(session_id=row["session_id"], score=float(row["score"]),
                          passed=None if passed is None else bool(passed),
                          details=json.loads(row["details"]), recorded_at=float(row["recorded_at"]))


SELECT_ONE = "SELECT session_id, score, passed, details, recorded_at FROM session_outcomes WHERE session_id = ?"
HAS_SESSION = "SELECT 1 FROM turns WHERE session_id = ? LIMIT 1"
