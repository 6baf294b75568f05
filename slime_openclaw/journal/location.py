"""Where the journal lives by default, and turning a ``--journal`` value into a journal.

``default_journal_path`` is ``journal.sqlite`` in the user data directory
(``paths.data_dir``: ``$XDG_DATA_HOME/slime-openclaw``, else
``~/.local/share/slime-openclaw``); CLI entry points pass it their environment. ``open_journal(":memory:")`` gives the in-memory journal, anything else the
SQLite one. This module does not parse configuration files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from slime_openclaw.journal.base import JournalStore
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.journal.retention import RetentionPolicy
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.paths import data_dir

MEMORY = ":memory:"
"""The ``--journal`` value that selects the in-memory journal (nothing survives the process)."""

CHECKPOINT_INTERVAL_SECONDS = 1.0
"""A long-running process checkpoints the WAL from a background thread this often."""


def default_journal_path(environ: Mapping[str, str] | None = None) -> Path:
    """The journal file under the user's data directory (XDG base directory rules).

    ``environ`` defaults to the process environment; pass one explicitly from config code.
    """
    return data_dir(environ) / "journal.sqlite"


def open_journal(
    location: str | os.PathLike[str] | None = None,
    *,
    retention: RetentionPolicy | None = None,
    environ: Mapping[str, str] | None = None,
) -> JournalStore:
    """The journal at ``location``: ``":memory:"`` in memory, None the default path, else a file."""
    if location is not None and os.fspath(location) == MEMORY:
        return MemoryJournal(retention=retention)
    path = default_journal_path(environ) if location is None else location
    return SqliteJournal(path, retention=retention, checkpoint_interval_seconds=CHECKPOINT_INTERVAL_SECONDS)
