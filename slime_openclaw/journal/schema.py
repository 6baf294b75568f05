"""The SQLite journal's schema, its version, and opening a connection with the right settings.

One row per turn and one per sample, keyed by idempotency keys (``Turn.key``, the
deterministic sample id). ``seq`` (the rowid) orders rows oldest first. Token arrays are
packed little-endian blobs (journal/codec.py). The ``state`` column is written in the
same transaction as everything it vouches for, last, so the state read back is always
the truth about the row. Queries live in journal/sqlite.py; this module does not read
or write turns.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from slime_openclaw.errors import JournalError

SCHEMA_VERSION = 3

_CLIENT_KEY_INDEX = "CREATE INDEX turns_by_client_key ON turns(client_key, seq) WHERE client_key IS NOT NULL"

_TABLES: tuple[str, ...] = (
    """CREATE TABLE turns (
        seq INTEGER PRIMARY KEY,
        turn_key TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        turn_index INTEGER NOT NULL,
        created_at REAL NOT NULL,
        meta TEXT NOT NULL,
        prompt_ids BLOB NOT NULL,
        response_ids BLOB NOT NULL,
        response_log_probs BLOB NOT NULL,
        weight_versions BLOB NOT NULL,
        next_state TEXT,
        observed_at REAL,
        claim_owner TEXT,
        claim_until REAL,
        verdict TEXT,
        hint TEXT,
        discard_reason TEXT,
        updated_at REAL NOT NULL,
        state TEXT NOT NULL,
        client_key TEXT  -- the session key the client sent (NULL: matched by history)
    )""",
    "CREATE INDEX turns_by_state ON turns(state, seq)",
    _CLIENT_KEY_INDEX,
    """CREATE TABLE samples (
        seq INTEGER PRIMARY KEY,
        sample_id TEXT NOT NULL UNIQUE,
        turn_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        turn_index INTEGER NOT NULL,
        method TEXT NOT NULL,
        reward REAL NOT NULL,
        prompt_ids BLOB,  -- NULL: the same as the turn's prompt_ids (stored once)
        response_ids BLOB NOT NULL,
        loss_mask BLOB NOT NULL,
        rollout_log_probs BLOB NOT NULL,
        weight_versions BLOB NOT NULL,
        teacher_log_probs BLOB,
        teacher_topk_ids BLOB,
        teacher_topk_log_probs BLOB,
        consumer TEXT NOT NULL DEFAULT '',
        lease_until REAL,
        handed_out INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        state TEXT NOT NULL
    )""",
    "CREATE INDEX samples_by_state ON samples(state, seq)",
    "CREATE INDEX samples_by_turn ON samples(turn_key)",
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
)

_V3_OUTCOMES = (
    """CREATE TABLE session_outcomes (
        session_id TEXT PRIMARY KEY,
        score REAL NOT NULL,
        passed INTEGER,  -- NULL: not stated
        details TEXT NOT NULL,
        recorded_at REAL NOT NULL
    )""",
    "CREATE INDEX turns_by_session ON turns(session_id, turn_index)",
)
"""v3: the verifiable outcome of a session (a general agent's episode), and turns by session."""

_TABLES = _TABLES[:-1] + _V3_OUTCOMES + _TABLES[-1:]

# Migrations from version N to N+1, applied in order inside one transaction (additive only).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # v2: the client's session key, so a reused key finds where its last session stopped.
    1: ("ALTER TABLE turns ADD COLUMN client_key TEXT", _CLIENT_KEY_INDEX),
    2: _V3_OUTCOMES,
}


def connect(path: str, *, busy_timeout_seconds: float, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode, autocommit (explicit ``BEGIN IMMEDIATE`` for writes).

    WAL with ``synchronous=NORMAL``: a committed transaction survives the process being
    killed (SIGKILL included) because it is in the WAL file; only an OS crash or power
    loss can lose the last commits. ``synchronous=FULL`` closes that gap at an fsync per
    commit. ``busy_timeout`` lets several processes share the file.
    """
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise JournalError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
    if path != ":memory:" and not os.path.exists(path):
        # The journal holds user text: create it readable by its owner only (WAL files follow).
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_seconds)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() not in {"wal", "memory"}:
            raise JournalError(f"{path}: could not switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection, path: str, *, create: bool) -> int:
    """Create the schema in an empty file, or check and migrate an existing journal.

    Refuses a database that holds other tables (not a journal) or a newer schema.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables or not create:
                raise JournalError(f"{path} is not a slime-openclaw journal")
            for statement in _TABLES:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            version = SCHEMA_VERSION
        else:
            version = _migrate(conn, path)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _migrate(conn: sqlite3.Connection, path: str) -> int:
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        raise JournalError(f"{path}: journal has no schema version")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal schema v{version} is newer than this slime-openclaw supports (v{SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        for statement in _MIGRATIONS[version]:
            conn.execute(statement)
        version += 1
        conn.execute("UPDATE schema_version SET version = ?", (version,))
    return version


def prepare_path(path: str | os.PathLike[str], *, create: bool) -> str:
    """The path as a string; its directory is created when ``create`` (else it must exist)."""
    text = os.fspath(path)
    if text == ":memory:":
        return text
    target = Path(text)
    if not create and not target.is_file():
        raise JournalError(f"no journal at {text}")
    if create:
        target.parent.mkdir(parents=True, exist_ok=True)
    return text
