"""Row layouts of the SQLite journal: the column lists its queries select, and rows decoded
back into ``TurnRecord`` / ``SampleRecord``. No queries run here (journal/sqlite.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from slime_openclaw.journal import codec
from slime_openclaw.journal.base import SampleRecord, TurnRecord
from slime_openclaw.journal.rules import SampleState
from slime_openclaw.types import TurnState

TURN_COLS = (
    "turn_key, session_id, turn_index, created_at, meta, prompt_ids, response_ids, response_log_probs, "
    "weight_versions, next_state, verdict, hint, discard_reason, updated_at, state"
)
SAMPLE_COLS = (
    "sample_id, session_id, turn_index, method, reward, "
    + ", ".join(codec.SAMPLE_ARRAY_COLUMNS)
    + ", turn_key, consumer, handed_out, created_at, updated_at, state"
)
# Reading a sample joins its turn: a prompt equal to the turn's is stored once, on the turn.
SAMPLE_SELECT = ", ".join(
    "COALESCE(s.prompt_ids, t.prompt_ids)" if col == "prompt_ids" else f"s.{col}"
    for col in SAMPLE_COLS.split(", ")
)
SAMPLE_FROM = "samples s LEFT JOIN turns t ON t.turn_key = s.turn_key"
CHUNK = 500  # bound on SQL parameters per statement


def page_sql(alias: str, source: str, cols: str, *, filtered: bool, page: int = 200) -> str:
    """One page of rows after a given ``seq`` (first parameter), optionally of one state (second)."""
    where = f"AND {alias}.state = ?" if filtered else ""
    return f"SELECT {alias}.seq, {cols} FROM {source} WHERE {alias}.seq > ? {where} ORDER BY {alias}.seq LIMIT {page}"


def placeholders(n: int) -> str:
    """``(?,?,...)`` with ``n`` parameters."""
    return "(" + ",".join("?" * n) + ")"


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most ``CHUNK``."""
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]



def turn_record(row: Sequence[Any]) -> TurnRecord:
    """A ``TURN_COLS`` row as a ``TurnRecord``."""
    key, session_id, turn_index, created_at, meta, prompt, response, lps, versions = row[:9]
    next_state, verdict, hint, reason, updated_at, state = row[9:]
    turn = codec.turn_from_json(
        {
            **json.loads(meta),
            "turn_key": key,
            "session_id": session_id,
            "turn_index": turn_index,
            "created_at": created_at,
            "prompt_ids": codec.unpack_ints(prompt),
            "response_ids": codec.unpack_ints(response),
            "rollout_log_probs": codec.unpack_floats(lps),
            "weight_versions": codec.unpack_ints(versions),
        }
    )
    return TurnRecord(
        turn=turn,
        state=TurnState(state),
        next_state=codec.next_state_from_json(json.loads(next_state) if next_state else None),
        verdict=codec.verdict_from_json(json.loads(verdict) if verdict else None),
        hint=codec.hint_from_json(json.loads(hint) if hint else None),
        discard_reason=reason,
        updated_at=updated_at,
    )

def sample_record(row: Sequence[Any]) -> SampleRecord:
    """A ``SAMPLE_SELECT`` row as a ``SampleRecord``."""
    sample_id, session_id, turn_index, method, reward = row[:5]
    arrays = row[5:13]
    turn_key, consumer, handed_out, created_at, updated_at, state = row[13:]
    sample = codec.sample_from_arrays(sample_id, session_id, turn_index, method, reward, arrays)
    return SampleRecord(sample, turn_key, SampleState(state), consumer, handed_out, created_at, updated_at)
