"""The durable journal: turns and samples in one SQLite file (WAL mode, standard library).

Every method is one transaction; writes take the write lock up front (``BEGIN
IMMEDIATE``) so readers never block and concurrent writers in other processes (gateway,
signal workers, slime's RolloutManager, the local trainer) queue behind ``busy_timeout``.
Within a process one connection is shared behind a lock, so the gateway's event loop and
worker threads may call it concurrently. A committed transaction survives SIGKILL of the
process (WAL with ``synchronous=NORMAL``; ``synchronous="FULL"`` also survives power loss).

This class is the journal's interface over its parts: the state machine (journal/rules.py,
shared with the in-memory journal), the schema and connection settings (journal/schema.py),
transactions and batching (journal/transactions.py), row packing by column name
(journal/layout.py), claims and leases (journal/leases.py), retention (journal/purge.py)
and background checkpoints (journal/checkpoint.py).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from slime_openclaw.config import JournalConfig
from slime_openclaw.errors import JournalError, JournalStorageError
from slime_openclaw.journal import codec, layout, leases, outcomes, purge, rules, schema
from slime_openclaw.journal import retention as scrubbing
from slime_openclaw.journal.base import JournalStats, SampleRecord, TurnRecord
from slime_openclaw.journal.checkpoint import Checkpointer, use_background_checkpoints
from slime_openclaw.journal.retention import RetentionPolicy
from slime_openclaw.journal.rules import SampleOp, SampleState, TurnOp
from slime_openclaw.journal.transactions import Transactions
from slime_openclaw.types import Hint, NextState, SessionOutcome, TrainingSample, Turn, TurnState, Verdict

_INSERT_TURN = layout.insert_sql("turns", layout.TURN_WRITE, verb="INSERT OR IGNORE")
_INSERT_SAMPLE = layout.insert_sql("samples", layout.SAMPLE_WRITE)
_OBSERVE = "UPDATE turns SET next_state = ?, observed_at = ?, updated_at = ?, state = ? WHERE turn_key = ?"
_OBSERVE_SERVED = f"{_OBSERVE} AND state = ?"
MIN_FREE_BYTES = 1 << 20
"""``check_writable`` counts a filesystem with less free space than this as full."""
MIN_FREE_PAGES = 64
"""... and a journal within this many pages of its ``max_page_count`` as at its size limit."""


class SqliteJournal:
    """The journal in a SQLite file; implements ``JournalStore`` (journal/base.py)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: RetentionPolicy | None = None,
        claim_lease_seconds: float = JournalConfig.claim_lease_s,
        drain_lease_seconds: float = JournalConfig.drain_lease_s,
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
        self._last_purge = 0.0
        conn = self._open(busy_timeout_seconds, synchronous, create)
        self._tx = Transactions(conn)
        self._conn = conn
        self._checkpointer: Checkpointer | None = None
        if checkpoint_interval_seconds is not None and self.path != ":memory:":
            self._checkpointer = use_background_checkpoints(
                conn, self.path, checkpoint_interval_seconds, busy_timeout_seconds
            )

    def _open(self, busy_timeout_seconds: float, synchronous: str, create: bool) -> sqlite3.Connection:
        try:
            conn = schema.connect(self.path, busy_timeout_seconds=busy_timeout_seconds, synchronous=synchronous)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: {exc}") from exc
        try:
            self.schema_version = schema.ensure_schema(conn, self.path, create=create)
        except sqlite3.Error as exc:
            conn.close()
            raise JournalError(f"{self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def batch(self, *, savepoints: bool = True) -> AbstractContextManager[None]:
        """Run several writes of this thread in one transaction, with one commit.

        Each write inside is its own savepoint, so one that fails rolls back alone and raises
        as usual; the others commit together when the block ends. Other threads' calls wait
        for the block (the gateway's journal writer groups its writes this way). Without
        ``savepoints`` (two statements less per write) the first write that fails rolls the
        whole batch back once its error leaves the block.
        """
        return self._tx.batch(savepoints=savepoints)

    bare_batches = True
    """``batch(savepoints=False)`` is offered (journal/writer.py tries it first)."""

    def _turn_state(self, conn: sqlite3.Connection, turn_key: str) -> str | None:
        row = conn.execute("SELECT state FROM turns WHERE turn_key = ?", (turn_key,)).fetchone()
        return None if row is None else row["state"]

    # -- TurnRecorder: the serving path ---------------------------------------------------

    def record_turn(self, turn: Turn) -> None:
        """Record a served turn as SERVED; the same turn again changes nothing, another turn
        under the same key raises ``TurnKeyCollision`` (nothing is overwritten)."""
        try:
            row = layout.turn_row(turn, self._clock())
        except (TypeError, ValueError) as exc:
            raise JournalError(f"turn {turn.key!r} is not JSON-serializable: {exc}") from exc
        with self._tx.write() as conn:
            if not conn.execute(_INSERT_TURN, row).rowcount:
                existing = conn.execute(
                    "SELECT session_id, turn_index, prompt_ids, response_ids FROM turns WHERE turn_key = ?",
                    (turn.key,),
                ).fetchone()
                same = tuple(existing) == (row["session_id"], row["turn_index"], row["prompt_ids"], row["response_ids"])
                rules.check_turn_replay(turn.key, same)

    def last_turn_for_client(self, client_key: str) -> TurnRecord | None:
        """The turn recorded last under this client session key, or None (one indexed read)."""
        rows = self._tx.read(
            f"SELECT {layout.TURN_COLS} FROM turns WHERE client_key = ? ORDER BY seq DESC LIMIT 1", (client_key,)
        )
        return layout.turn_record(rows[0]) if rows else None

    def attach_next_state(self, turn_key: str, next_state: NextState) -> None:
        """SERVED -> OBSERVED with the next state; the first next state attached wins."""
        payload = codec.dumps(codec.next_state_to_json(next_state))
        now = self._clock()
        values = (payload, now, now, TurnState.OBSERVED.value, turn_key)
        with self._tx.write() as conn:  # the usual case, a SERVED turn, in one statement
            if conn.execute(_OBSERVE_SERVED, (*values, TurnState.SERVED.value)).rowcount:
                return
            if rules.turn_step(TurnOp.OBSERVE, turn_key, self._turn_state(conn, turn_key)):
                conn.execute(_OBSERVE, values)

    def discard(self, turn_key: str, reason: str) -> None:
        """Move a turn that has no samples yet to DISCARDED with ``reason``."""
        with self._tx.write() as conn:
            if rules.turn_step(TurnOp.DISCARD, turn_key, self._turn_state(conn, turn_key)):
                self._finish_turn(conn, turn_key, None, None, reason, TurnState.DISCARDED)

    def _finish_turn(
        self, conn: sqlite3.Connection, turn_key: str, verdict: Verdict | None, hint: Hint | None,
        reason: str | None, state: TurnState,
    ) -> None:
        """Write signals, apply ``keep_text`` and set the final state (last) in ``conn``'s transaction."""
        if not self.retention.keep_text:
            purge.scrub_text(conn, turn_key)
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

    def check_writable(self) -> None:
        """Raise ``JournalStorageError`` unless a write can be committed now: room on the
        filesystem (``MIN_FREE_BYTES``) and under SQLite's page limit, and a probe commit
        (the header's ``user_version``) that goes through."""
        if self.path != ":memory:":
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free
            if free < MIN_FREE_BYTES:
                raise JournalStorageError(f"journal filesystem is full ({free} bytes free)")
        with self._tx.write() as conn:
            page_count = conn.execute("PRAGMA page_count").fetchone()[0]
            limit = conn.execute("PRAGMA max_page_count").fetchone()[0]
            free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if limit - page_count + free_pages < MIN_FREE_PAGES:
                raise JournalStorageError(f"journal is at its size limit ({page_count} of {limit} pages)")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(f"PRAGMA user_version = {1 - version if version in (0, 1) else version}")

    # -- signal workers -------------------------------------------------------------------

    def get(self, turn_key: str) -> TurnRecord | None:
        """Everything known about one turn, or None."""
        rows = self._tx.read(f"SELECT {layout.TURN_COLS} FROM turns WHERE turn_key = ?", (turn_key,))
        return layout.turn_record(rows[0]) if rows else None

    def claim_observed(self, limit: int, *, owner: str = "", lease_seconds: float | None = None) -> list[TurnRecord]:
        """Claim up to ``limit`` OBSERVED turns, oldest first, that nobody holds a live claim on.

        The claim expires after ``lease_seconds`` (default ``claim_lease_seconds``): a worker
        that crashed mid-judging leaves the turn to the next claimer.
        """
        now = self._clock()
        until = now + (self.claim_lease_seconds if lease_seconds is None else lease_seconds)
        with self._tx.write() as conn:
            rows = leases.claim_observed(conn, limit, owner, now, until)
        return [layout.turn_record(row) for row in rows]

    def release_claims(self, turn_keys: Sequence[str]) -> None:
        """Drop the claims on these turns so any worker may claim them at once."""
        with self._tx.write() as conn:
            leases.release_claims(conn, turn_keys)

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
        target = rules.state_after_signals(samples)
        with self._tx.write() as conn:
            if not rules.turn_step(TurnOp.JUDGE, turn_key, self._turn_state(conn, turn_key)):
                return
            turn = conn.execute(
                "SELECT session_id, turn_index, prompt_ids FROM turns WHERE turn_key = ?", (turn_key,)
            ).fetchone()
            for sample in samples:
                rules.check_sample_source(turn_key, turn["session_id"], turn["turn_index"], sample)
            now = self._clock()
            conn.executemany(
                _INSERT_SAMPLE,
                [
                    layout.sample_row(sid, s, turn_key, turn["prompt_ids"], now)
                    for sid, s in zip(ids, samples, strict=True)
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
        with self._tx.write() as conn:
            rows = leases.drain(conn, n, consumer, now, until)
        return [layout.sample_record(row).sample for row in rows]

    def ack(self, sample_ids: Sequence[str]) -> None:
        """The consumer trained on these samples: CONSUMED, never handed out again.

        A turn whose samples are all consumed becomes CONSUMED. Unknown ids raise
        ``JournalError`` and change nothing.
        """
        with self._tx.write() as conn:
            leases.settle(conn, SampleOp.ACK, sample_ids, self._clock())
        self._maybe_purge()

    def nack(self, sample_ids: Sequence[str]) -> None:
        """The consumer gives these samples back: READY again (acknowledged ones stay CONSUMED)."""
        with self._tx.write() as conn:
            leases.settle(conn, SampleOp.NACK, sample_ids, self._clock())

    # -- session outcomes (journal/outcomes.py) ------------------------------------------

    def record_outcome(self, outcome: SessionOutcome) -> bool:
        """Record the session's outcome; False when it already has one (the first stands)."""
        with self._tx.write() as conn:
            return outcomes.record(conn, outcome, self._clock())

    def get_outcome(self, session_id: str) -> SessionOutcome | None:
        """The outcome recorded on ``session_id``, or None."""
        rows = self._tx.read(outcomes.SELECT_ONE, (session_id,))
        return outcomes.from_row(rows[0]) if rows else None

    def has_session(self, session_id: str) -> bool:
        """True when a turn of ``session_id`` is in the journal."""
        return bool(self._tx.read(outcomes.HAS_SESSION, (session_id,)))

    # -- inspection and retention ---------------------------------------------------------

    def stats(self) -> JournalStats:
        """Counts per turn state, per sample state and per method, and the two lags."""
        now = self._clock()
        read = self._tx.read
        turns = {r[0]: r[1] for r in read("SELECT state, COUNT(*) FROM turns GROUP BY state")}
        samples = {r[0]: r[1] for r in read("SELECT state, COUNT(*) FROM samples GROUP BY state")}
        methods = {r[0]: r[1] for r in read("SELECT method, COUNT(*) FROM samples GROUP BY method")}
        oldest_observed = read("SELECT MIN(observed_at) FROM turns WHERE state = ?", (TurnState.OBSERVED.value,))[0][0]
        oldest_ready = read("SELECT MIN(created_at) FROM samples WHERE state = ?", (SampleState.READY.value,))[0][0]
        return JournalStats.from_counts(turns, samples, methods, oldest_observed, oldest_ready, now)

    def iter_turns(self, state: TurnState | None = None) -> Iterator[TurnRecord]:
        """Turns, oldest first (read in pages, so a large journal streams)."""
        sql = layout.page_sql("turns", "turns", layout.TURN_COLS, filtered=state is not None)
        yield from (layout.turn_record(row) for row in self._pages(sql, state))

    def iter_samples(self, state: SampleState | None = None) -> Iterator[SampleRecord]:
        """Samples, oldest first (read in pages)."""
        sql = layout.page_sql("s", layout.SAMPLE_FROM, layout.SAMPLE_SELECT, filtered=state is not None)
        yield from (layout.sample_record(row) for row in self._pages(sql, state))

    def _pages(self, sql: str, state: TurnState | SampleState | None) -> Iterator[sqlite3.Row]:
        last = -1
        params: list[Any] = [] if state is None else [state.value]
        while rows := self._tx.read(sql, [last, *params]):
            yield from rows
            last = rows[-1]["seq"]

    def purge(self) -> int:
        """Delete terminal turns (and samples) older than the retention policy allows."""
        now = self._clock()
        self._last_purge = now
        cutoff = self.retention.purge_cutoff(now)
        if cutoff is None:
            return 0
        with self._tx.write() as conn:
            return purge.delete_terminal_before(conn, cutoff)

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
        self._tx.close()

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
