"""The demo's journal between and around runs: what it accounts for, and what a stopped run left.

``journal_figures`` counts turns and samples (recorded, produced, lost, pending) for the demo's
and ``agents train``'s summaries; ``release_leases`` and ``end_dead_run`` clean up after a
stopped trainer or a killed run; ``settle`` waits for judging to catch up.
"""

from __future__ import annotations

import asyncio
import time

from slime_openclaw.journal.base import JournalStore
from slime_openclaw.types import TurnState


def journal_figures(journal: JournalStore) -> dict[str, int]:
    """Turns recorded, samples produced, samples lost, turns pending, newest version on a turn.

    A turn is accounted for when it is READY/CONSUMED with at least one sample in the
    journal, or DISCARDED with a reason; one still SERVED/OBSERVED/JUDGED is pending;
    anything else is lost.
    """
    sample_turns: set[str] = set()
    samples = 0
    for record in journal.iter_samples():
        samples += 1
        sample_turns.add(record.turn_key)
    turns = lost = pending = newest = 0
    for turn in journal.iter_turns():
        turns += 1
        newest = max([newest, *turn.turn.weight_versions])
        if turn.state in (TurnState.READY, TurnState.CONSUMED):
            lost += turn.turn.key not in sample_turns
        elif turn.state is TurnState.DISCARDED:
            lost += not turn.discard_reason
        else:
            pending += 1
    return {"turns_recorded": turns, "samples_produced": samples, "samples_lost": lost,
            "turns_pending": pending, "max_turn_weight_version": newest}


def release_leases(journal: JournalStore, consumer: str) -> int:
    """Give back the samples a stopped trainer drained and never trained (call after ``resume``)."""
    from slime_openclaw.journal.rules import SampleState

    held = [r.sample.sample_id for r in journal.iter_samples(SampleState.IN_FLIGHT) if r.consumer == consumer]
    if held:
        journal.nack(held)
    return len(held)


def end_dead_run(journal: JournalStore) -> int:
    """Before a restarted run serves: end the stopped run's sessions (its SERVED turns get a
    session end) and drop its judging claims; returns the OBSERVED turns now free. A killed run's claim
    would hold its turn OBSERVED for the claim lease (60 s), past this run's settling wait."""
    from slime_openclaw.live import close_orphans

    close_orphans(journal, idle_s=0.0)
    claimed = [record.turn.key for record in journal.iter_turns(TurnState.OBSERVED)]
    if claimed:  # no worker of this run runs yet: every claim is the dead run's
        journal.release_claims(claimed)
    return len(claimed)


async def settle(journal: JournalStore, timeout_s: float) -> None:
    """Wait until no turn waits for its next state or for judging (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = journal.stats().turns_by_state
        if not sum(stats.get(s.value, 0) for s in (TurnState.SERVED, TurnState.OBSERVED, TurnState.JUDGED)):
            return
        await asyncio.sleep(0.2)
