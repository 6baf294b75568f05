"""Retention and privacy settings of the journal, applied the same way by every implementation.

- ``keep_text=False`` keeps only token ids once text is no longer needed. The signal
  workers judge from text (the request's messages, our reply, the next state), so text is
  kept while a turn waits for judging and dropped in the same transaction that moves it
  to READY or DISCARDED: messages, tool definitions, the parsed reply's content, the next
  state's messages, the judge's rationale and the hint text. Token ids, log-probs,
  versions, scores and votes stay; samples never held text.
- ``delete_consumed_after_hours`` deletes turns in a terminal state (CONSUMED, and
  DISCARDED: they never change again) and their samples once they are that old.

Whether a request is recorded at all (``X-OpenClaw-Train: off``) is decided by the
gateway, which then never calls the journal; this module does not see requests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from slime_openclaw.errors import ConfigError
from slime_openclaw.types import Hint, NextState, Turn, Verdict


@dataclass(frozen=True)
class RetentionPolicy:
    """What the journal keeps, and for how long."""

    keep_text: bool = True
    """False: drop all text once a turn is judged or discarded; keep token ids only."""
    delete_consumed_after_hours: float | None = None
    """Delete CONSUMED and DISCARDED turns (and their samples) this long after they got
    there; None keeps them forever."""
    purge_interval_seconds: float = 300.0
    """How often the journal checks for turns to delete on its own (on ``ack``)."""

    def __post_init__(self) -> None:
        hours = self.delete_consumed_after_hours
        if hours is not None and hours < 0:
            raise ConfigError(f"delete_consumed_after_hours must be >= 0, got {hours}")
        if self.purge_interval_seconds < 0:
            raise ConfigError(f"purge_interval_seconds must be >= 0, got {self.purge_interval_seconds}")

    def purge_cutoff(self, now: float) -> float | None:
        """Terminal turns last updated before this Unix time are deleted; None: keep all."""
        if self.delete_consumed_after_hours is None:
            return None
        return now - self.delete_consumed_after_hours * 3600.0


def scrub_turn(turn: Turn) -> Turn:
    """The turn without text: no messages, tools or reply content; token ids untouched."""
    reply = {"role": turn.response_message.get("role", "assistant")}
    return dataclasses.replace(turn, messages=(), tools=(), response_message=reply)


def scrub_next_state(state: NextState | None) -> NextState | None:
    """The next state without its messages (kind, continuity and time stay)."""
    return None if state is None else dataclasses.replace(state, messages=())


def scrub_verdict(verdict: Verdict | None) -> Verdict | None:
    """The verdict without its rationale (score and votes stay)."""
    return None if verdict is None else dataclasses.replace(verdict, rationale="")


def scrub_hint(hint: Hint | None) -> Hint | None:
    """The hint without its text (acceptance and votes stay)."""
    return None if hint is None else dataclasses.replace(hint, text="")
