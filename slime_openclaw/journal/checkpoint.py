"""Background WAL checkpoints for a long-running process's journal.

SQLite otherwise checkpoints inside whichever commit crosses ``wal_autocheckpoint``: a
few-millisecond stall, with an fsync, on the serving path. ``Checkpointer`` does it from a
thread of its own; ``use_background_checkpoints`` pushes the serving connection's automatic
checkpoint out to a safety net.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

SAFETY_NET_CHECKPOINT_PAGES = 20_000
"""With background checkpoints, a commit still checkpoints once the WAL reaches this many pages
(~80 MB), so a stalled checkpointer cannot let the WAL grow without bound."""


def use_background_checkpoints(conn: sqlite3.Connection, path: str, interval_seconds: float,
                               busy_timeout_seconds: float) -> Checkpointer:
    """Start a ``Checkpointer`` for ``path`` and raise ``conn``'s automatic checkpoint to the safety net."""
    conn.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_NET_CHECKPOINT_PAGES}")
    return Checkpointer(path, interval_seconds, busy_timeout_seconds)


class Checkpointer:
    """Copies the WAL back into the database file from a thread of its own, every ``interval``.

    SQLite otherwise checkpoints inside whichever commit crosses ``wal_autocheckpoint``
    (1000 pages): a few-millisecond stall, with an fsync, on the serving path. With this
    running, the serving connection's automatic checkpoint is pushed out to a safety net.
    """

    def __init__(self, path: str, interval_seconds: float, busy_timeout_seconds: float) -> None:
        self._path = path
        self._interval = interval_seconds
        self._busy_timeout = busy_timeout_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout)
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("journal checkpoint failed: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most one checkpoint's time)."""
        self._stop.set()
        self._thread.join()
