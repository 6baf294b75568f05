"""Whether the gateway's journal can record right now, as the serving path and ``/healthz`` see it.

A storage failure of any journal write (``JournalStorageError``: disk full, I/O error) marks
the journal failing; a later write that commits marks it ok again. While it is failing, a
request that would be recorded first asks the journal whether it can commit now
(``check_writable``: free space, page limit, a probe commit; at most every
``probe_interval`` seconds) and, when it cannot, gets 503 with ``Retry-After`` before the
engine is called; ``/healthz`` asks the same question. So serving resumes on its own once
there is space again, and no answer is generated that could not be recorded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from slime_openclaw.errors import JournalError, JournalStorageError, OpenClawError, UnavailableError
from slime_openclaw.journal.base import TurnRecorder

log = logging.getLogger(__name__)


@dataclass
class JournalHealth:
    """The journal's state on the serving path: ok, or failing with a reason (never user text)."""

    recorder: TurnRecorder
    clock: Callable[[], float] = time.monotonic
    probe_interval: float = 0.5
    """Seconds between ``check_writable`` probes while failing."""
    retry_after: float = 1.0
    """Seconds suggested in ``Retry-After`` while failing."""
    error: str | None = None
    """Why the journal is failing; None while it is ok."""
    _last_probe: float = -math.inf

    @property
    def ok(self) -> bool:
        """True unless the last write or probe found the storage failing."""
        return self.error is None

    def failed(self, error: BaseException) -> None:
        """A journal write failed: a storage failure marks the journal failing."""
        if isinstance(error, JournalStorageError):
            if self.error is None:
                log.error("journal is failing: %s", error.message)
            self.error = error.message
            self._last_probe = self.clock()

    def succeeded(self) -> None:
        """A journal write committed: the journal is ok."""
        if self.error is not None:
            log.warning("journal recovered")
        self.error = None

    def check(self) -> bool:
        """Whether the journal can record now (probes it while failing, at most every ``probe_interval``)."""
        if self.error is None:
            return True
        now = self.clock()
        if now - self._last_probe < self.probe_interval:
            return False
        self._last_probe = now
        try:
            self.recorder.check_writable()
        except JournalError as exc:
            self.error = exc.message
            return False
        self.succeeded()
        return True

    def require(self) -> None:
        """Raise 503 ``journal_unavailable`` unless the journal can record now."""
        if not self.check():
            raise UnavailableError("the journal cannot record answers right now (its storage is failing); "
                                   "retry shortly", code="journal_unavailable", retry_after=self.retry_after)

    def unrecorded(self, error: BaseException) -> OpenClawError:
        """The error a client gets instead of an answer whose turn could not be recorded."""
        if isinstance(error, JournalStorageError):
            return UnavailableError("this answer could not be recorded (the journal's storage is failing); "
                                    "retry shortly", code="journal_unavailable", retry_after=self.retry_after)
        return JournalError("this answer could not be recorded", code="journal_error")
