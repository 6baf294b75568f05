"""Session outcomes in the journal: both implementations, the v2 -> v3 migration, export rows."""

from __future__ import annotations

import json
import sqlite3

import pytest
from journal_factories import FakeClock, make_next_state, make_turn

from slime_openclaw.cli import main
from slime_openclaw.journal.base import JournalStore
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.journal.schema import SCHEMA_VERSION
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import SessionOutcome


@pytest.fixture(params=["memory", "sqlite"])
def journal(request, tmp_path):
    store: JournalStore = (MemoryJournal(clock=FakeClock()) if request.param == "memory"
                           else SqliteJournal(tmp_path / "j.sqlite", clock=FakeClock()))
    yield store
    store.close()


def test_first_outcome_stands_and_reads_back(journal):
    assert journal.get_outcome("ep-1") is None
    assert journal.record_outcome(SessionOutcome("ep-1", 0.5, passed=False, details={"checks": [True, False]}))
    assert not journal.record_outcome(SessionOutcome("ep-1", 1.0, passed=True))
    got = journal.get_outcome("ep-1")
    assert got is not None and (got.score, got.passed, got.details) == (0.5, False, {"checks": [True, False]})
    assert got.recorded_at > 0
    assert journal.record_outcome(SessionOutcome("ep-2", 1.0))
    assert journal.get_outcome("ep-2").passed is None


def test_has_session_follows_turns(journal):
    assert not journal.has_session("s1")
    journal.record_turn(make_turn("s1", 0))
    assert journal.has_session("s1") and not journal.has_session("s2")


@pytest.mark.parametrize("score", [-0.1, 1.5, float("nan"), True])
def test_out_of_range_scores_are_refused(score):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SessionOutcome("s", score)
    with pytest.raises(ValueError, match="session id"):
        SessionOutcome("", 0.5)


def test_v2_journal_migrates_keeping_its_turns(tmp_path):
    path = tmp_path / "old.sqlite"
    with SqliteJournal(path) as journal:
        journal.record_turn(make_turn("s1", 0))
    conn = sqlite3.connect(path)  # make it a v2 file: as written before outcomes existed
    conn.execute("DROP TABLE session_outcomes")
    conn.execute("DROP INDEX turns_by_session")
    conn.execute("UPDATE schema_version SET version = 2")
    conn.commit()
    conn.close()
    with SqliteJournal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION == 3
        assert journal.get("s1:0") is not None
        assert journal.record_outcome(SessionOutcome("s1", 1.0, passed=True))
    with SqliteJournal(path, create=False) as journal:
        assert journal.get_outcome("s1").score == 1.0


def test_export_rows_carry_their_sessions_outcome(tmp_path, capsys):
    path = tmp_path / "journal.sqlite"
    with SqliteJournal(path) as journal:
        for session in ("graded", "open"):
            turn = make_turn(session, 0)
            journal.record_turn(turn)
            journal.attach_next_state(turn.key, make_next_state())
        journal.record_outcome(SessionOutcome("graded", 0.25, passed=False))
    assert main(["journal", "export", "--journal", str(path)]) == 0
    rows = {row["session_id"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["graded"]["outcome"]["score"] == 0.25 and rows["graded"]["outcome"]["passed"] is False
    assert rows["open"]["outcome"] is None
