"""What only the SQLite journal promises: the file survives reopening, is shared safely, refuses foreign files."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import threading
import time

import pytest
from journal_factories import HINT, VERDICT, make_next_state, make_sample, make_turn

from slime_openclaw.errors import JournalError
from slime_openclaw.journal.schema import SCHEMA_VERSION
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import Method, TurnState


def fill(journal: SqliteJournal, n: int, session: str = "s") -> list[str]:
    keys = []
    for i in range(n):
        turn = make_turn(session, i)
        journal.record_turn(turn)
        journal.attach_next_state(turn.key, make_next_state())
        journal.record_signals(turn.key, VERDICT, HINT, [make_sample(turn, Method.COMBINE, topk=True)])
        keys.append(turn.key)
    return keys


def test_reopen_gives_back_everything(tmp_path):
    path = tmp_path / "deep" / "dir" / "journal.sqlite"
    with SqliteJournal(path) as journal:
        keys = fill(journal, 3)
        journal.record_turn(make_turn("open", 0))
        before = [journal.get(k) for k in [*keys, "open:0"]]
        leased = journal.drain(1, "t")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with SqliteJournal(path, create=False) as journal:
        assert [journal.get(k) for k in [*keys, "open:0"]] == before
        assert journal.schema_version == SCHEMA_VERSION
        rest = journal.drain(10, "t")
        assert [s.sample_id for s in leased + rest] == [f"{k}:combine" for k in keys]
        assert rest[0].teacher_topk_log_probs == make_sample(make_turn("s", 1), Method.COMBINE, topk=True).teacher_topk_log_probs


def test_wal_and_synchronous_settings(tmp_path):
    path = tmp_path / "j.sqlite"
    with SqliteJournal(path) as journal:
        journal.record_turn(make_turn())
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()
    with SqliteJournal(path, synchronous="full") as journal:
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(JournalError, match="synchronous"):
        SqliteJournal(path, synchronous="sometimes")


def test_refuses_missing_foreign_and_newer_files(tmp_path):
    with pytest.raises(JournalError, match="no journal"):
        SqliteJournal(tmp_path / "missing.sqlite", create=False)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all, just some bytes" * 100)
    with pytest.raises(JournalError, match="garbage.sqlite"):
        SqliteJournal(garbage)
    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="not a slime-openclaw journal"):
        SqliteJournal(foreign)
    newer = tmp_path / "newer.sqlite"
    SqliteJournal(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="newer"):
        SqliteJournal(newer)


def test_a_version_1_journal_migrates_and_keeps_its_turns(tmp_path):
    path = tmp_path / "v1.sqlite"
    with SqliteJournal(path) as journal:
        journal.record_turn(make_turn("old", 0))
    conn = sqlite3.connect(path)  # back to the v1 layout: no client_key column, no session outcomes
    conn.execute("DROP TABLE session_outcomes")
    conn.execute("DROP INDEX turns_by_session")
    conn.execute("DROP INDEX turns_by_client_key")
    conn.execute("ALTER TABLE turns DROP COLUMN client_key")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    with SqliteJournal(path, create=False) as journal:
        assert journal.schema_version == SCHEMA_VERSION
        assert journal.get("old:0") is not None
        journal.record_turn(dataclasses.replace(make_turn("k", 0), client_key="k"))
        assert journal.last_turn_for_client("k").turn.key == "k:0"


def test_two_connections_drain_exactly_once(tmp_path):
    path = tmp_path / "j.sqlite"
    with SqliteJournal(path) as journal:
        fill(journal, 60)
    got: dict[str, list[str]] = {"a": [], "b": []}

    def consume(name: str) -> None:
        with SqliteJournal(path) as own:
            while batch := own.drain(2, name):
                got[name].extend(s.sample_id for s in batch)
                own.ack([s.sample_id for s in batch])

    threads = [threading.Thread(target=consume, args=(name,)) for name in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    everything = got["a"] + got["b"]
    assert len(everything) == 60 == len(set(everything))
    with SqliteJournal(path) as journal:
        assert journal.stats().turns_by_state[TurnState.CONSUMED.value] == 60


def test_threads_share_one_journal(tmp_path):
    errors: list[BaseException] = []
    with SqliteJournal(tmp_path / "j.sqlite") as journal:

        def serve(session: str) -> None:
            try:
                for i in range(40):
                    turn = make_turn(session, i)
                    journal.record_turn(turn)
                    journal.attach_next_state(turn.key, make_next_state())
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        def judge() -> None:
            try:
                for _ in range(200):
                    for record in journal.claim_observed(5, owner="judge"):
                        journal.record_signals(record.turn.key, VERDICT, None, [make_sample(record.turn)])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=serve, args=(f"s{i}",)) for i in range(3)]
        threads.append(threading.Thread(target=judge))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for record in journal.claim_observed(1000):
            journal.record_signals(record.turn.key, VERDICT, None, [make_sample(record.turn)])
        assert errors == []
        assert journal.stats().turns_by_state["ready"] == 120
        assert len(journal.drain(1000)) == 120


def test_prompt_shared_with_turn_is_stored_once(tmp_path):
    path = tmp_path / "j.sqlite"
    turn = make_turn()
    same = make_sample(turn, Method.BINARY)
    shorter = dataclasses.replace(make_sample(turn, Method.OPD), prompt_ids=turn.prompt_ids[1:])
    with SqliteJournal(path) as journal:
        journal.record_turn(turn)
        journal.attach_next_state(turn.key, make_next_state())
        journal.record_signals(turn.key, VERDICT, None, [same, shorter])
        conn = sqlite3.connect(path)
        try:
            stored = conn.execute("SELECT prompt_ids IS NULL FROM samples ORDER BY seq").fetchall()
        finally:
            conn.close()
        assert stored == [(1,), (0,)]
        drained = journal.drain(5)
        assert [s.prompt_ids for s in drained] == [turn.prompt_ids, turn.prompt_ids[1:]]


def test_background_checkpoints_move_the_wal_into_the_file(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = SqliteJournal(path, checkpoint_interval_seconds=0.05)
    try:
        size_before = path.stat().st_size
        fill(journal, 30)
        deadline = time.monotonic() + 10
        while path.stat().st_size == size_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > size_before
    finally:
        journal.close()
    assert not [t for t in threading.enumerate() if t.name == "journal-checkpoint"]


def test_iteration_pages_through_large_journals(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        for i in range(450):
            journal.record_turn(make_turn("big", i, n_prompt=2, n_response=1))
        journal.attach_next_state("big:7", make_next_state())
        assert [r.turn.turn_index for r in journal.iter_turns()] == list(range(450))
        assert [r.turn.key for r in journal.iter_turns(TurnState.OBSERVED)] == ["big:7"]
        assert len(list(journal.iter_turns(TurnState.SERVED))) == 449


def test_failed_write_rolls_back_whole_transaction(tmp_path):
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        first, second = make_turn("a", 0), make_turn("b", 0)
        for turn in (first, second):
            journal.record_turn(turn)
            journal.attach_next_state(turn.key, make_next_state())
        journal.record_signals(first.key, VERDICT, None, [dataclasses.replace(make_sample(first), sample_id="taken")])
        clash = [make_sample(second, Method.OPD), dataclasses.replace(make_sample(second), sample_id="taken")]
        with pytest.raises(JournalError, match="UNIQUE"):
            journal.record_signals(second.key, VERDICT, None, clash)
        assert journal.get(second.key).state is TurnState.OBSERVED
        assert [s.sample_id for s in journal.drain(10)] == ["taken"]
        with pytest.raises(JournalError, match="JSON"):
            journal.record_turn(dataclasses.replace(make_turn("c", 0), sampling={"x": object()}))
        assert journal.get("c:0") is None
