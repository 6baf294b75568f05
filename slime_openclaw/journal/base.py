"""The journal's interfaces: the only state shared between the serving, signal and
training loops.

``TurnRecorder`` is the slice the gateway uses on the serving path; ``Journal`` adds what
the signal workers and trainers use. Both are synchronous: a journal write is a local
SQLite transaction (well under a millisecond in WAL mode), cheaper than a thread hop.
``JournalStore`` is what both implementations provide on top (claim release, iteration for
``journal export``, retention purge). Implementations: ``MemoryJournal`` (journal/memory.py,
tests and ``--journal :memory:``) and ``SqliteJournal`` (journal/sqlite.py, durable); both
follow the state machine in journal/rules.py. ``journal.location.open_journal`` picks one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from slime_openclaw.journal.rules import SampleState
from slime_openclaw.types import (
    Hint,
    Method,
    NextState,
    SessionOutcome,
    TrainingSample,
    Turn,
    TurnState,
    Verdict,
)


@dataclass(frozen=True)
class TurnRecord:
    """A turn with everything the journal knows about it."""

    turn: Turn
    state: TurnState
    next_state: NextState | None = None
    verdict: Verdict | None = None
    hint: Hint | None = None
    discard_reason: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class JournalStats:
    """Counts for `journal stats` and metrics."""

    turns_by_state: dict[str, int] = field(default_factory=dict)
    samples_by_state: dict[str, int] = field(default_factory=dict)
    samples_by_method: dict[str, int] = field(default_factory=dict)
    judge_lag_seconds: float = 0.0
    """Age of the oldest turn waiting for judging (0 when none)."""
    ready_lag_seconds: float = 0.0
    """Age of the oldest sample waiting for a trainer (0 when none)."""

    @classmethod
    def from_counts(
        cls,
        turns: Mapping[str, int],
        samples: Mapping[str, int],
        methods: Mapping[str, int],
        oldest_observed_at: float | None,
        oldest_ready_at: float | None,
        now: float,
    ) -> JournalStats:
        """Stats with every state and method present (zero when empty), lags from timestamps."""
        return cls(
            turns_by_state={s.value: int(turns.get(s.value, 0)) for s in TurnState},
            samples_by_state={s.value: int(samples.get(s.value, 0)) for s in SampleState},
            samples_by_method={m.value: int(methods.get(m.value, 0)) for m in Method},
            judge_lag_seconds=0.0 if oldest_observed_at is None else max(0.0, now - oldest_observed_at),
            ready_lag_seconds=0.0 if oldest_ready_at is None else max(0.0, now - oldest_ready_at),
        )


@dataclass(frozen=True)
class SampleRecord:
    """A training sample with everything the journal knows about it."""

    sample: TrainingSample
    """The sample, ``sample_id`` set."""
    turn_key: str
    """Key of the turn it came from."""
    state: SampleState
    consumer: str = ""
    """Consumer holding (IN_FLIGHT) or having acknowledged (CONSUMED) it."""
    handed_out: int = 0
    """How many times ``drain`` handed it out (more than 1 only after a nack or expired lease)."""
    created_at: float = 0.0
    updated_at: float = 0.0


class TurnRecorder(Protocol):
    """What the gateway needs: record served turns and attach next states."""

    def record_turn(self, turn: Turn) -> None:
        """Durably record a served turn (state SERVED). Idempotent on ``turn.key`` for the same
        turn; a different turn under a recorded key raises ``TurnKeyCollision``."""
        ...

    def last_turn_for_client(self, client_key: str) -> TurnRecord | None:
        """The turn recorded last under a client's session key (where a reused key resumes)."""
        ...

    def attach_next_state(self, turn_key: str, next_state: NextState) -> None:
        """Attach the next state and move the turn to OBSERVED."""
        ...

    def discard(self, turn_key: str, reason: str) -> None:
        """Move a turn to the terminal DISCARDED state with a reason."""
        ...

    def check_writable(self) -> None:
        """Raise ``JournalStorageError`` unless a write could be committed now (the gateway asks
        while its journal is failing, to find out when it can record again)."""
        ...


class Journal(TurnRecorder, Protocol):
    """The full journal: signal workers and trainers use this."""

    def get(self, turn_key: str) -> TurnRecord | None: ...

    def claim_observed(self, limit: int) -> list[TurnRecord]:
        """Oldest OBSERVED turns not yet being judged (claims expire, so a crash resumes)."""
        ...

    def record_signals(
        self, turn_key: str, verdict: Verdict | None, hint: Hint | None, samples: Sequence[TrainingSample]
    ) -> None:
        """Attach signals and samples in one transaction: JUDGED, then READY or DISCARDED."""
        ...

    def drain(self, n: int, consumer: str = "") -> list[TrainingSample]:
        """Hand out up to ``n`` READY samples, oldest first, each exactly once until returned."""
        ...

    def ack(self, sample_ids: Sequence[str]) -> None:
        """The consumer trained on these samples: CONSUMED."""
        ...

    def nack(self, sample_ids: Sequence[str]) -> None:
        """The consumer gives these samples back: READY again."""
        ...

    def stats(self) -> JournalStats: ...

    def close(self) -> None: ...


class OutcomeStore(Protocol):
    """Session outcomes: the verifiable result of an episode, recorded on its session."""

    def record_outcome(self, outcome: SessionOutcome) -> bool:
        """Record ``outcome`` on its session; False (nothing written) when one is already there.

        The first outcome recorded stands (a replay with the same score is harmless); the
        session need not have turns yet (an outside harness may grade before its last turn lands).
        """
        ...

    def get_outcome(self, session_id: str) -> SessionOutcome | None:
        """The outcome recorded on ``session_id``, or None."""
        ...

    def has_session(self, session_id: str) -> bool:
        """True when at least one turn of ``session_id`` is in the journal."""
        ...


class JournalStore(Journal, OutcomeStore, Protocol):
    """Everything both implementations provide beyond ``Journal``: keyword options on
    claiming, judging and draining, claim release, iteration (``journal export``),
    retention and session outcomes."""

    def claim_observed(self, limit: int, *, owner: str = "", lease_seconds: float | None = None) -> list[TurnRecord]:
        """Claim up to ``limit`` OBSERVED turns for ``owner``; the claim lasts ``lease_seconds``
        (None: the journal's claim lease)."""
        ...

    def record_signals(
        self, turn_key: str, verdict: Verdict | None, hint: Hint | None, samples: Sequence[TrainingSample],
        *, discard_reason: str = "no_signal",
    ) -> None:
        """As ``Journal.record_signals``; ``discard_reason`` is the reason when ``samples`` is empty."""
        ...

    def drain(self, n: int, consumer: str = "", *, lease_seconds: float | None = None) -> list[TrainingSample]:
        """As ``Journal.drain``; the lease lasts ``lease_seconds`` (None: the journal's drain lease)."""
        ...

    def release_claims(self, turn_keys: Sequence[str]) -> None:
        """Give claimed OBSERVED turns back before their lease runs out (e.g. a judge is down)."""
        ...

    def iter_turns(self, state: TurnState | None = None) -> Iterator[TurnRecord]:
        """Turns, oldest first, optionally only those in ``state``."""
        ...

    def iter_samples(self, state: SampleState | None = None) -> Iterator[SampleRecord]:
        """Samples, oldest first, optionally only those in ``state``."""
        ...

    def purge(self) -> int:
        """Apply ``delete_consumed_after_hours`` now; returns how many turns were deleted."""
        ...
