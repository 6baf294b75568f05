"""The signal worker over a real SQLite journal: per-method outcomes, a dead judge that only
delays samples, bounded concurrency, and stopping with turns in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_signals_fakes import (
    CharRenderer,
    ScoringEngine,
    ScriptedGenerator,
    Slow,
    make_turn,
    tool_next,
    user_next,
)

from slime_openclaw.errors import JudgeError
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.signals.config import SignalsConfig, build_pipeline
from slime_openclaw.signals.pipeline import SignalPipeline
from slime_openclaw.signals.worker import SignalWorker
from slime_openclaw.types import Method, NextState, NextStateKind, TurnState
from tests.waiting import eventually

FAST = {"vote_timeout_s": 0.5, "vote_retries": 0, "retry_backoff_s": 0.0}


@pytest.fixture
def journal(tmp_path: Path):
    store = SqliteJournal(tmp_path / "journal.db", claim_lease_seconds=30.0)
    try:
        yield store
    finally:
        store.close()


def pipeline(method: Method, generator, engine=None, **overrides) -> SignalPipeline:
    config = SignalsConfig.from_mapping({"method": method.value, "judge_votes": 1, "hint_votes": 1, **FAST, **overrides})
    return build_pipeline(config, CharRenderer(), generator, engine)


def observe(journal, index: int, next_state: NextState | None, **turn_args) -> str:
    turn = make_turn(session_id="s", turn_index=index, **turn_args)
    journal.record_turn(turn)
    if next_state is None:
        next_state = NextState(kind=NextStateKind.SESSION_END)
    journal.attach_next_state(turn.key, next_state)
    return turn.key


async def test_combine_records_ready_and_discarded_turns(journal) -> None:
    gen = ScriptedGenerator(["nothing to learn \\boxed{-1}"])
    engine = ScoringEngine()
    keys = [
        observe(journal, 0, user_next("Thanks! next one")),  # rule: +1; no correction, the model gives no hint
        observe(journal, 1, user_next("No, I meant 3+3.")),  # rule: -1; correction hint -> teacher
        observe(journal, 2, None),  # session ended: no next state
        observe(journal, 3, tool_next('{"exit_code": 1}')),  # rule: -1
    ]
    pipe = pipeline(Method.COMBINE, gen, engine)
    worker = SignalWorker(journal, pipe, concurrency=4)
    assert await worker.process_available() == 4

    states = {k: journal.get(k).state for k in keys}
    assert states == {
        keys[0]: TurnState.READY, keys[1]: TurnState.READY, keys[2]: TurnState.DISCARDED, keys[3]: TurnState.READY
    }
    assert journal.get(keys[2]).discard_reason == "no next state"
    samples = {s.turn_index: s for s in journal.drain(10)}
    assert samples[0].reward == 1.0 and samples[0].teacher_log_probs is None
    assert samples[1].reward == -1.0 and samples[1].teacher_log_probs is not None
    assert samples[3].reward == -1.0 and samples[3].teacher_log_probs is None
    record = journal.get(keys[1])
    assert record.hint is not None and record.hint.source == "rule:correction" and record.verdict.score == -1
    n = len(samples[1].response_ids)
    start = len(engine.requests[0].input_ids) - n
    assert samples[1].teacher_log_probs == tuple(
        ScoringEngine.log_prob(start + j, samples[1].response_ids[j]) for j in range(n)
    )
    assert len(gen.calls) == 2 and all("[HINT]" in c[1]["content"] for c in gen.calls), "rules gave every verdict"
    assert worker.counters.ready == 3 and worker.counters.discarded == 1 and worker.counters.teacher_scored == 1


async def test_binary_neutral_verdict_is_discarded(journal) -> None:
    key = observe(journal, 0, user_next("Hmm, what about 3+3?"))
    worker = SignalWorker(journal, pipeline(Method.BINARY, ScriptedGenerator(["no idea \\boxed{0}"])))
    await worker.process_available()
    record = journal.get(key)
    assert record.state is TurnState.DISCARDED and record.discard_reason == "no evaluative signal"
    assert record.verdict is not None and record.verdict.votes == (0,)


async def test_dead_judge_delays_but_never_loses_turns(journal) -> None:
    gen = ScriptedGenerator([JudgeError("connection refused")])
    worker = SignalWorker(
        journal, pipeline(Method.BINARY, gen, judge="llm"), concurrency=2, poll_interval_s=0.01,
        backoff_initial_s=0.05, backoff_max_s=0.1,
    )
    keys = [observe(journal, i, user_next(f"question {i}?")) for i in range(3)]
    async with worker:
        await eventually(lambda: worker.counters.deferred >= 2, "two deferrals while the judge is down")
        assert worker.backoff_s > 0
        assert all(journal.get(k).state is TurnState.OBSERVED for k in keys)
        assert journal.stats().judge_lag_seconds > 0
        gen.steps = ["\\boxed{-1}"]  # the judge comes back
        await eventually(lambda: all(journal.get(k).state is TurnState.READY for k in keys),
                         "every turn READY once the judge is back")
    assert worker.backoff_s == 0.0 and worker.counters.ready == 3
    assert sorted(s.reward for s in journal.drain(10)) == [-1.0, -1.0, -1.0]


async def test_dead_teacher_defers_opd_turns(journal) -> None:
    key = observe(journal, 0, user_next("No, I meant in Celsius."))
    engine = ScoringEngine(fail=True)
    worker = SignalWorker(journal, pipeline(Method.OPD, None, engine, hint="rules"), backoff_initial_s=0.2)
    assert await asyncio.wait_for(worker.process_available(), 5) == 0, "stops at the first deferral"
    assert journal.get(key).state is TurnState.OBSERVED and worker.counters.deferred == 1
    assert len(engine.requests) == 1, "one attempt (retries are 0 here)"
    assert journal.claim_observed(1, lease_seconds=0.0) == [], "held during the back-off"
    await eventually(lambda: journal.claim_observed(1), "the turn given back once the back-off passed")


async def test_concurrency_is_bounded_and_everything_is_judged(journal) -> None:
    active = peak = 0

    class Counting(ScriptedGenerator):
        async def complete(self, messages):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                return await super().complete(messages)
            finally:
                active -= 1

    gen = Counting([Slow(0.05, "\\boxed{1}")])
    keys = [observe(journal, i, user_next(f"next {i}?")) for i in range(7)]
    async with SignalWorker(journal, pipeline(Method.BINARY, gen), concurrency=2, poll_interval_s=0.01) as worker:
        await eventually(lambda: worker.counters.ready == 7, "all seven turns READY")
    assert peak == 2 and worker.counters.ready == 7 and worker.counters.claimed == 7
    assert all(journal.get(k).state is TurnState.READY for k in keys)


async def test_stop_with_turns_in_flight_leaves_them_observed(journal) -> None:
    key = observe(journal, 0, user_next("next?"))
    worker = SignalWorker(journal, pipeline(Method.BINARY, ScriptedGenerator([Slow(5.0, "\\boxed{1}")]), vote_timeout_s=10))
    worker.start()
    await eventually(lambda: worker.counters.in_flight, "a turn in flight")
    await worker.stop(grace_s=0.05)
    assert journal.get(key).state is TurnState.OBSERVED, "a cancelled turn is not recorded"
