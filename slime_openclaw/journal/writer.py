"""``JournalWriter``: the gateway's journal writes grouped into one transaction per loop iteration.

A served turn costs the journal two writes (the previous turn's next state, this turn's
record). Made one by one, each is a SQLite transaction with its own commit. The writer
queues the writes that requests submit during one event-loop iteration and applies them at
the start of the next, in submission order, in one transaction when the recorder offers
``batch()`` (``SqliteJournal`` does: one commit for many writes, each its own savepoint, so
one failing write rolls back alone). A recorder that offers bare batches (``bare_batches``:
``batch(savepoints=False)``, two statements less per write) gets each batch that way first;
only a batch in which a write failed is rolled back and applied again with a savepoint per
write, so the outcome of every write is the same either way.

Why not a writer thread: SQLite would run without the GIL, but under load the thread has to
win the GIL back from a busy event loop after every statement (CPython hands it over only
every ``sys.getswitchinterval()``, 5 ms), and each answer waits for its commit; measured in
``benchmarks/gateway_overhead.py``, that cost more latency than it saved CPU.

A write's outcome: ``on_result(write, error)`` once per write, in order, and the future
``submit`` returned resolves with it (None when the write is committed, else the error). The gateway awaits a turn's record before the final
chunk of its answer leaves, so an answer a client received is in the journal whatever
happens to the process afterwards; when the commit fails, the client gets an error instead.

Recorders without ``batch()`` (the in-memory journal) are called at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.journal.base import TurnRecorder


@dataclass
class Write:
    """One journal write: what it is (for metrics and logs), the turn, and the call."""

    what: str
    turn_key: str
    call: Callable[[], None]
    label: str = ""
    """What the caller wants to count on success (e.g. the next state's kind)."""
    done: asyncio.Future[BaseException | None] | None = field(default=None, repr=False)


Results = Callable[[Write, BaseException | None], None]


class JournalWriter:
    """Applies journal writes in submission order, those of one loop iteration in one transaction."""

    def __init__(self, recorder: TurnRecorder, on_result: Results, *, max_batch: int = 256):
        self.recorder = recorder
        self.on_result = on_result
        self.max_batch = max_batch
        self.batched = callable(getattr(recorder, "batch", None))
        self.bare = self.batched and getattr(recorder, "bare_batches", False) is True
        self._pending: list[Write] = []
        self._scheduled = False
        self.batches = 0
        """Transactions committed (for tests and benchmarks)."""

    def submit(self, write: Write) -> asyncio.Future[BaseException | None]:
        """Queue ``write``; the future resolves with None once it is committed, or with the error."""
        loop = asyncio.get_running_loop()
        write.done = loop.create_future()
        if not self.batched:
            self._deliver([write], [_apply_one(write)])
            return write.done
        self._pending.append(write)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._apply_pending)
        return write.done

    async def flush(self) -> None:
        """Return once every write submitted so far has been applied."""
        self.apply_now()

    def apply_now(self) -> None:
        """Apply what is queued, now (shutdown, tests)."""
        while self._pending:
            self._apply_pending()

    def _apply_pending(self) -> None:
        self._scheduled = False
        writes, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        if self._pending:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._apply_pending)
        if writes:
            self._deliver(writes, self._apply_batch(writes))

    def _apply_batch(self, writes: Sequence[Write]) -> list[BaseException | None]:
        if self.bare:
            try:
                with self.recorder.batch(savepoints=False):  # type: ignore[attr-defined]
                    for write in writes:
                        write.call()
            except Exception:  # one failed (or the commit did): nothing of it happened; again, one by one
                pass
            else:
                self.batches += 1
                return [None] * len(writes)
        batch: Callable[[], AbstractContextManager[Any]] = getattr(self.recorder, "batch", nullcontext)
        try:
            with batch():
                results = [_apply_one(w) for w in writes]
        except Exception as exc:  # the commit failed: none of them happened
            return [exc] * len(writes)
        self.batches += 1
        return results

    def _deliver(self, writes: Sequence[Write], results: Sequence[BaseException | None]) -> None:
        for write, error in zip(writes, results, strict=True):
            self.on_result(write, error)
            if write.done is not None and not write.done.done():
                write.done.set_result(error)


def _apply_one(write: Write) -> BaseException | None:
    try:
        write.call()
    except Exception as exc:
        return exc
    return None
