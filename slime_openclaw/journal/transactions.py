"""The SQLite journal's connection and its transactions: one connection per process, shared
behind a lock, writes under ``BEGIN IMMEDIATE``, and batches of writes with one commit.

Every ``sqlite3.Error`` leaves here as ``JournalError``; a failed write is rolled back before
it does (a failed write inside a batch rolls back its own savepoint only). Nothing here knows
the journal's tables (journal/schema.py) or queries (journal/sqlite.py and its helpers).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from slime_openclaw.errors import JournalError


class Transactions:
    """One connection, a lock, and the three ways to use it: ``read``, ``write``, ``batch``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn
        self._lock = threading.RLock()
        self._batching = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run several writes of this thread in one transaction, with one commit.

        Each write inside is its own savepoint, so one that fails rolls back alone and raises
        as usual; the others commit together when the block ends. Other threads' calls wait
        for the block.
        """
        with self._transaction():
            self._batching = True
            try:
                yield
            finally:
                self._batching = False

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside a write transaction (a savepoint when inside ``batch``)."""
        with self._lock:
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
                raise JournalError(f"journal read failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection (waits for a write in progress)."""
        with self._lock:
            self.conn.close()

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
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
            conn = self.conn
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
