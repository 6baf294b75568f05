"""The SQLite journal's connection and its transactions: one connection per process, shared
behind a lock, writes under ``BEGIN IMMEDIATE``, and batches of writes with one commit.

Every ``sqlite3.Error`` leaves here as ``JournalError`` (``JournalStorageError`` when the
storage failed: disk full, I/O error, busy); a failed write is rolled back before it does. A
failed write inside a batch rolls back its own savepoint only, unless SQLite rolled back the
whole transaction (it may, on a full disk or an I/O error): then every later write of the
batch fails too, and the batch commits nothing. Nothing here knows
the journal's tables (journal/schema.py) or queries (journal/sqlite.py and its helpers).

``batch(savepoints=False)`` runs the writes bare, without a savepoint each (two statements
less per write): the first that fails rolls the whole batch back and raises. The gateway's
journal writer tries its batches that way first and, only when one fails, applies that
batch again with a savepoint per write (journal/writer.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from slime_openclaw.errors import JournalError, JournalStorageError


def journal_error(what: str, exc: sqlite3.Error) -> JournalError:
    """``exc`` as the journal's error: storage failures (``OperationalError``) can pass, the rest cannot."""
    kind = JournalStorageError if isinstance(exc, sqlite3.OperationalError) else JournalError
    return kind(f"{what}: {exc}")


class Transactions:
    """One connection, a lock, and the three ways to use it: ``read``, ``write``, ``batch``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn
        self._lock = threading.RLock()
        self._batching = False
        self._bare = False
        """Inside ``batch(savepoints=False)``: writes run in the batch's transaction as they are."""
        self._aborted: JournalError | None = None
        """Set when SQLite rolled back the batch's transaction under it."""

    @contextmanager
    def batch(self, *, savepoints: bool = True) -> Iterator[None]:
        """Run several writes of this thread in one transaction, with one commit.

        Each write inside is its own savepoint, so one that fails rolls back alone and raises
        as usual; the others commit together when the block ends. Other threads' calls wait
        for the block. Without ``savepoints`` a write that fails rolls back the whole batch
        once its error leaves the block.
        """
        with self._transaction():
            self._batching, self._bare = savepoints, not savepoints
            try:
                yield
            finally:
                self._batching = self._bare = False
            aborted, self._aborted = self._aborted, None
            if aborted is not None:
                raise aborted

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside a write transaction (a savepoint when inside ``batch``)."""
        with self._lock:
            if self._bare:
                yield self.conn
                return
            if self._batching:
                with self._savepoint() as conn:
                    yield conn
                return
            with self._transaction() as conn:
                yield conn

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of one query, outside any explicit transaction."""
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise journal_error("journal read failed", exc) from exc

    def close(self) -> None:
        """Close the connection (waits for a write in progress)."""
        with self._lock:
            self.conn.close()

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        if self._aborted is not None:
            raise self._aborted
        conn.execute("SAVEPOINT write")
        try:
            yield conn
            conn.execute("RELEASE write")
        except BaseException as exc:
            self._undo_savepoint(conn)
            if isinstance(exc, sqlite3.Error):
                raise journal_error("journal write failed", exc) from exc
            raise

    def _undo_savepoint(self, conn: sqlite3.Connection) -> None:
        """Roll back the failed write alone, or note that SQLite rolled back the whole batch."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK TO write")
                conn.execute("RELEASE write")
                return
            except sqlite3.Error as exc:
                self._aborted = journal_error("journal transaction failed", exc)
                return
        self._aborted = JournalStorageError("journal transaction rolled back by SQLite (disk full or I/O error)")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise journal_error("journal busy or unavailable", exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise journal_error("journal write failed", exc) from exc
                raise
