"""Turns, next states, signals and samples to and from JSON-ready dicts and packed arrays.

Two encodings: plain dicts of JSON types (what ``journal export`` prints and what the
SQLite journal stores for small, rarely-read fields such as messages), and packed
little-endian int64/float64 arrays for token ids and log-probs (``struct``: measured several
times faster than JSON to encode and decode, and faster than ``array``; see
benchmarks/journal.py). Floats are
stored as float64, so log-probs round-trip exactly. Nothing here touches a database.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import orjson

from slime_openclaw.types import (
    FinishReason,
    Hint,
    Method,
    NextState,
    NextStateKind,
    SessionOutcome,
    TrainingSample,
    Turn,
    TurnType,
    Verdict,
)

_WIDTH = 8  # every packed value is 8 bytes: int64 ("q") or float64 ("d")


def _pack(typecode: str, values: Sequence[Any]) -> bytes:
    return struct.pack(f"<{len(values)}{typecode}", *values)


def _unpack(typecode: str, data: bytes) -> tuple[Any, ...]:
    return struct.unpack(f"<{len(data) // _WIDTH}{typecode}", data)


def pack_ints(values: Sequence[int]) -> bytes:
    """Token ids / versions / masks as little-endian int64."""
    return _pack("q", values)


def unpack_ints(data: bytes) -> tuple[int, ...]:
    """Inverse of ``pack_ints``."""
    return _unpack("q", data)


def pack_floats(values: Sequence[float]) -> bytes:
    """Log-probs as little-endian float64 (exact round trip)."""
    return _pack("d", values)


def unpack_floats(data: bytes) -> tuple[float, ...]:
    """Inverse of ``pack_floats``."""
    return _unpack("d", data)


def pack_rows(rows: Sequence[Sequence[Any]], typecode: str) -> bytes:
    """A ragged 2-D array (top-K per token): row count, row lengths (int64), then the flat values."""
    header = [len(rows), *(len(r) for r in rows)]
    return _pack("q", header) + _pack(typecode, [v for r in rows for v in r])


def unpack_rows(data: bytes, typecode: str) -> tuple[tuple[Any, ...], ...]:
    """Inverse of ``pack_rows``."""
    (n,) = struct.unpack_from("<q", data)
    lengths = struct.unpack_from(f"<{n}q", data, _WIDTH)
    flat = _unpack(typecode, data[_WIDTH * (n + 1) :])
    rows: list[tuple[Any, ...]] = []
    start = 0
    for length in lengths:
        rows.append(flat[start : start + length])
        start += length
    return tuple(rows)


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII text kept as is (orjson; the standard library for what it refuses:
    integers beyond 64 bits, lone surrogates)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def turn_meta(turn: Turn) -> dict[str, Any]:
    """The turn's non-token fields (text, tools, sampling) as a JSON-ready dict."""
    return {
        "turn_type": turn.turn_type.value,
        "messages": list(turn.messages),
        "tools": list(turn.tools),
        "finish_reason": turn.finish_reason.value,
        "response_message": turn.response_message,
        "sampling": turn.sampling,
        "model": turn.model,
        "turn_id": turn.turn_id,
        "client_key": turn.client_key,
        "session_epoch": turn.session_epoch,
    }


def turn_to_json(turn: Turn) -> dict[str, Any]:
    """Every field of a turn as a JSON-ready dict (``turn_from_json`` inverts it)."""
    return {
        "turn_key": turn.key,
        "session_id": turn.session_id,
        "turn_index": turn.turn_index,
        "created_at": turn.created_at,
        "prompt_ids": list(turn.prompt_ids),
        "response_ids": list(turn.response_ids),
        "rollout_log_probs": list(turn.response_log_probs),
        "weight_versions": list(turn.weight_versions),
        **turn_meta(turn),
    }


def turn_from_json(data: dict[str, Any]) -> Turn:
    """Rebuild a turn from ``turn_to_json`` output (or a stored row decoded to that shape)."""
    return Turn(
        session_id=data["session_id"],
        turn_index=int(data["turn_index"]),
        turn_type=TurnType(data["turn_type"]),
        messages=tuple(data.get("messages", ())),
        tools=tuple(data.get("tools", ())),
        prompt_ids=tuple(data["prompt_ids"]),
        response_ids=tuple(data["response_ids"]),
        response_log_probs=tuple(data["rollout_log_probs"]),
        weight_versions=tuple(data["weight_versions"]),
        finish_reason=FinishReason(data["finish_reason"]),
        response_message=data.get("response_message", {}),
        sampling=data.get("sampling", {}),
        model=data.get("model", ""),
        created_at=float(data.get("created_at", 0.0)),
        turn_id=data.get("turn_id", ""),
        client_key=data.get("client_key", ""),
        session_epoch=int(data.get("session_epoch", 0)),
    )


def next_state_to_json(state: NextState | None) -> dict[str, Any] | None:
    """A next state as a JSON-ready dict (None stays None)."""
    if state is None:
        return None
    return {
        "kind": state.kind.value,
        "messages": list(state.messages),
        "continuous": state.continuous,
        "break_reason": state.break_reason,
        "observed_at": state.observed_at,
        "dropped_messages": state.dropped_messages,
        "reply_dropped": state.reply_dropped,
    }


def next_state_from_json(data: dict[str, Any] | None) -> NextState | None:
    """Inverse of ``next_state_to_json``."""
    if data is None:
        return None
    return NextState(
        kind=NextStateKind(data["kind"]),
        messages=tuple(data.get("messages", ())),
        continuous=bool(data.get("continuous", True)),
        break_reason=data.get("break_reason"),
        observed_at=float(data.get("observed_at", 0.0)),
        dropped_messages=int(data.get("dropped_messages", 0)),
        reply_dropped=bool(data.get("reply_dropped", False)),
    )


def verdict_to_json(verdict: Verdict | None) -> dict[str, Any] | None:
    """A verdict as a JSON-ready dict (None stays None)."""
    if verdict is None:
        return None
    return {
        "score": verdict.score,
        "votes": list(verdict.votes),
        "rationale": verdict.rationale,
        "judge": verdict.judge,
        "failures": verdict.failures,
        "parse_failures": verdict.parse_failures,
    }


def verdict_from_json(data: dict[str, Any] | None) -> Verdict | None:
    """Inverse of ``verdict_to_json``."""
    if data is None:
        return None
    return Verdict(
        score=int(data["score"]),
        votes=tuple(data.get("votes", ())),
        rationale=data.get("rationale", ""),
        judge=data.get("judge", ""),
        failures=int(data.get("failures", 0)),
        parse_failures=int(data.get("parse_failures", 0)),
    )


def hint_to_json(hint: Hint | None) -> dict[str, Any] | None:
    """A hint as a JSON-ready dict (None stays None)."""
    if hint is None:
        return None
    return {"text": hint.text, "accepted": hint.accepted, "votes": list(hint.votes), "source": hint.source}


def hint_from_json(data: dict[str, Any] | None) -> Hint | None:
    """Inverse of ``hint_to_json``."""
    if data is None:
        return None
    return Hint(
        text=data.get("text", ""),
        accepted=bool(data["accepted"]),
        votes=tuple(data.get("votes", ())),
        source=data.get("source", ""),
    )


def _rows_json(rows: tuple[tuple[Any, ...], ...] | None) -> list[list[Any]] | None:
    return None if rows is None else [list(r) for r in rows]


def _rows_tuple(rows: list[list[Any]] | None) -> tuple[tuple[Any, ...], ...] | None:
    return None if rows is None else tuple(tuple(r) for r in rows)


def sample_to_json(sample: TrainingSample) -> dict[str, Any]:
    """Every field of a training sample as a JSON-ready dict."""
    teacher = sample.teacher_log_probs
    return {
        "sample_id": sample.sample_id,
        "session_id": sample.session_id,
        "turn_index": sample.turn_index,
        "method": sample.method.value,
        "prompt_ids": list(sample.prompt_ids),
        "response_ids": list(sample.response_ids),
        "loss_mask": list(sample.loss_mask),
        "rollout_log_probs": list(sample.rollout_log_probs),
        "weight_versions": list(sample.weight_versions),
        "reward": sample.reward,
        "teacher_log_probs": None if teacher is None else list(teacher),
        "teacher_topk_ids": _rows_json(sample.teacher_topk_ids),
        "teacher_topk_log_probs": _rows_json(sample.teacher_topk_log_probs),
    }


def sample_from_json(data: dict[str, Any]) -> TrainingSample:
    """Inverse of ``sample_to_json``."""
    teacher = data.get("teacher_log_probs")
    return TrainingSample(
        session_id=data["session_id"],
        turn_index=int(data["turn_index"]),
        method=Method(data["method"]),
        prompt_ids=tuple(data["prompt_ids"]),
        response_ids=tuple(data["response_ids"]),
        loss_mask=tuple(data["loss_mask"]),
        rollout_log_probs=tuple(data["rollout_log_probs"]),
        weight_versions=tuple(data["weight_versions"]),
        reward=float(data.get("reward", 0.0)),
        teacher_log_probs=None if teacher is None else tuple(teacher),
        teacher_topk_ids=_rows_tuple(data.get("teacher_topk_ids")),
        teacher_topk_log_probs=_rows_tuple(data.get("teacher_topk_log_probs")),
        sample_id=data.get("sample_id", ""),
    )


SAMPLE_ARRAY_COLUMNS = (
    "prompt_ids",
    "response_ids",
    "loss_mask",
    "rollout_log_probs",
    "weight_versions",
    "teacher_log_probs",
    "teacher_topk_ids",
    "teacher_topk_log_probs",
)
"""The packed per-token columns of a stored sample, in this order."""


def sample_arrays(sample: TrainingSample) -> tuple[bytes | None, ...]:
    """The sample's token arrays packed, in ``SAMPLE_ARRAY_COLUMNS`` order (None when absent)."""
    teacher, topk_ids, topk_lps = sample.teacher_log_probs, sample.teacher_topk_ids, sample.teacher_topk_log_probs
    return (
        pack_ints(sample.prompt_ids),
        pack_ints(sample.response_ids),
        pack_ints(sample.loss_mask),
        pack_floats(sample.rollout_log_probs),
        pack_ints(sample.weight_versions),
        None if teacher is None else pack_floats(teacher),
        None if topk_ids is None else pack_rows(topk_ids, "q"),
        None if topk_lps is None else pack_rows(topk_lps, "d"),
    )


def sample_from_arrays(
    sample_id: str, session_id: str, turn_index: int, method: str, reward: float, arrays: Sequence[bytes | None]
) -> TrainingSample:
    """Inverse of ``sample_arrays`` plus the scalar columns."""
    prompt, response, mask, lps, versions, teacher, topk_ids, topk_lps = arrays
    assert prompt is not None and response is not None and mask is not None
    assert lps is not None and versions is not None
    return TrainingSample(
        session_id=session_id,
        turn_index=turn_index,
        method=Method(method),
        prompt_ids=unpack_ints(prompt),
        response_ids=unpack_ints(response),
        loss_mask=unpack_ints(mask),
        rollout_log_probs=unpack_floats(lps),
        weight_versions=unpack_ints(versions),
        reward=reward,
        teacher_log_probs=None if teacher is None else unpack_floats(teacher),
        teacher_topk_ids=None if topk_ids is None else unpack_rows(topk_ids, "q"),
        teacher_topk_log_probs=None if topk_lps is None else unpack_rows(topk_lps, "d"),
        sample_id=sample_id,
    )


def outcome_to_json(outcome: SessionOutcome | None) -> dict[str, Any] | None:
    """A session outcome as exported (``journal export`` rows carry it as ``outcome``)."""
    if outcome is None:
        return None
    return {"score": outcome.score, "passed": outcome.passed, "details": outcome.details,
            "recorded_at": outcome.recorded_at}


def outcome_from_json(session_id: str, data: dict[str, Any] | None) -> SessionOutcome | None:
    """Inverse of ``outcome_to_json`` for ``session_id``."""
    if data is None:
        return None
    passed = data.get("passed")
    return SessionOutcome(session_id=session_id, score=float(data["score"]),
                          passed=None if passed is None else bool(passed),
                          details=dict(data.get("details") or {}), recorded_at=float(data.get("recorded_at", 0.0)))
