"""The journal contract, run against both implementations (in memory and SQLite on disk)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from journal_factories import HINT, VERDICT, FakeClock, make_next_state, make_sample, make_turn

from slime_openclaw.errors import JournalError, TurnKeyCollision
from slime_openclaw.journal.base import JournalStore
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.journal.retention import RetentionPolicy
from slime_openclaw.journal.rules import SampleState
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import Method, NextState, NextStateKind, TurnState


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def make_journal(request, tmp_path, clock):
    opened: list[JournalStore] = []

    def make(**options) -> JournalStore:
        journal: JournalStore
        if request.param == "memory":
            journal = MemoryJournal(clock=clock, **options)
        else:
            journal = SqliteJournal(tmp_path / f"j{len(opened)}.sqlite", clock=clock, **options)
        opened.append(journal)
        return journal

    yield make
    for journal in opened:
        journal.close()


@pytest.fixture
def journal(make_journal) -> Iterator[JournalStore]:
    yield make_journal()


def observed(journal: JournalStore, n: int, session: str = "s") -> list[str]:
    keys = []
    for i in range(n):
        turn = make_turn(session, i)
        journal.record_turn(turn)
        journal.attach_next_state(turn.key, make_next_state())
        keys.append(turn.key)
    return keys


def ready(journal: JournalStore, n: int, methods=(Method.BINARY,)) -> list[str]:
    keys = observed(journal, n)
    for key in keys:
        turn = journal.get(key).turn
        journal.record_signals(key, VERDICT, HINT, [make_sample(turn, m) for m in methods])
    return keys


def test_record_is_exact_and_idempotent(journal, clock):
    turn = make_turn("a", 3)
    journal.record_turn(turn)
    journal.record_turn(dataclasses.replace(turn, model="other"))
    record = journal.get(turn.key)
    assert record.state is TurnState.SERVED
    assert record.turn == dataclasses.replace(turn, created_at=clock.now)
    assert journal.get("nope:0") is None
    assert journal.stats().turns_by_state["served"] == 1


def test_another_turn_under_a_recorded_key_is_a_collision_not_a_silent_drop(journal):
    turn = make_turn("a", 0)
    journal.record_turn(turn)
    other = dataclasses.replace(turn, response_ids=(7, 7, 7), response_log_probs=(-1.0,) * 3, weight_versions=(0,) * 3)
    with pytest.raises(TurnKeyCollision, match="a:0"):
        journal.record_turn(other)
    assert journal.get("a:0").turn.response_ids == turn.response_ids  # the first turn is intact
    assert journal.stats().turns_by_state["served"] == 1


def test_last_turn_for_client_key(journal):
    assert journal.last_turn_for_client("k") is None
    journal.record_turn(dataclasses.replace(make_turn("k", 0), client_key="k"))
    journal.record_turn(make_turn("other", 0))
    journal.record_turn(dataclasses.replace(make_turn("k#1", 0), client_key="k", session_epoch=1))
    last = journal.last_turn_for_client("k")
    assert last is not None and (last.turn.key, last.turn.client_key, last.turn.session_epoch) == ("k#1:0", "k", 1)
    assert journal.last_turn_for_client("other") is None  # matched by history: no client key


def test_next_state_moves_to_observed_once(journal):
    turn = make_turn()
    journal.record_turn(turn)
    journal.attach_next_state(turn.key, make_next_state("first"))
    journal.attach_next_state(turn.key, make_next_state("second"))
    record = journal.get(turn.key)
    assert record.state is TurnState.OBSERVED
    assert record.next_state == make_next_state("first")
    with pytest.raises(JournalError, match="unknown turn"):
        journal.attach_next_state("missing:0", make_next_state())


def test_session_end_without_next_message(journal):
    turn = make_turn()
    journal.record_turn(turn)
    journal.attach_next_state(turn.key, NextState(kind=NextStateKind.SESSION_END))
    assert journal.get(turn.key).next_state.kind is NextStateKind.SESSION_END
    assert [r.turn.key for r in journal.claim_observed(5)] == [turn.key]


def test_claims_are_exclusive_expire_and_release(journal, clock):
    keys = observed(journal, 3)
    first = journal.claim_observed(2, owner="w1", lease_seconds=30)
    assert [r.turn.key for r in first] == keys[:2]
    assert [r.turn.key for r in journal.claim_observed(5, owner="w2")] == keys[2:]
    assert journal.claim_observed(5) == []
    clock.advance(31)  # w1 crashed mid-judging: its turns come back, oldest first
    assert [r.turn.key for r in journal.claim_observed(5, owner="w3")] == keys[:2]
    journal.release_claims([keys[2]])
    assert [r.turn.key for r in journal.claim_observed(5)] == [keys[2]]


def test_signals_make_samples_ready_once(journal):
    (key,) = observed(journal, 1)
    turn = journal.get(key).turn
    samples = [make_sample(turn, Method.BINARY), make_sample(turn, Method.OPD, topk=True)]
    journal.record_signals(key, VERDICT, HINT, samples)
    journal.record_signals(key, VERDICT, HINT, samples)  # a second worker replays: no change
    record = journal.get(key)
    assert (record.state, record.verdict, record.hint) == (TurnState.READY, VERDICT, HINT)
    drained = journal.drain(10, "trainer")
    assert [s.sample_id for s in drained] == [f"{key}:binary", f"{key}:opd"]
    assert drained[1] == dataclasses.replace(samples[1], sample_id=f"{key}:opd")
    assert journal.stats().samples_by_method == {"binary": 1, "opd": 1, "combine": 0}
    assert journal.claim_observed(5) == []


def test_no_samples_discards_with_reason(journal):
    (key,) = observed(journal, 1)
    journal.record_signals(key, None, None, [], discard_reason="judge_failed")
    record = journal.get(key)
    assert (record.state, record.discard_reason) == (TurnState.DISCARDED, "judge_failed")


def test_illegal_moves_raise_and_change_nothing(journal):
    turn = make_turn()
    journal.record_turn(turn)
    with pytest.raises(JournalError, match="cannot judge"):
        journal.record_signals(turn.key, VERDICT, None, [make_sample(turn)])
    journal.attach_next_state(turn.key, make_next_state())
    bad = dataclasses.replace(make_sample(turn), loss_mask=(1,))
    with pytest.raises(JournalError, match="loss_mask"):
        journal.record_signals(turn.key, VERDICT, None, [bad])
    other = dataclasses.replace(make_sample(turn), session_id="other")
    with pytest.raises(JournalError, match="names session"):
        journal.record_signals(turn.key, VERDICT, None, [make_sample(turn, Method.OPD), other])
    assert journal.get(turn.key).state is TurnState.OBSERVED
    assert journal.drain(5) == []
    journal.record_signals(turn.key, VERDICT, None, [make_sample(turn)])
    with pytest.raises(JournalError, match="cannot discard"):
        journal.discard(turn.key, "late")
    served = make_turn("s2", 0)
    journal.record_turn(served)
    journal.discard(served.key, "side turn")
    journal.discard(served.key, "again")
    assert journal.get(served.key).discard_reason == "side turn"


def test_drain_hands_out_oldest_first_exactly_once(journal):
    keys = ready(journal, 5)
    a = journal.drain(2, "a")
    b = journal.drain(10, "b")
    assert [s.sample_id for s in a + b] == [f"{k}:binary" for k in keys]
    assert journal.drain(10, "c") == []
    journal.nack([a[1].sample_id])
    again = journal.drain(10, "c")
    assert [s.sample_id for s in again] == [a[1].sample_id]
    stats = journal.stats()
    assert stats.samples_by_state == {"ready": 0, "in_flight": 5, "consumed": 0}


def test_ack_consumes_sample_and_turn(journal):
    (key,) = ready(journal, 1, methods=(Method.BINARY, Method.OPD))
    binary, opd = journal.drain(2, "t")
    journal.ack([binary.sample_id])
    assert journal.get(key).state is TurnState.READY
    journal.ack([opd.sample_id, opd.sample_id])
    journal.ack([opd.sample_id])
    assert journal.get(key).state is TurnState.CONSUMED
    journal.nack([opd.sample_id])  # returning a consumed sample changes nothing
    assert journal.drain(5) == []
    with pytest.raises(JournalError, match="unknown sample"):
        journal.ack([binary.sample_id, "nope"])
    records = list(journal.iter_samples(SampleState.CONSUMED))
    assert [(r.consumer, r.handed_out) for r in records] == [("t", 1), ("t", 1)]


def test_expired_lease_returns_but_acked_never(journal, clock):
    ready(journal, 2)
    first, second = journal.drain(2, "crashy", lease_seconds=10)
    journal.ack([first.sample_id])
    clock.advance(11)
    assert [s.sample_id for s in journal.drain(5, "next")] == [second.sample_id]
    clock.advance(3600)
    journal.ack([second.sample_id])
    assert journal.drain(5, "next") == []
    assert journal.stats().turns_by_state["consumed"] == 2


def test_stats_and_lag(journal, clock):
    observed(journal, 2)
    clock.advance(7)
    journal.record_turn(make_turn("fresh", 0))
    stats = journal.stats()
    assert stats.turns_by_state == {
        "served": 1,
        "observed": 2,
        "judged": 0,
        "ready": 0,
        "consumed": 0,
        "discarded": 0,
    }
    assert stats.judge_lag_seconds == pytest.approx(7)
    assert stats.ready_lag_seconds == 0


def test_keep_text_false_drops_text_once_judged(make_journal):
    journal = make_journal(retention=RetentionPolicy(keep_text=False))
    keys = observed(journal, 2)
    before = journal.get(keys[0])
    assert before.turn.messages and before.next_state.messages  # the judge still needs them
    journal.record_signals(keys[0], VERDICT, HINT, [make_sample(before.turn)])
    journal.discard(keys[1], "continuity broken")
    for key in keys:
        record = journal.get(key)
        assert record.turn.messages == () and record.turn.tools == ()
        assert record.turn.response_message == {"role": "assistant"}
        assert record.next_state.messages == () and record.next_state.kind is NextStateKind.USER
        assert record.turn.prompt_ids == make_turn("s", int(key.split(":")[1])).prompt_ids
    judged = journal.get(keys[0])
    assert judged.verdict == dataclasses.replace(VERDICT, rationale="")
    assert judged.hint == dataclasses.replace(HINT, text="")


def test_purge_deletes_old_terminal_turns(make_journal, clock):
    journal = make_journal(retention=RetentionPolicy(delete_consumed_after_hours=1.0, purge_interval_seconds=0))
    keys = ready(journal, 3)
    journal.record_turn(make_turn("kept", 0))
    samples = journal.drain(2, "t")
    journal.ack([s.sample_id for s in samples])
    clock.advance(2 * 3600)
    assert journal.purge() == 2
    assert [journal.get(k) is None for k in keys] == [True, True, False]
    assert journal.get("kept:0").state is TurnState.SERVED
    assert [r.sample.sample_id for r in journal.iter_samples()] == [f"{keys[2]}:binary"]
    journal.ack([journal.drain(1, "t")[0].sample_id])  # purges on its own, but this one is fresh
    assert journal.get(keys[2]).state is TurnState.CONSUMED
    clock.advance(2 * 3600)
    assert journal.purge() == 1


def test_iteration_filters_by_state(journal):
    ready(journal, 2)
    journal.record_turn(make_turn("x", 0))
    assert [r.turn.key for r in journal.iter_turns(TurnState.SERVED)] == ["x:0"]
    assert len(list(journal.iter_turns())) == 3
    journal.drain(1, "t")
    assert [r.state for r in journal.iter_samples()] == [SampleState.IN_FLIGHT, SampleState.READY]
