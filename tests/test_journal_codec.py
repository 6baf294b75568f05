"""Codec round trips, the default journal location and ``open_journal``."""

from __future__ import annotations

from pathlib import Path

from journal_factories import HINT, VERDICT, make_next_state, make_sample, make_turn

from slime_openclaw.journal import codec
from slime_openclaw.journal.location import default_journal_path, open_journal
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import Method


def test_packed_arrays_round_trip_exactly():
    floats = [-0.1 / 3, -1e-300, 0.0, -123.456789012345678, float("-inf")]
    assert codec.unpack_floats(codec.pack_floats(floats)) == tuple(floats)
    ints = [0, 151_643, 2**40, -1]
    assert codec.unpack_ints(codec.pack_ints(ints)) == tuple(ints)
    assert codec.unpack_ints(codec.pack_ints([])) == ()
    rows = ((1, 2, 3), (), (7,))
    assert codec.unpack_rows(codec.pack_rows(rows, "q"), "q") == rows
    assert codec.pack_ints([1])[:2] == b"\x01\x00"  # little-endian on disk


def test_json_round_trips():
    turn = make_turn("c", 2)
    assert codec.turn_from_json(codec.turn_to_json(turn)) == turn
    state = make_next_state()
    assert codec.next_state_from_json(codec.next_state_to_json(state)) == state
    assert codec.verdict_from_json(codec.verdict_to_json(VERDICT)) == VERDICT
    assert codec.hint_from_json(codec.hint_to_json(HINT)) == HINT
    for method in Method:
        sample = make_sample(turn, method, topk=method is Method.OPD)
        assert codec.sample_from_json(codec.sample_to_json(sample)) == sample
        scalars = (sample.sample_id, sample.session_id, sample.turn_index, method.value, sample.reward)
        assert codec.sample_from_arrays(*scalars, codec.sample_arrays(sample)) == sample
    assert codec.next_state_to_json(None) is None and codec.verdict_from_json(None) is None


def test_default_journal_path_follows_xdg():
    assert default_journal_path({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}) == Path(
        "/data/slime-openclaw/journal.sqlite"
    )
    assert default_journal_path({"HOME": "/home/u"}) == Path("/home/u/.local/share/slime-openclaw/journal.sqlite")
    # A relative XDG_DATA_HOME is invalid per the spec and ignored.
    assert default_journal_path({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/share/slime-openclaw/journal.sqlite")


def test_open_journal(tmp_path):
    memory = open_journal(":memory:")
    assert isinstance(memory, MemoryJournal)
    durable = open_journal(None, environ={"XDG_DATA_HOME": str(tmp_path)})
    try:
        assert isinstance(durable, SqliteJournal)
        assert Path(durable.path) == tmp_path / "slime-openclaw" / "journal.sqlite"
    finally:
        durable.close()


def test_open_journal_takes_every_setting_from_the_config(tmp_path):
    from slime_openclaw.config import JournalConfig

    settings = JournalConfig(path=str(tmp_path / "j.sqlite"), keep_text=False, retention_hours=2.0,
                             claim_lease_s=5.0, drain_lease_s=7.0)
    for journal in (open_journal(settings=settings), open_journal(":memory:", settings=settings)):
        try:
            assert (journal.claim_lease_seconds, journal.drain_lease_seconds) == (5.0, 7.0)
            assert not journal.retention.keep_text and journal.retention.delete_consumed_after_hours == 2.0
        finally:
            journal.close()
    assert Path(tmp_path / "j.sqlite").is_file()
    defaults = JournalConfig()
    for journal in (SqliteJournal(tmp_path / "d.sqlite"), MemoryJournal()):
        assert (journal.claim_lease_seconds, journal.drain_lease_seconds) == (defaults.claim_lease_s,
                                                                                defaults.drain_lease_s)
        journal.close()
