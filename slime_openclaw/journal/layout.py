"""Row layouts of the SQLite journal: which columns its queries write and read, by name, and
turns and samples packed into rows and decoded back into ``TurnRecord`` / ``SampleRecord``.

Rows are written with named parameters (``:column``) and read as ``sqlite3.Row`` by column
name, so adding a column never shifts another. No queries run here (journal/sqlite.py and
journal/leases.py run them).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from slime_openclaw.journal import codec
from slime_openclaw.journal.base import SampleRecord, TurnRecord
from slime_openclaw.journal.rules import SampleState
from slime_openclaw.types import TrainingSample, Turn, TurnState

Row = sqlite3.Row
"""A row read back, indexed by column name (``journal/transactions.py`` sets the row factory)."""

TURN_WRITE = (
    "turn_key", "session_id", "turn_index", "created_at", "meta", "prompt_ids", "response_ids",
    "response_log_probs", "weight_versions", "updated_at", "state", "client_key",
)
"""The columns ``record_turn`` writes (the rest start NULL)."""
TURN_READ = (
    "turn_key", "session_id", "turn_index", "created_at", "meta", "prompt_ids", "response_ids",
    "response_log_probs", "weight_versions", "next_state", "verdict", "hint", "discard_reason",
    "updated_at", "state",
)
"""The columns a ``TurnRecord`` is decoded from."""
TURN_COLS = ", ".join(TURN_READ)

SAMPLE_WRITE = (
    "sample_id", "session_id", "turn_index", "method", "reward", *codec.SAMPLE_ARRAY_COLUMNS,
    "turn_key", "consumer", "handed_out", "created_at", "updated_at", "state",
)
"""The columns a stored sample is written with and decoded from."""
SAMPLE_COLS = ", ".join(SAMPLE_WRITE)
# Reading a sample joins its turn: a prompt equal to the turn's is stored once, on the turn.
SAMPLE_SELECT = ", ".join(
    "COALESCE(s.prompt_ids, t.prompt_ids) AS prompt_ids" if col == "prompt_ids" else f"s.{col} AS {col}"
    for col in SAMPLE_WRITE
)
SAMPLE_FROM = "samples s LEFT JOIN turns t ON t.turn_key = s.turn_key"
CHUNK = 500  # bound on SQL parameters per statement


def insert_sql(table: str, columns: Sequence[str], *, verb: str = "INSERT") -> str:
    """``INSERT INTO table (a, b) VALUES (:a, :b)``: rows are passed as dicts by column name."""
    names = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({values})"


def page_sql(alias: str, source: str, cols: str, *, filtered: bool, page: int = 200) -> str:
    """One page of rows after a given ``seq`` (first parameter), optionally of one state (second)."""
    where = f"AND {alias}.state = ?" if filtered else ""
    return (
        f"SELECT {alias}.seq AS seq, {cols} FROM {source} WHERE {alias}.seq > ? {where} "
        f"ORDER BY {alias}.seq LIMIT {page}"
    )


def placeholders(n: int) -> str:
    """``(?,?,...)`` with ``n`` parameters."""
    return "(" + ",".join("?" * n) + ")"


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most ``CHUNK``."""
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def turn_row(turn: Turn, now: float) -> dict[str, Any]:
    """A served turn as the ``TURN_WRITE`` row (raises TypeError/ValueError for non-JSON fields)."""
    return {
        "turn_key": turn.key,
        "session_id": turn.session_id,
        "turn_index": turn.turn_index,
        "created_at": turn.created_at or now,
        "meta": codec.dumps(codec.turn_meta(turn)),
        "prompt_ids": codec.pack_ints(turn.prompt_ids),
        "response_ids": codec.pack_ints(turn.response_ids),
        "response_log_probs": codec.pack_floats(turn.response_log_probs),
        "weight_versions": codec.pack_ints(turn.weight_versions),
        "updated_at": now,
        "state": TurnState.SERVED.value,
        "client_key": turn.client_key or None,
    }


def sample_row(
    sample_id: str, sample: TrainingSample, turn_key: str, turn_prompt: bytes, now: float
) -> dict[str, Any]:
    """A new READY sample as the ``SAMPLE_WRITE`` row; a prompt equal to ``turn_prompt`` is not stored again."""
    arrays = dict(zip(codec.SAMPLE_ARRAY_COLUMNS, codec.sample_arrays(sample), strict=True))
    if arrays["prompt_ids"] == turn_prompt:
        arrays["prompt_ids"] = None
    return {
        "sample_id": sample_id,
        "session_id": sample.session_id,
        "turn_index": sample.turn_index,
        "method": sample.method.value,
        "reward": float(sample.reward),
        **arrays,
        "turn_key": turn_key,
        "consumer": "",
        "handed_out": 0,
        "created_at": now,
        "updated_at": now,
        "state": SampleState.READY.value,
    }


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def turn_record(row: Row) -> TurnRecord:
    """A row with the ``TURN_READ`` columns as a ``TurnRecord``."""
    turn = codec.turn_from_json(
        {
            **json.loads(row["meta"]),
            "turn_key": row["turn_key"],
            "session_id": row["session_id"],
            "turn_index": row["turn_index"],
            "created_at": row["created_at"],
            "prompt_ids": codec.unpack_ints(row["prompt_ids"]),
            "response_ids": codec.unpack_ints(row["response_ids"]),
            "rollout_log_probs": codec.unpack_floats(row["response_log_probs"]),
            "weight_versions": codec.unpack_ints(row["weight_versions"]),
        }
    )
    return TurnRecord(
        turn=turn,
        state=TurnState(row["state"]),
        next_state=codec.next_state_from_json(_json(row["next_state"])),
        verdict=codec.verdict_from_json(_json(row["verdict"])),
        hint=codec.hint_from_json(_json(row["hint"])),
        discard_reason=row["discard_reason"],
        updated_at=row["updated_at"],
    )


def sample_record(row: Row) -> SampleRecord:
    """A ``SAMPLE_SELECT`` row as a ``SampleRecord``."""
    sample = codec.sample_from_arrays(
        row["sample_id"], row["session_id"], row["turn_index"], row["method"], row["reward"],
        [row[col] for col in codec.SAMPLE_ARRAY_COLUMNS],
    )
    return SampleRecord(
        sample, row["turn_key"], SampleState(row["state"]), row["consumer"], row["handed_out"],
        row["created_at"], row["updated_at"],
    )
