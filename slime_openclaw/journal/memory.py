"""An in-memory journal: same interface and state machine as the durable one, nothing
survives the process.

For tests and ``--journal :memory:``; the durable store is journal/sqlite.py. The rules
(which moves are legal, which are replays) and the retention settings come from
journal/rules.py and journal/retention.py, shared with the SQLite journal.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from slime_openclaw.config import JournalConfig
from slime_openclaw.journal import rules
from slime_openclaw.journal.base import JournalStats, SampleRecord, TurnRecord
from slime_openclaw.journal.retention import (
    RetentionPolicy,
    scrub_hint,
    scrub_next_state,
    scrub_turn,
    scrub_verdict,
)
from slime_openclaw.journal.rules import SampleOp, SampleState, TurnOp
from slime_openclaw.types import Hint, NextState, SessionOutcome, TrainingSample, Turn, TurnState, Verdict


@dataclass
class _TurnEntry:
    record: TurnRecord
    seq: int
    observed_at: float | None = None
    claim_until: float | None = None


@dataclass
class _SampleEntry:
    record: SampleRecord
    seq: int
    lease_until: float | None = None


class MemoryJournal:
    """Turns and samples kept in dicts, guarded by a lock (the gateway and signal workers share it).

    Implements ``JournalStore`` (journal/base.py) with the same options as ``SqliteJournal``.
    """

    def __init__(
        self,
        *,
        retention: RetentionPolicy | None = None,
        claim_lease_seconds: float = JournalConfig.claim_lease_s,
        drain_lease_seconds: float = JournalConfig.drain_lease_s,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention = retention or RetentionPolicy()
        self.claim_lease_seconds = claim_lease_seconds
        self.drain_lease_seconds = drain_lease_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._turns: dict[str, _TurnEntry] = {}
        self._samples: dict[str, _SampleEntry] = {}
        self._by_turn: dict[str, list[str]] = {}
        self._by_client: dict[str, str] = {}
        self._outcomes: dict[str, SessionOutcome] = {}
        self._last_purge = 0.0

    def _state(self, turn_key: str) -> str | None:
        entry = self._turns.get(turn_key)
        return None if entry is None else entry.record.state.value

    def _update(self, turn_key: str, **changes: object) -> None:
        entry = self._turns[turn_key]
        entry.record = dataclasses.replace(entry.record, updated_at=self._clock(), **changes)  # type: ignore[arg-type]

    # -- TurnRecorder ---------------------------------------------------------------------

    def record_turn(self, turn: Turn) -> None:
        """Record a served turn as SERVED; the same turn again changes nothing, another turn
        under the same key raises ``TurnKeyCollision``."""
        with self._lock:
            existing = self._turns.get(turn.key)
            if existing is not None:
                rules.check_turn_replay(turn.key, _same_turn(existing.record.turn, turn))
                return
            now = self._clock()
            if not turn.created_at:
                turn = dataclasses.replace(turn, created_at=now)
            record = TurnRecord(turn=turn, state=TurnState.SERVED, updated_at=now)
            self._turns[turn.key] = _TurnEntry(record, next(self._seq))
            if turn.client_key:
                self._by_client[turn.client_key] = turn.key

    def last_turn_for_client(self, client_key: str) -> TurnRecord | None:
        """The turn recorded last under this client session key, or None."""
        with self._lock:
            entry = self._turns.get(self._by_client.get(client_key, ""))
            return None if entry is None else entry.record

    def check_writable(self) -> None:
        """Memory is always writable (nothing to probe)."""

    def attach_next_state(self, turn_key: str, next_state: NextState) -> None:
        """SERVED -> OBSERVED with the next state; the first next state attached wins."""
        with self._lock:
            if rules.turn_step(TurnOp.OBSERVE, turn_key, self._state(turn_key)):
                self._update(turn_key, state=TurnState.OBSERVED, next_state=next_state)
                self._turns[turn_key].observed_at = self._clock()

    def discard(self, turn_key: str, reason: str) -> None:
        """Move a turn that has no samples yet to DISCARDED with ``reason``."""
        with self._lock:
            if rules.turn_step(TurnOp.DISCARD, turn_key, self._state(turn_key)):
                self._finish_turn(turn_key, None, None, reason, TurnState.DISCARDED)

    def _finish_turn(
        self, turn_key: str, verdict: Verdict | None, hint: Hint | None, reason: str | None, state: TurnState
    ) -> None:
        entry = self._turns[turn_key]
        turn, next_state = entry.record.turn, entry.record.next_state
        if not self.retention.keep_text:
            turn, next_state = scrub_turn(turn), scrub_next_state(next_state)
            verdict, hint = scrub_verdict(verdict), scrub_hint(hint)
        entry.claim_until = None
        self._update(
            turn_key, turn=turn, next_state=next_state, verdict=verdict, hint=hint, discard_reason=reason, state=state
        )

    # -- signal workers -------------------------------------------------------------------

    def get(self, turn_key: str) -> TurnRecord | None:
        """Everything known about one turn, or None."""
        with self._lock:
            entry = self._turns.get(turn_key)
            return None if entry is None else entry.record

    def claim_observed(self, limit: int, *, owner: str = "", lease_seconds: float | None = None) -> list[TurnRecord]:
        """Claim up to ``limit`` OBSERVED turns, oldest first, that nobody holds a live claim on."""
        now = self._clock()
        until = now + (self.claim_lease_seconds if lease_seconds is None else lease_seconds)
        with self._lock:
            entries = sorted(
                (e for e in self._turns.values() if rules.claimable(e.record.state.value, e.claim_until, now)),
                key=lambda e: e.seq,
            )[: max(limit, 0)]
            for entry in entries:
                entry.claim_until = until
            return [entry.record for entry in entries]

    def release_claims(self, turn_keys: Sequence[str]) -> None:
        """Drop the claims on these turns so any worker may claim them at once."""
        with self._lock:
            for key in turn_keys:
                if key in self._turns:
                    self._turns[key].claim_until = None

    def record_signals(
        self,
        turn_key: str,
        verdict: Verdict | None,
        hint: Hint | None,
        samples: Sequence[TrainingSample],
        *,
        discard_reason: str = "no_signal",
    ) -> None:
        """OBSERVED -> JUDGED -> READY (with ``samples``) or DISCARDED (none), all at once."""
        ids = rules.sample_ids(turn_key, samples)
        for sample in samples:
            rules.validate_sample(turn_key, sample)
        with self._lock:
            if not rules.turn_step(TurnOp.JUDGE, turn_key, self._state(turn_key)):
                return
            turn = self._turns[turn_key].record.turn
            for sample in samples:
                rules.check_sample_source(turn_key, turn.session_id, turn.turn_index, sample)
            now = self._clock()
            for sample_id, sample in zip(ids, samples, strict=True):
                record = SampleRecord(
                    sample=dataclasses.replace(sample, sample_id=sample_id),
                    turn_key=turn_key,
                    state=SampleState.READY,
                    created_at=now,
                    updated_at=now,
                )
                self._samples[sample_id] = _SampleEntry(record, next(self._seq))
            self._by_turn[turn_key] = ids
            reason = None if samples else discard_reason
            self._finish_turn(turn_key, verdict, hint, reason, rules.state_after_signals(samples))

    # -- trainers -------------------------------------------------------------------------

    def drain(self, n: int, consumer: str = "", *, lease_seconds: float | None = None) -> list[TrainingSample]:
        """Lease up to ``n`` READY samples to ``consumer``, oldest first (IN_FLIGHT)."""
        now = self._clock()
        until = now + (self.drain_lease_seconds if lease_seconds is None else lease_seconds)
        with self._lock:
            available = list(
                itertools.islice(
                    (  # dicts keep insertion order: oldest first
                        e
                        for e in self._samples.values()
                        if e.record.state is SampleState.READY
                        or rules.lease_expired(e.record.state.value, e.lease_until, now)
                    ),
                    max(n, 0),
                )
            )
            for entry in available:
                entry.lease_until = until
                entry.record = dataclasses.replace(
                    entry.record,
                    state=SampleState.IN_FLIGHT,
                    consumer=consumer,
                    handed_out=entry.record.handed_out + 1,
                    updated_at=now,
                )
            return [entry.record.sample for entry in available]

    def _settle(self, op: SampleOp, sample_ids: Sequence[str], target: SampleState) -> None:
        with self._lock:
            rules.check_known_samples(sample_ids, set(self._samples))
            now = self._clock()
            turn_keys: set[str] = set()
            for sample_id in dict.fromkeys(sample_ids):
                entry = self._samples[sample_id]
                if rules.sample_step(op, entry.record.state.value):
                    entry.lease_until = None
                    consumer = entry.record.consumer if target is SampleState.CONSUMED else ""
                    entry.record = dataclasses.replace(entry.record, state=target, consumer=consumer, updated_at=now)
                    turn_keys.add(entry.record.turn_key)
            if op is SampleOp.ACK:
                for key in turn_keys:
                    self._consume_turn_if_done(key)

    def _consume_turn_if_done(self, turn_key: str) -> None:
        if self._state(turn_key) != TurnState.READY.value:
            return
        samples = (self._samples[sid].record for sid in self._by_turn.get(turn_key, ()))
        if all(record.state is SampleState.CONSUMED for record in samples):
            self._update(turn_key, state=TurnState.CONSUMED)

    def ack(self, sample_ids: Sequence[str]) -> None:
        """The consumer trained on these samples: CONSUMED, never handed out again."""
        self._settle(SampleOp.ACK, sample_ids, SampleState.CONSUMED)
        if (
            self.retention.delete_consumed_after_hours is not None
            and self._clock() - self._last_purge >= self.retention.purge_interval_seconds
        ):
            self.purge()

    def nack(self, sample_ids: Sequence[str]) -> None:
        """The consumer gives these samples back: READY again (acknowledged ones stay CONSUMED)."""
        self._settle(SampleOp.NACK, sample_ids, SampleState.READY)

    # -- inspection and retention ---------------------------------------------------------

    def stats(self) -> JournalStats:
        """Counts per turn state, per sample state and per method, and the two lags."""
        now = self._clock()
        with self._lock:
            turns = list(self._turns.values())
            samples = [e.record for e in self._samples.values()]
        observed = [e.observed_at or now for e in turns if e.record.state is TurnState.OBSERVED]
        ready = [r.created_at for r in samples if r.state is SampleState.READY]
        return JournalStats.from_counts(
            _count(e.record.state.value for e in turns),
            _count(r.state.value for r in samples),
            _count(r.sample.method.value for r in samples),
            min(observed, default=None),
            min(ready, default=None),
            now,
        )

    def iter_turns(self, state: TurnState | None = None) -> Iterator[TurnRecord]:
        """Turns, oldest first, optionally only those in ``state``."""
        with self._lock:
            entries = sorted(self._turns.values(), key=lambda e: e.seq)
        yield from (e.record for e in entries if state is None or e.record.state is state)

    def iter_samples(self, state: SampleState | None = None) -> Iterator[SampleRecord]:
        """Samples, oldest first, optionally only those in ``state``."""
        with self._lock:
            entries = sorted(self._samples.values(), key=lambda e: e.seq)
        yield from (e.record for e in entries if state is None or e.record.state is state)

    def record_outcome(self, outcome: SessionOutcome) -> bool:
        """Record the session's outcome; False when it already has one (the first stands)."""
        with self._lock:
            if outcome.session_id in self._outcomes:
                return False
            stamped = outcome if outcome.recorded_at else dataclasses.replace(outcome, recorded_at=self._clock())
            self._outcomes[outcome.session_id] = stamped
            return True

    def get_outcome(self, session_id: str) -> SessionOutcome | None:
        """The outcome recorded on ``session_id``, or None."""
        with self._lock:
            return self._outcomes.get(session_id)

    def has_session(self, session_id: str) -> bool:
        """True when a turn of ``session_id`` is held."""
        with self._lock:
            return any(e.record.turn.session_id == session_id for e in self._turns.values())

    def records(self) -> list[TurnRecord]:
        """All turns, oldest first."""
        return list(self.iter_turns())

    def purge(self) -> int:
        """Delete terminal turns (and samples) older than the retention policy allows."""
        now = self._clock()
        self._last_purge = now
        cutoff = self.retention.purge_cutoff(now)
        if cutoff is None:
            return 0
        with self._lock:
            old = [
                key
                for key, e in self._turns.items()
                if e.record.state.value in rules.TERMINAL_TURN_STATES and e.record.updated_at < cutoff
            ]
            for key in old:
                client_key = self._turns.pop(key).record.turn.client_key
                if self._by_client.get(client_key) == key:
                    del self._by_client[client_key]
                for sample_id in self._by_turn.pop(key, ()):
                    del self._samples[sample_id]
            return len(old)

    def close(self) -> None:
        """Nothing to release."""


def _same_turn(a: Turn, b: Turn) -> bool:
    return (a.session_id, a.turn_index, a.prompt_ids, a.response_ids) == (
        b.session_id, b.turn_index, tuple(b.prompt_ids), tuple(b.response_ids))


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
