"""The durable journal: turns and samples in one SQLite file (WAL mode, standard library).

Every method is one transaction; writes take the write lock up front (``BEGIN
IMMEDIATE``) so readers never block and concurrent writers in other processes (gateway,
signal workers, slime's RolloutManager, the local trainer) queue behind ``busy_timeout``.
Within a process one connection is shared behind a lock, so the gateway's event loop and
worker threads may call it concurrently. A committed transaction survives SIGKILL of the
process (WAL with ``synchronous=NORMAL``; ``synchronous="FULL"`` also survives power loss).

The state machine (which moves are legal, which are replays) is journal/rules.py, shared
with the in-memory journal; schema and connection settings are journal/schema.py.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from slime_openclaw.errors import JournalError
from slime_openclaw.journal import codec, layout, rules, schema
from slime_openclaw.journal import retention as scrubbing
from slime_openclaw.journal.base import JournalStats, SampleRecord, TurnRecord
from slime_openclaw.journal.retention import RetentionPolicy
from slime_openclaw.journal.rules import SampleOp, SampleState, TurnOp
from slime_openclaw.types import Hint, NextState, TrainingSample, Turn, TurnState, Verdict


class SqliteJournal:
    """The journal in a SQLite file; implements ``JournalStore`` (journal/base.py)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: RetentionPolicy | None = None,
        claim_lease_seconds: float = 60.0,
        drain_lease_seconds: float = 600.0,
        busy_timeout_seconds: float = 10.0,
        synchronous: str = "NORMAL",
        create: bool = True,
        checkpoint_interval_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (and with ``create``, make) the journal at ``path``.

        ``claim_lease_seconds``: how long a ``claim_observed`` claim holds before another
        worker may take the turn. ``drain_lease_seconds``: how long a drained sample stays
        IN_FLIGHT without ack/nack before it returns to READY. ``checkpoint_interval_seconds``:
        checkpoint the WAL from a background thread this often instead of inside commits
        (keeps the serving path's p99 low; ``open_journal`` turns it on). ``clock`` is for tests.
        """
        self.path = schema.prepare_path(path, create=create)
        self.retention = retention or RetentionPolicy()
        self.claim_lease_seconds = claim_lease_seconds
        self.drain_lease_seconds = drain_lease_seconds
        self._clock = clock
        self._lock = threading.RLock()
        self._batching = False
        self._last_purge = 0.0
        try:
            self._conn = schema.connect(self.path, busy_timeout_seconds=busy_timeout_seconds, synchronous=synchronous)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: {exc}") from exc
        try:
            self.schema_version = schema.ensure_schema(self._conn, self.path, create=create)
        except sqlite3.Error as exc:
            self._conn.close()
            raise JournalError(f"{self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise
        self._checkpointer: schema.Checkpointer | None = None
        if checkpoint_interval_seconds is not None and self.path != ":memory:":
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {schema.SAFETY_NET_CHECKPOINT_PAGES}")
            self._checkpointer = schema.Checkpointer(self.path, checkpoint_interval_seconds, busy_timeout_seconds)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run several writes of this thread in one transaction, with one commit.

        Each write inside is its own savepoint, so one that fails rolls back alone and raises
        as usual; the others commit together when the block ends. Other threads' calls wait
        for the block (the gateway's journal writer groups its writes this way).
        """
        with self._transaction():
            self._batching = True
            try:
                yield
            finally:
                self._batching = False

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._batching:
                with self._savepoint() as conn:
                    yield conn
                return
            with self._transaction() as conn:
                yield conn

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("SAVEPOINT write")
        try:
            yield conn
        except BaseException as exc:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"journal write failed: {exc}") from exc
            raise
        conn.execute("RELEASE write")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"journal busy or unavailable: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise JournalError(f"journal write failed: {exc}") from exc
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal read failed: {exc}") from exc

    def _turn_state(self, conn: sqlite3.Connection, turn_key: str) -> str | None:
        row = conn.execute("SELECT state FROM turns WHERE turn_key = ?", (turn_key,)).fetchone()
        return None if row is None else row[0]

    # -- TurnRecorder: the serving path ---------------------------------------------------

    def record_turn(self, turn: Turn) -> None:
        """Record a served turn as SERVED; a second call with the same key changes nothing."""
        now = self._clock()
        try:
            meta = codec.dumps(codec.turn_meta(turn))
        except (TypeError, ValueError) as exc:
            raise JournalError(f"turn {turn.key!r} is not JSON-serializable: {exc}") from exc
        row = (
            turn.key,
            turn.session_id,
            turn.turn_index,
            turn.created_at or now,
            meta,
            codec.pack_ints(turn.prompt_ids),
            codec.pack_ints(turn.response_ids),
            codec.pack_floats(turn.response_log_probs),
            codec.pack_ints(turn.weight_versions),
            now,
            TurnState.SERVED.value,
        )
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO turns (turn_key, session_id, turn_index, created_at, meta, prompt_ids, "
                "response_ids, response_log_probs, weight_versions, updated_at, state) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )

    def attach_next_state(self, turn_key: str, next_state: NextState) -> None:
        """SERVED -> OBSERVED with the next state; the first next state attached wins."""
        payload = codec.dumps(codec.next_state_to_json(next_state))
        with self._write() as conn:
            if rules.turn_step(TurnOp.OBSERVE, turn_key, self._turn_state(conn, turn_key)):
                now = self._clock()
                conn.execute(
                    "UPDATE turns SET next_state = ?, observed_at = ?, updated_at = ?, state = ? WHERE turn_key = ?",
                    (payload, now, now, TurnState.OBSERVED.value, turn_key),
                )

    def discard(self, turn_key: str, reason: str) -> None:
        """Move a turn that has no samples yet to DISCARDED with ``reason``."""
        with self._write() as conn:
            if rules.turn_step(TurnOp.DISCARD, turn_key, self._turn_state(conn, turn_key)):
                self._finish_turn(conn, turn_key, None, None, reason, TurnState.DISCARDED)

    def _finish_turn(
        self, conn: sqlite3.Connection, turn_key: str, verdict: Verdict | None, hint: Hint | None,
        reason: str | None, state: TurnState,
    ) -> None:
        """Write signals, apply ``keep_text`` and set the final state (last) in ``conn``'s transaction."""
        if not self.retention.keep_text:
            self._scrub_text(conn, turn_key)
            verdict, hint = scrubbing.scrub_verdict(verdict), scrubbing.scrub_hint(hint)
        conn.execute(
            "UPDATE turns SET verdict = ?, hint = ?, discard_reason = ?, "
            "claim_owner = NULL, claim_until = NULL, updated_at = ?, state = ? WHERE turn_key = ?",
            (
                codec.dumps(codec.verdict_to_json(verdict)) if verdict else None,
                codec.dumps(codec.hint_to_json(hint)) if hint else None,
                reason,
                self._clock(),
                state.value,
                turn_key,
            ),
        )

    def _scrub_text(self, conn: sqlite3.Connection, turn_key: str) -> None:
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

    # -- signal workers -------------------------------------------------------------------

    def get(self, turn_key: str) -> TurnRecord | None:
        """Everything known about one turn, or None."""
        rows = self._read(f"SELECT {layout.TURN_COLS} FROM turns WHERE turn_key = ?", (turn_key,))
        return layout.turn_record(rows[0]) if rows else None

    def claim_observed(self, limit: int, *, owner: str = "", lease_seconds: float | None = None) -> list[TurnRecord]:
        """Claim up to ``limit`` OBSERVED turns, oldest first, that nobody holds a live claim on.

        The claim expires after ``lease_seconds`` (default ``claim_lease_seconds``): a worker
        that crashed mid-judging leaves the turn to the next claimer.
        """
        now = self._clock()
        until = now + (self.claim_lease_seconds if lease_seconds is None else lease_seconds)
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {layout.TURN_COLS} FROM turns WHERE state = ? AND (claim_until IS NULL OR claim_until <= ?) "
                "ORDER BY seq LIMIT ?",
                (TurnState.OBSERVED.value, now, max(limit, 0)),
            ).fetchall()
            conn.executemany(
                "UPDATE turns SET claim_owner = ?, claim_until = ? WHERE turn_key = ?",
                [(owner, until, row[0]) for row in rows],
            )
        return [layout.turn_record(row) for row in rows]

    def release_claims(self, turn_keys: Sequence[str]) -> None:
        """Drop the claims on these turns so any worker may claim them at once."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE turns SET claim_owner = NULL, claim_until = NULL WHERE turn_key = ?",
                [(key,) for key in turn_keys],
            )

    def record_signals(
        self,
        turn_key: str,
        verdict: Verdict | None,
        hint: Hint | None,
        samples: Sequence[TrainingSample],
        *,
        discard_reason: str = "no_signal",
    ) -> None:
        """OBSERVED -> JUDGED -> READY (with ``samples``) or DISCARDED (none), in one transaction.

        A replay on a turn already judged (a second worker whose claim had expired) changes
        nothing, so a turn's samples are written once.
        """
        ids = rules.sample_ids(turn_key, samples)
        for sample in samples:
            rules.validate_sample(turn_key, sample)
        packed = [codec.sample_arrays(sample) for sample in samples]
        target = rules.state_after_signals(samples)
        with self._write() as conn:
            if not rules.turn_step(TurnOp.JUDGE, turn_key, self._turn_state(conn, turn_key)):
                return
            session_id, turn_index, turn_prompt = conn.execute(
                "SELECT session_id, turn_index, prompt_ids FROM turns WHERE turn_key = ?", (turn_key,)
            ).fetchone()
            for sample in samples:
                rules.check_sample_source(turn_key, session_id, turn_index, sample)
            packed = [(None, *arrays[1:]) if arrays[0] == turn_prompt else arrays for arrays in packed]
            now = self._clock()
            conn.executemany(
                f"INSERT INTO samples ({layout.SAMPLE_COLS}) VALUES {layout.placeholders(19)}",
                [
                    (sid, s.session_id, s.turn_index, s.method.value, float(s.reward), *arrays)
                    + (turn_key, "", 0, now, now, SampleState.READY.value)
                    for sid, s, arrays in zip(ids, samples, packed, strict=True)
                ],
            )
            reason = None if samples else discard_reason
            self._finish_turn(conn, turn_key, verdict, hint, reason, target)

    # -- trainers -------------------------------------------------------------------------

    def drain(self, n: int, consumer: str = "", *, lease_seconds: float | None = None) -> list[TrainingSample]:
        """Lease up to ``n`` READY samples to ``consumer``, oldest first (IN_FLIGHT).

        Leases older than ``lease_seconds`` (default ``drain_lease_seconds``) that were never
        acknowledged or returned count as READY again.
        """
        now = self._clock()
        until = now + (self.drain_lease_seconds if lease_seconds is None else lease_seconds)
        with self._write() as conn:
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
                [(consumer, until, now, SampleState.IN_FLIGHT.value, row[0]) for row in rows],
            )
        return [layout.sample_record(row).sample for row in rows]

    def _settle(self, op: SampleOp, sample_ids: Sequence[str], target: SampleState) -> set[str]:
        """Apply ``op`` to the samples; returns the keys of the turns they belong to."""
        turn_keys: set[str] = set()
        now = self._clock()
        with self._write() as conn:
            for chunk in layout.chunks(list(dict.fromkeys(sample_ids))):
                rows = conn.execute(
                    f"SELECT sample_id, state, turn_key FROM samples WHERE sample_id IN {layout.placeholders(len(chunk))}", chunk
                ).fetchall()
                rules.check_known_samples(chunk, {row[0] for row in rows})
                moving = [row for row in rows if rules.sample_step(op, row[1])]
                clear_consumer = "" if target is SampleState.CONSUMED else "consumer = '', "
                conn.executemany(
                    f"UPDATE samples SET {clear_consumer}lease_until = NULL, updated_at = ?, state = ? WHERE sample_id = ?",
                    [(now, target.value, row[0]) for row in moving],
                )
                turn_keys.update(row[2] for row in moving)
            if op is SampleOp.ACK:
                conn.executemany(
                    "UPDATE turns SET updated_at = ?, state = ? WHERE turn_key = ? AND state = ? AND NOT EXISTS "
                    "(SELECT 1 FROM samples WHERE samples.turn_key = turns.turn_key AND samples.state != ?)",
                    [
                        (now, TurnState.CONSUMED.value, key, TurnState.READY.value, SampleState.CONSUMED.value)
                        for key in turn_keys
                    ],
                )
        return turn_keys

    def ack(self, sample_ids: Sequence[str]) -> None:
        """The consumer trained on these samples: CONSUMED, never handed out again.

        A turn whose samples are all consumed becomes CONSUMED. Unknown ids raise
        ``JournalError`` and change nothing.
        """
        self._settle(SampleOp.ACK, sample_ids, SampleState.CONSUMED)
        self._maybe_purge()

    def nack(self, sample_ids: Sequence[str]) -> None:
        """The consumer gives these samples back: READY again (acknowledged ones stay CONSUMED)."""
        self._settle(SampleOp.NACK, sample_ids, SampleState.READY)

    # -- inspection and retention ---------------------------------------------------------

    def stats(self) -> JournalStats:
        """Counts per turn state, per sample state and per method, and the two lags."""
        now = self._clock()
        turns = dict(self._read("SELECT state, COUNT(*) FROM turns GROUP BY state"))
        samples = dict(self._read("SELECT state, COUNT(*) FROM samples GROUP BY state"))
        methods = dict(self._read("SELECT method, COUNT(*) FROM samples GROUP BY method"))
        oldest_observed = self._read(
            "SELECT MIN(observed_at) FROM turns WHERE state = ?", (TurnState.OBSERVED.value,)
        )[0][0]
        oldest_ready = self._read("SELECT MIN(created_at) FROM samples WHERE state = ?", (SampleState.READY.value,))[0][0]
        return JournalStats.from_counts(turns, samples, methods, oldest_observed, oldest_ready, now)

    def iter_turns(self, state: TurnState | None = None) -> Iterator[TurnRecord]:
        """Turns, oldest first (read in pages, so a large journal streams)."""
        sql = layout.page_sql("turns", "turns", layout.TURN_COLS, filtered=state is not None)
        yield from (layout.turn_record(row[1:]) for row in self._pages(sql, state))

    def iter_samples(self, state: SampleState | None = None) -> Iterator[SampleRecord]:
        """Samples, oldest first (read in pages)."""
        sql = layout.page_sql("s", layout.SAMPLE_FROM, layout.SAMPLE_SELECT, filtered=state is not None)
        yield from (layout.sample_record(row[1:]) for row in self._pages(sql, state))

    def _pages(self, sql: str, state: TurnState | SampleState | None) -> Iterator[tuple]:
        last = -1
        while rows := self._read(sql, [last] + ([] if state is None else [state.value])):
            yield from rows
            last = rows[-1][0]

    def purge(self) -> int:
        """Delete terminal turns (and samples) older than the retention policy allows."""
        now = self._clock()
        self._last_purge = now
        cutoff = self.retention.purge_cutoff(now)
        if cutoff is None:
            return 0
        terminal = sorted(rules.TERMINAL_TURN_STATES)
        old = f"SELECT turn_key FROM turns WHERE state IN {layout.placeholders(len(terminal))} AND updated_at < ?"
        with self._write() as conn:
            conn.execute(f"DELETE FROM samples WHERE turn_key IN ({old})", (*terminal, cutoff))
            return conn.execute(f"DELETE FROM turns WHERE turn_key IN ({old})", (*terminal, cutoff)).rowcount

    def _maybe_purge(self) -> None:
        if self.retention.delete_consumed_after_hours is None:
            return
        if self._clock() - self._last_purge >= self.retention.purge_interval_seconds:
            self.purge()

    def close(self) -> None:
        """Close the connection (committed work is already durable). Safe to call twice."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
