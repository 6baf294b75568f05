"""Leases in the SQLite journal: signal workers' claims on OBSERVED turns and trainers'
leases on drained samples (drain, ack, nack), as queries run inside a caller's transaction.

A claim or lease carries an expiry (``claim_until`` / ``lease_until``); once it has passed,
the row is free again, so a worker or trainer that died mid-way never strands work. The
legal moves come from journal/rules.py; ``SqliteJournal`` (journal/sqlite.py) opens the
transactions and picks the lease lengths.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from slime_openclaw.journal import layout, rules
from slime_openclaw.journal.rules import SampleOp, SampleState
from slime_openclaw.types import TurnState


def claim_observed(conn: sqlite3.Connection, limit: int, owner: str, now: float, until: float) -> list[sqlite3.Row]:
    """Claim up to ``limit`` OBSERVED turns, oldest first, that nobody holds a live claim on."""
    rows = conn.execute(
        f"SELECT {layout.TURN_COLS} FROM turns WHERE state = ? AND (claim_until IS NULL OR claim_until <= ?) "
        "ORDER BY seq LIMIT ?",
        (TurnState.OBSERVED.value, now, max(limit, 0)),
    ).fetchall()
    conn.executemany(
        "UPDATE turns SET claim_owner = ?, claim_until = ? WHERE turn_key = ?",
        [(owner, until, row["turn_key"]) for row in rows],
    )
    return rows


def release_claims(conn: sqlite3.Connection, turn_keys: Sequence[str]) -> None:
    """Drop the claims on these turns."""
    conn.executemany(
        "UPDATE turns SET claim_owner = NULL, claim_until = NULL WHERE turn_key = ?",
        [(key,) for key in turn_keys],
    )


def drain(conn: sqlite3.Connection, n: int, consumer: str, now: float, until: float) -> list[sqlite3.Row]:
    """Expire stale leases, then lease up to ``n`` READY samples to ``consumer`` until ``until``."""
    conn.execute(
        "UPDATE samples SET state = ?, consumer = '', lease_until = NULL, updated_at = ? "
        "WHERE state = ? AND lease_until <= ?",
        (SampleState.READY.value, now, SampleState.IN_FLIGHT.value, now),
    )
    rows = conn.execute(
        f"SELECT {layout.SAMPLE_SELECT} FROM {layout.SAMPLE_FROM} WHERE s.state = ? ORDER BY s.seq LIMIT ?",
        (SampleState.READY.value, max(n, 0)),
    ).fetchall()
    conn.executemany(
        "UPDATE samples SET consumer = ?, lease_until = ?, handed_out = handed_out + 1, updated_at = ?, "
        "state = ? WHERE sample_id = ?",
        [(consumer, until, now, SampleState.IN_FLIGHT.value, row["sample_id"]) for row in rows],
    )
    return rows


def settle(conn: sqlite3.Connection, op: SampleOp, sample_ids: Sequence[str], now: float) -> set[str]:
    """Ack (CONSUMED) or nack (READY) the samples; returns the keys of the turns they belong to.

    Unknown ids raise ``JournalError`` (the caller's transaction then changes nothing). On
    ack, a READY turn whose samples are all consumed becomes CONSUMED.
    """
    target = SampleState.CONSUMED if op is SampleOp.ACK else SampleState.READY
    clear_consumer = "" if target is SampleState.CONSUMED else "consumer = '', "
    turn_keys: set[str] = set()
    for chunk in layout.chunks(list(dict.fromkeys(sample_ids))):
        rows = conn.execute(
            f"SELECT sample_id, state, turn_key FROM samples WHERE sample_id IN {layout.placeholders(len(chunk))}",
            chunk,
        ).fetchall()
        rules.check_known_samples(chunk, {row["sample_id"] for row in rows})
        moving = [row for row in rows if rules.sample_step(op, row["state"])]
        conn.executemany(
            f"UPDATE samples SET {clear_consumer}lease_until = NULL, updated_at = ?, state = ? WHERE sample_id = ?",
            [(now, target.value, row["sample_id"]) for row in moving],
        )
        turn_keys.update(row["turn_key"] for row in moving)
    if op is SampleOp.ACK:
        conn.executemany(
            "UPDATE turns SET updated_at = ?, state = ? WHERE turn_key = ? AND state = ? AND NOT EXISTS "
            "(SELECT 1 FROM samples WHERE samples.turn_key = turns.turn_key AND samples.state != ?)",
            [(now, TurnState.CONSUMED.value, key, TurnState.READY.value, SampleState.CONSUMED.value) for key in turn_keys],
        )
    return turn_keys
