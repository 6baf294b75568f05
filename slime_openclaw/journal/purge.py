"""Retention applied to the SQLite journal: a finished turn's text scrubbed (``keep_text=False``)
and old terminal turns deleted with their samples, as queries run inside a caller's transaction.

What to keep and for how long is journal/retention.py (shared with the in-memory journal);
this module only writes it into the tables.
"""

from __future__ import annotations

import sqlite3

from slime_openclaw.journal import codec, layout, rules
from slime_openclaw.journal import retention as scrubbing


def scrub_text(conn: sqlite3.Connection, turn_key: str) -> None:
    """Replace the turn's text and its next state's messages with their text-free forms."""
    row = conn.execute(f"SELECT {layout.TURN_COLS} FROM turns WHERE turn_key = ?", (turn_key,)).fetchone()
    record = layout.turn_record(row)
    next_state = scrubbing.scrub_next_state(record.next_state)
    conn.execute(
        "UPDATE turns SET meta = ?, next_state = ? WHERE turn_key = ?",
        (
            codec.dumps(codec.turn_meta(scrubbing.scrub_turn(record.turn))),
            codec.dumps(codec.next_state_to_json(next_state)) if next_state else None,
            turn_key,
        ),
    )


def delete_terminal_before(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete turns in a terminal state last updated before ``cutoff``, and their samples."""
    terminal = sorted(rules.TERMINAL_TURN_STATES)
    old = f"SELECT turn_key FROM turns WHERE state IN {layout.placeholders(len(terminal))} AND updated_at < ?"
    conn.execute(f"DELETE FROM samples WHERE turn_key IN ({old})", (*terminal, cutoff))
    return conn.execute(f"DELETE FROM turns WHERE turn_key IN ({old})", (*terminal, cutoff)).rowcount
