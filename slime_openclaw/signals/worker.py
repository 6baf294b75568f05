"""The signal loop: claim OBSERVED turns from the journal, compute signals, record them.

``SignalWorker`` runs beside the gateway and never touches the serving path. It holds at
most ``concurrency`` turns in memory at once (claimed from the journal only when a slot is
free), so when judging falls behind the work waits in the journal, visible as judge lag,
and is never dropped. A turn whose judge, hint model or teacher is down is given back to the
journal (its claim released once the exponential back-off has passed) and retried; a crash
or a stop leaves claims to expire. Results go to ``record_signals`` in one transaction (JUDGED -> READY, or
DISCARDED with the reason). What to compute per turn is pipeline.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from slime_openclaw.journal.base import TurnRecord
from slime_openclaw.signals.judge import JudgeUnavailable
from slime_openclaw.signals.pipeline import SignalOutcome, SignalPipeline
from slime_openclaw.types import Hint, TrainingSample, Verdict

log = logging.getLogger(__name__)


class SignalJournal(Protocol):
    """The slice of the journal the worker uses (``SqliteJournal`` and ``MemoryJournal``)."""

    def claim_observed(self, limit: int, *, owner: str = "", lease_seconds: float | None = None) -> list[TurnRecord]:
        """Claim up to ``limit`` OBSERVED turns."""
        ...

    def release_claims(self, turn_keys: Sequence[str]) -> None:
        """Give claimed turns back at once."""
        ...

    def record_signals(
        self,
        turn_key: str,
        verdict: Verdict | None,
        hint: Hint | None,
        samples: Sequence[TrainingSample],
        *,
        discard_reason: str = "no_signal",
    ) -> None:
        """Record signals and samples: READY, or DISCARDED with ``discard_reason``."""
        ...


@dataclass
class WorkerCounters:
    """Running totals, for metrics and benchmarks."""

    claimed: int = 0
    ready: int = 0
    """Turns recorded with at least one sample."""
    discarded: int = 0
    """Turns recorded with none."""
    samples: int = 0
    deferred: int = 0
    """Times a turn was given back because a model was down."""
    errors: int = 0
    """Unexpected failures (bugs, journal refusals); the turn is given back too."""
    votes: int = 0
    vote_failures: int = 0
    parse_failures: int = 0
    hints_accepted: int = 0
    teacher_scored: int = 0
    teacher_failures: int = 0
    in_flight: int = 0
    busy_seconds: float = 0.0
    """Sum of per-turn processing times."""

    def snapshot(self) -> dict[str, float]:
        """The counters as a plain dict."""
        return {k: float(v) for k, v in asdict(self).items()}


class SignalWorker:
    """Async loop over OBSERVED turns with bounded concurrency; an async context manager."""

    def __init__(
        self,
        journal: SignalJournal,
        pipeline: SignalPipeline,
        *,
        concurrency: int = 8,
        poll_interval_s: float = 0.25,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        owner: str = "signals",
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.journal = journal
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.owner = owner
        self.counters = WorkerCounters()
        self.backoff_s = 0.0
        """Current back-off (0 while the models answer)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SignalWorker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Start the loop in the running event loop."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="signal-worker")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming; let in-flight turns finish for ``grace_s``, then cancel them.

        A cancelled turn was not recorded; its claim expires and another worker takes it.
        """
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if self.backoff_s > 0:
                await asyncio.sleep(self.backoff_s)
            claimed = self._claim()
            if not claimed:
                self._wake.clear()
                await self._wait_for_wake()

    async def _wait_for_wake(self) -> None:
        """Wait for a free slot or the poll interval. Not ``asyncio.wait_for``: on Python 3.11
        it swallows a cancellation that arrives as the event fires, and ``stop()`` would hang."""
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=self.poll_interval_s)
        finally:
            waiter.cancel()

    def _claim(self) -> int:
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        try:
            records = self.journal.claim_observed(free, owner=self.owner)
        except Exception:  # a journal hiccup must not end the loop; the next poll retries
            log.exception("claiming observed turns failed")
            self.counters.errors += 1
            return 0
        for record in records:
            task = asyncio.create_task(self._process(record))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        self.counters.claimed += len(records)
        return len(records)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def process_available(self) -> int:
        """Claim and process turns until none is left to claim, without the loop (tests, benchmarks).

        Returns the number of turns recorded. Stops early after a round in which a model was
        unavailable (the deferred turns stay OBSERVED); ``counters.deferred`` says so.
        """
        recorded = 0
        while True:
            records = self.journal.claim_observed(self.concurrency, owner=self.owner)
            if not records:
                return recorded
            self.counters.claimed += len(records)
            before = self.counters.ready + self.counters.discarded
            deferred = self.counters.deferred + self.counters.errors
            await asyncio.gather(*(self._process(r) for r in records))
            recorded += self.counters.ready + self.counters.discarded - before
            if self.counters.deferred + self.counters.errors > deferred:
                return recorded

    async def _process(self, record: TurnRecord) -> None:
        key = record.turn.key
        started = time.perf_counter()
        self.counters.in_flight += 1
        try:
            outcome = await self.pipeline.run(record.turn, record.next_state)
            self._record(key, outcome)
            self.backoff_s = 0.0
        except JudgeUnavailable as exc:
            self.counters.deferred += 1
            self._back_off(key, f"model unavailable: {exc.message}")
        except Exception:  # never let one turn end the worker; it is retried later
            log.exception("signals for turn %s failed", key)
            self.counters.errors += 1
            self._back_off(key, "error")
        finally:
            self.counters.in_flight -= 1
            self.counters.busy_seconds += time.perf_counter() - started

    def _record(self, key: str, outcome: SignalOutcome) -> None:
        self._count(outcome)
        self.journal.record_signals(
            key, outcome.verdict, outcome.hint, outcome.samples, discard_reason=outcome.reason or "no_signal"
        )
        if outcome.samples:
            self.counters.ready += 1
            self.counters.samples += len(outcome.samples)
        else:
            self.counters.discarded += 1

    def _count(self, outcome: SignalOutcome) -> None:
        verdict, hint = outcome.verdict, outcome.hint
        if verdict is not None:
            self.counters.votes += len(verdict.votes)
            self.counters.vote_failures += verdict.failures
            self.counters.parse_failures += verdict.parse_failures
        if hint is not None and hint.accepted:
            self.counters.hints_accepted += 1
        if outcome.teacher is not None:
            self.counters.teacher_scored += 1
        self.counters.teacher_failures += sum(1 for e in outcome.errors if e.startswith("teacher"))

    def _back_off(self, key: str, why: str) -> None:
        """Grow the back-off and give the turn back once it has passed (not at once, so that
        turns other models can decide do not keep a dead judge busy)."""
        self.backoff_s = min(self.backoff_max_s, max(self.backoff_initial_s, self.backoff_s * 2))
        log.warning("turn %s deferred (%s); backing off %.1fs", key, why, self.backoff_s)
        asyncio.get_running_loop().call_later(self.backoff_s, self._release, key)

    def _release(self, key: str) -> None:
        try:
            self.journal.release_claims([key])
        except Exception:  # the claim then simply expires
            log.exception("releasing the claim on %s failed", key)
