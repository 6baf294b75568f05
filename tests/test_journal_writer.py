"""journal/writer.py and SqliteJournal.batch: the gateway's journal writes off the event loop, grouped."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from journal_factories import make_next_state, make_turn

from slime_openclaw.errors import JournalError, JournalStorageError
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.journal.writer import JournalWriter, Write
from slime_openclaw.types import TurnState


def test_batch_commits_together_and_a_failing_write_rolls_back_alone(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        first, second = make_turn("s", 0), make_turn("s", 1)
        with journal.batch():
            journal.record_turn(first)
            with pytest.raises(JournalError), journal._tx.write() as conn:
                conn.execute("UPDATE turns SET state = 'OBSERVED' WHERE turn_key = ?", (first.key,))
                conn.execute("INSERT INTO no_such_table VALUES (1)")
            journal.record_turn(second)
            journal.attach_next_state(second.key, make_next_state())
        records = [journal.get(first.key), journal.get(second.key)]
        assert [r.state for r in records if r] == [TurnState.SERVED, TurnState.OBSERVED]


def test_other_threads_wait_for_a_batch(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        seen = []
        with journal.batch():
            journal.record_turn(make_turn("s", 0))
            reader = threading.Thread(target=lambda: seen.append(journal.get("s:0")))
            reader.start()
            reader.join(0.2)
            assert reader.is_alive()  # blocked behind the open transaction
        reader.join(5)
        assert seen and seen[0] is not None and seen[0].state is TurnState.SERVED


async def test_writes_of_one_loop_iteration_apply_in_order_in_one_transaction(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        results: list[tuple[str, str, BaseException | None]] = []
        writer = JournalWriter(journal, lambda w, e: results.append((w.what, w.turn_key, e)), max_batch=100)
        assert writer.batched
        turns = [make_turn("s", i) for i in range(60)]
        futures = []
        for turn in turns:
            futures.append(writer.submit(Write("record_turn", turn.key, lambda t=turn: journal.record_turn(t))))
            futures.append(writer.submit(Write("attach_next_state", turn.key,
                                               lambda t=turn: journal.attach_next_state(t.key, make_next_state()))))
        assert journal.get(turns[0].key) is None  # nothing written before the loop runs again
        assert [await f for f in futures] == [None] * 120
        assert [(w, k) for w, k, _ in results] == [(w, t.key) for t in turns for w in ("record_turn",
                                                                                       "attach_next_state")]
        assert writer.batches == 2  # 120 writes, at most 100 per transaction
        assert all(journal.get(t.key).state is TurnState.OBSERVED for t in turns)  # type: ignore[union-attr]


async def test_a_failed_write_is_reported_and_the_others_still_commit(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        errors: dict[str, BaseException | None] = {}
        writer = JournalWriter(journal, lambda w, e: errors.__setitem__(w.turn_key, e))

        def broken() -> None:
            raise JournalError("disk full")

        good = make_turn("s", 0)
        ok = writer.submit(Write("record_turn", good.key, lambda: journal.record_turn(good)))
        bad = writer.submit(Write("record_turn", "s:1", broken))
        assert await ok is None and str(await bad) == "disk full"
        assert errors[good.key] is None and isinstance(errors["s:1"], JournalError)
        assert journal.get(good.key) is not None
        assert writer.batches == 1


async def test_flush_applies_everything_queued(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        writer = JournalWriter(journal, lambda w, e: None)
        for i in range(20):
            turn = make_turn("s", i)
            writer.submit(Write("record_turn", turn.key, lambda t=turn: journal.record_turn(t)))
        await writer.flush()
        assert journal.stats().turns_by_state.get(TurnState.SERVED.value, 0) == 20


async def test_a_failed_commit_fails_every_write_of_the_batch(tmp_path):
    class CommitFails(MemoryJournal):
        def batch(self):  # a transaction whose commit fails
            return _FailingCommit()

    class _FailingCommit:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            raise JournalError("commit failed")

    journal = CommitFails()
    writer = JournalWriter(journal, lambda w, e: None)
    turns = [make_turn("s", i) for i in range(3)]
    futures = [writer.submit(Write("record_turn", t.key, lambda t=t: journal.record_turn(t))) for t in turns]
    assert [str(await f) for f in futures] == ["commit failed"] * 3


async def test_recorders_without_batch_are_called_inline():
    journal = MemoryJournal()
    outcomes: list[BaseException | None] = []
    writer = JournalWriter(journal, lambda w, e: outcomes.append(e))
    assert not writer.batched
    turn = make_turn("s", 0)
    done = writer.submit(Write("record_turn", turn.key, lambda: journal.record_turn(turn)))
    assert done.done() and done.result() is None
    assert journal.get(turn.key) is not None and outcomes == [None]
    await writer.flush()


async def test_sqlite_full_in_a_batch_reports_exactly_what_committed(tmp_path):
    """SQLITE_FULL (SQLite's page limit) in the middle of a batch: a write reported committed is
    in the journal and a write reported failed is not, whether SQLite rolled back one statement
    or the whole transaction."""
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
        journal._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        writer = JournalWriter(journal, lambda w, e: None)
        small = [make_turn("s", i) for i in range(3)]
        big = dataclasses.replace(make_turn("s", 3), prompt_ids=tuple(range(20_000)))
        futures = [writer.submit(Write("record_turn", t.key, lambda t=t: journal.record_turn(t)))
                   for t in [small[0], big, small[1], small[2]]]
        outcomes = [await f for f in futures]
        assert isinstance(outcomes[1], JournalStorageError)
        for turn, outcome in zip([small[0], big, small[1], small[2]], outcomes, strict=True):
            assert (journal.get(turn.key) is not None) == (outcome is None)
        assert journal._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_batches_run_bare_and_only_a_failed_one_is_redone_with_savepoints(tmp_path):
    """No savepoint per write while every write succeeds; a batch with a failing write is rolled
    back and applied again with one savepoint per write (the other writes still commit)."""
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        statements: list[str] = []
        journal._conn.set_trace_callback(statements.append)
        writer = JournalWriter(journal, lambda w, e: None)
        assert writer.bare
        turns = [make_turn("s", i) for i in range(4)]
        futures = [writer.submit(Write("record_turn", t.key, lambda t=t: journal.record_turn(t))) for t in turns[:2]]
        assert [await f for f in futures] == [None, None]
        assert not [s for s in statements if s.startswith("SAVEPOINT")]
        assert sum(s == "COMMIT" for s in statements) == 1

        def broken() -> None:
            raise JournalError("disk full")

        statements.clear()
        futures = [writer.submit(Write("record_turn", turns[2].key, lambda: journal.record_turn(turns[2]))),
                   writer.submit(Write("record_turn", "s:9", broken)),
                   writer.submit(Write("record_turn", turns[3].key, lambda: journal.record_turn(turns[3])))]
        outcomes = [await f for f in futures]
        assert outcomes[0] is None and outcomes[2] is None and str(outcomes[1]) == "disk full"
        # one rollback of the bare try; then a savepoint for each write that reaches the journal
        assert statements.count("ROLLBACK") == 1 and sum(s.startswith("SAVEPOINT") for s in statements) == 2
        assert all(journal.get(t.key) is not None for t in turns)
        assert writer.batches == 2
