"""Where the journal lives by default, and the one way to open a journal from a location.

``default_journal_path`` is ``journal.sqlite`` in the user data directory
(``paths.data_dir``: ``$XDG_DATA_HOME/slime-openclaw``, else
``~/.local/share/slime-openclaw``). ``open_journal`` is the only opener every process uses
(``serve``, the embedded loop, slime's rollout function, benchmarks): ``":memory:"`` gives
the in-memory journal, anything else the SQLite one with background WAL checkpoints; the
retention and the claim and drain leases come from the ``openclaw_journal_*`` settings
(``config.JournalConfig``, the one source of their defaults).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from slime_openclaw.config import JournalConfig
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
    settings: JournalConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> JournalStore:
    """The journal at ``location``: ``":memory:"`` in memory, a file path, or None for the
    settings' ``path`` (else the default file). ``settings``: the ``openclaw_journal_*`` keys
    (retention, leases; default: their defaults)."""
    settings = settings or JournalConfig()
    retention = RetentionPolicy(keep_text=settings.keep_text, delete_consumed_after_hours=settings.retention_hours)
    where = location if location is not None and os.fspath(location) else settings.path or None
    if where is not None and os.fspath(where) == MEMORY:
        return MemoryJournal(retention=retention, claim_lease_seconds=settings.claim_lease_s,
                             drain_lease_seconds=settings.drain_lease_s)
    path = default_journal_path(environ) if where is None else where
    return SqliteJournal(path, retention=retention, claim_lease_seconds=settings.claim_lease_s,
                         drain_lease_seconds=settings.drain_lease_s,
                         checkpoint_interval_seconds=CHECKPOINT_INTERVAL_SECONDS)
