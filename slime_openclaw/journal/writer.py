"""``JournalWriter``: the gateway's journal writes, off the event loop and grouped into transactions.

A served turn costs the journal two writes (the previous turn's next state, this turn's
record). Run on the event loop, each is a SQLite transaction that every other request
waits behind. The writer applies them on one background thread instead, in the order they
were submitted; whatever queued up meanwhile goes into one transaction when the recorder
offers ``batch()`` (``SqliteJournal`` does: one commit for many writes, each its own
savepoint). SQLite does its work without the GIL, so the loop keeps serving.

A write's outcome comes back on the event loop: ``on_result(write, error)`` once per write,
in order, and the awaitable that ``submit`` returned resolves with it. The gateway awaits a
turn's record before the final chunk of its answer leaves, so an answer a client received
is in the journal whatever happens to the process afterwards.

Recorders without ``batch()`` (the in-memory journal) are called inline: no thread, results
at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.journal.base import TurnRecorder

log = logging.getLogger(__name__)


@dataclass
class Write:
    """One journal write: what it is (for metrics and logs), the turn, and the call."""

    what: str
    turn_key: str
    call: Callable[[], None]
    label: str = ""
    """What the caller wants to count on success (e.g. the next state's kind)."""
    done: asyncio.Future[bool] | None = field(default=None, repr=False)


Results = Callable[[Write, BaseException | None], None]


class JournalWriter:
    """Applies journal writes in submission order, on a thread when the recorder batches."""

    def __init__(self, recorder: TurnRecorder, on_result: Results, *, max_batch: int = 256):
        self.recorder = recorder
        self.on_result = on_result
        self.max_batch = max_batch
        self.threaded = callable(getattr(recorder, "batch", None))
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.batches = 0
        """Transactions committed by the thread (for tests and benchmarks)."""

    def submit(self, write: Write) -> asyncio.Future[bool]:
        """Queue ``write``; the future resolves True once it is applied (False when it failed)."""
        loop = asyncio.get_running_loop()
        write.done = loop.create_future()
        if not self.threaded:
            self._deliver([write], [_apply_one(write)])
            return write.done
        self._ensure_thread(loop)
        self._queue.put(write)
        return write.done

    async def flush(self) -> None:
        """Return once every write submitted so far has been applied."""
        if not self.threaded or self._thread is None:
            return
        marker = Write("flush", "", lambda: None)
        await self.submit(marker)

    def close(self, timeout: float = 30.0) -> None:
        """Apply what is queued and stop the thread (results of those writes are not delivered
        if the loop no longer runs)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            if thread.is_alive():
                log.error("journal writer did not finish its queue within %.0fs", timeout)

    def _ensure_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._loop = loop
                self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            writes: list[Write] = []
            item = self._queue.get()
            while item is not None:
                writes.append(item)
                if len(writes) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            if writes:
                self._apply_batch(writes)

    def _apply_batch(self, writes: Sequence[Write]) -> None:
        batch: Callable[[], AbstractContextManager[Any]] = getattr(self.recorder, "batch", nullcontext)
        results: list[BaseException | None] = []
        try:
            with batch():
                results = [_apply_one(w) for w in writes]
            self.batches += 1
        except Exception as exc:  # the commit failed: none of them happened
            results = [exc] * len(writes)
        loop = self._loop
        if loop is None or loop.is_closed():
            _log_undelivered(writes, results)
            return
        try:
            loop.call_soon_threadsafe(self._deliver, writes, results)
        except RuntimeError:  # the loop closed in between
            _log_undelivered(writes, results)

    def _deliver(self, writes: Sequence[Write], results: Sequence[BaseException | None]) -> None:
        for write, error in zip(writes, results, strict=True):
            if write.what != "flush":
                self.on_result(write, error)
            if write.done is not None and not write.done.done():
                write.done.set_result(error is None)


def _apply_one(write: Write) -> BaseException | None:
    try:
        write.call()
    except Exception as exc:
        return exc
    return None


def _log_undelivered(writes: Sequence[Write], results: Sequence[BaseException | None]) -> None:
    for write, error in zip(writes, results, strict=True):
        if error is not None:
            log.error("journal %s failed for turn %s after the gateway stopped: %s", write.what, write.turn_key,
                      error)
