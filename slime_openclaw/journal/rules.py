"""The journal's state machine, shared by every implementation (memory and SQLite).

A turn moves forward only: SERVED -> OBSERVED -> JUDGED -> READY -> CONSUMED, or to the
terminal DISCARDED from any state before READY. A sample moves READY -> IN_FLIGHT (leased
to a consumer) -> CONSUMED, and back to READY when returned or when its lease expires.

Each operation names the states it moves *from*; replaying an operation on a turn or
sample that is already at or past its target is a no-op (idempotent: a retried request
or a second worker whose lease ran out changes nothing); anything else is a bug in the
caller and raises ``JournalError``. This module holds those rules and nothing else: no
storage, no clock, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from slime_openclaw.errors import JournalError, TurnKeyCollision
from slime_openclaw.types import TrainingSample, TurnState


class SampleState(str, enum.Enum):
    """Where a training sample is between the signal workers and a trainer."""

    READY = "ready"
    """Waiting for a trainer."""
    IN_FLIGHT = "in_flight"
    """Handed out by ``drain`` and leased to a consumer until acknowledged or returned."""
    CONSUMED = "consumed"
    """Acknowledged by a consumer: never handed out again."""


class TurnOp(str, enum.Enum):
    """Operations that change a turn's state."""

    OBSERVE = "observe"
    """Attach the next state: SERVED -> OBSERVED."""
    JUDGE = "judge"
    """Attach signals and samples: OBSERVED -> JUDGED -> READY or DISCARDED."""
    DISCARD = "discard"
    """Give up on the turn: -> DISCARDED with a reason."""


class SampleOp(str, enum.Enum):
    """Operations a consumer applies to samples it was handed."""

    ACK = "ack"
    """Trained on: -> CONSUMED."""
    NACK = "nack"
    """Given back: IN_FLIGHT -> READY."""


@dataclass(frozen=True)
class Rule:
    """The states an operation applies from, and those where it is a harmless replay."""

    applies: frozenset[str]
    replays: frozenset[str]


def _rule(applies: set[enum.Enum], replays: set[enum.Enum]) -> Rule:
    return Rule(frozenset(s.value for s in applies), frozenset(s.value for s in replays))


T = TurnState
TURN_RULES: dict[TurnOp, Rule] = {
    TurnOp.OBSERVE: _rule({T.SERVED}, {T.OBSERVED, T.JUDGED, T.READY, T.CONSUMED, T.DISCARDED}),
    # A turn judged without a next state is a worker bug: SERVED is not a replay.
    TurnOp.JUDGE: _rule({T.OBSERVED}, {T.JUDGED, T.READY, T.CONSUMED, T.DISCARDED}),
    # Samples of a READY turn may already be with a trainer: discarding it would lie.
    TurnOp.DISCARD: _rule({T.SERVED, T.OBSERVED, T.JUDGED}, {T.DISCARDED}),
}

S = SampleState
SAMPLE_RULES: dict[SampleOp, Rule] = {
    # An ack always wins: a late ack after the lease expired still marks the sample done.
    SampleOp.ACK: _rule({S.READY, S.IN_FLIGHT}, {S.CONSUMED}),
    # Returning an acknowledged sample changes nothing: it is never handed out again.
    SampleOp.NACK: _rule({S.IN_FLIGHT}, {S.READY, S.CONSUMED}),
}

TERMINAL_TURN_STATES = frozenset({TurnState.CONSUMED.value, TurnState.DISCARDED.value})
"""Turns in these states never change again (retention may delete them)."""


def turn_step(op: TurnOp, turn_key: str, state: str | None) -> bool:
    """Whether ``op`` applies to a turn in ``state``: True apply, False replay (no-op).

    Raises ``JournalError`` for an unknown turn (``state`` None) or an illegal move.
    """
    if state is None:
        raise JournalError(f"unknown turn {turn_key!r}")
    rule = TURN_RULES[op]
    if state in rule.applies:
        return True
    if state in rule.replays:
        return False
    raise JournalError(f"cannot {op.value} turn {turn_key!r} in state {state!r}")


def sample_step(op: SampleOp, state: str) -> bool:
    """Whether ``op`` applies to a sample in ``state``: True apply, False replay (no-op)."""
    rule = SAMPLE_RULES[op]
    if state in rule.applies:
        return True
    if state in rule.replays:
        return False
    raise JournalError(f"cannot {op.value} a sample in state {state!r}")  # pragma: no cover - rules are total


def check_known_samples(requested: Sequence[str], known: set[str]) -> None:
    """Raise ``JournalError`` naming the first sample id the journal does not hold."""
    for sample_id in requested:
        if sample_id not in known:
            raise JournalError(f"unknown sample {sample_id!r}")


def claimable(state: str, claim_until: float | None, now: float) -> bool:
    """An OBSERVED turn no worker holds a live claim on."""
    return state == TurnState.OBSERVED.value and (claim_until is None or claim_until <= now)


def lease_expired(state: str, lease_until: float | None, now: float) -> bool:
    """An IN_FLIGHT sample whose consumer never answered in time: it goes back to READY."""
    return state == SampleState.IN_FLIGHT.value and (lease_until is None or lease_until <= now)


def state_after_signals(samples: Sequence[TrainingSample]) -> TurnState:
    """READY when the turn yielded samples, DISCARDED otherwise."""
    return TurnState.READY if samples else TurnState.DISCARDED


def sample_ids(turn_key: str, samples: Sequence[TrainingSample]) -> list[str]:
    """Deterministic ids: an explicit ``sample_id`` is kept, else ``"{turn_key}:{method}"``.

    A second sample of the same method on one turn gets ``":1"``, ``":2"``... appended, so a
    replayed ``record_signals`` produces the same ids. Duplicates raise ``JournalError``.
    """
    ids: list[str] = []
    per_method: dict[str, int] = {}
    for sample in samples:
        if sample.sample_id:
            ids.append(sample.sample_id)
            continue
        method = sample.method.value
        n = per_method.get(method, 0)
        per_method[method] = n + 1
        ids.append(f"{turn_key}:{method}" if n == 0 else f"{turn_key}:{method}:{n}")
    if len(set(ids)) != len(ids):
        raise JournalError(f"duplicate sample ids for turn {turn_key!r}: {ids}")
    return ids


def validate_sample(turn_key: str, sample: TrainingSample) -> None:
    """Refuse a sample whose per-token arrays do not line up with its response tokens."""
    n = len(sample.response_ids)
    per_token = {
        "loss_mask": sample.loss_mask,
        "rollout_log_probs": sample.rollout_log_probs,
        "weight_versions": sample.weight_versions,
        "teacher_log_probs": sample.teacher_log_probs,
        "teacher_topk_ids": sample.teacher_topk_ids,
        "teacher_topk_log_probs": sample.teacher_topk_log_probs,
    }
    for name, values in per_token.items():
        if values is not None and len(values) != n:
            raise JournalError(
                f"sample for turn {turn_key!r}: {name} has {len(values)} entries for {n} response tokens"
            )
    ids, lps = sample.teacher_topk_ids, sample.teacher_topk_log_probs
    if (ids is None) != (lps is None):
        raise JournalError(f"sample for turn {turn_key!r}: top-K ids and log-probs must come together")
    if ids is not None and lps is not None and any(len(a) != len(b) for a, b in zip(ids, lps, strict=True)):
        raise JournalError(f"sample for turn {turn_key!r}: top-K ids and log-probs differ in width")


def check_sample_source(turn_key: str, session_id: str, turn_index: int, sample: TrainingSample) -> None:
    """Refuse a sample that names another session or turn than the one it is recorded on."""
    if (sample.session_id, sample.turn_index) != (session_id, turn_index):
        raise JournalError(
            f"sample for turn {turn_key!r} names session {sample.session_id!r} turn {sample.turn_index}"
        )


def check_turn_replay(turn_key: str, same: bool) -> None:
    """A second ``record_turn`` on ``turn_key``: harmless when it is the same turn (a retried
    write), a ``TurnKeyCollision`` when it is another one (it would be lost silently)."""
    if not same:
        raise TurnKeyCollision(f"turn {turn_key!r} is already recorded with different content; the new turn was not stored")
