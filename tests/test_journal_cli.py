"""`slime-openclaw journal stats|export` against a real journal file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from journal_factories import HINT, VERDICT, make_next_state, make_sample, make_turn

from slime_openclaw.cli import main
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import Method

REQUIRED = {
    "session_id",
    "turn_index",
    "state",
    "prompt_ids",
    "response_ids",
    "rollout_log_probs",
    "loss_mask",
    "weight_versions",
    "reward",
    "teacher_log_probs",
    "method",
}


@pytest.fixture
def journal_path(tmp_path):
    path = tmp_path / "journal.sqlite"
    with SqliteJournal(path) as journal:
        for i in range(3):
            turn = make_turn("cli", i)
            journal.record_turn(turn)
            if i == 2:
                continue
            journal.attach_next_state(turn.key, make_next_state())
            if i == 0:
                journal.record_signals(turn.key, VERDICT, HINT, [make_sample(turn), make_sample(turn, Method.OPD)])
        journal.ack([journal.drain(1, "t")[0].sample_id])
    return path


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_stats_text_and_json(journal_path, capsys):
    assert main(["journal", "stats", "--journal", str(journal_path)]) == 0
    out = capsys.readouterr().out
    assert "served 1  observed 1  judged 0  ready 1" in out
    assert "ready 1  in_flight 0  consumed 1  (total 2)" in out
    assert "binary 1  opd 1  combine 0" in out and "judge lag" in out
    assert main(["journal", "stats", "--journal", str(journal_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["turns_by_state"]["observed"] == 1 and stats["judge_lag_seconds"] >= 0


def test_export_turns_and_samples(journal_path, capsys):
    assert main(["journal", "export", "--journal", str(journal_path)]) == 0
    turns = lines(capsys.readouterr().out)
    assert [(t["turn_index"], t["state"]) for t in turns] == [(0, "ready"), (1, "observed"), (2, "served")]
    assert all(set(t) >= REQUIRED for t in turns)
    assert turns[0]["reward"] == -1.0 and turns[0]["hint"]["text"] == HINT.text
    assert turns[0]["prompt_ids"] == list(make_turn("cli", 0).prompt_ids)
    assert main(["journal", "export", "--journal", str(journal_path), "--kind", "samples"]) == 0
    samples = lines(capsys.readouterr().out)
    assert [(s["method"], s["state"]) for s in samples] == [("binary", "consumed"), ("opd", "ready")]
    assert all(set(s) >= REQUIRED for s in samples)
    assert samples[1]["teacher_log_probs"] == list(make_sample(make_turn("cli", 0), Method.OPD).teacher_log_probs)
    assert main(["journal", "export", "--journal", str(journal_path), "--kind", "samples", "--state", "READY"]) == 0
    assert [s["method"] for s in lines(capsys.readouterr().out)] == ["opd"]
    assert main(["journal", "export", "--journal", str(journal_path), "--state", "served"]) == 0
    assert [t["turn_index"] for t in lines(capsys.readouterr().out)] == [2]


def test_errors_are_one_line(tmp_path, journal_path, capsys):
    assert main(["journal", "stats", "--journal", str(tmp_path / "nope.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no journal at" in err
    assert not (tmp_path / "nope.sqlite").exists()
    assert main(["journal", "export", "--journal", str(journal_path), "--state", "in_flight"]) == 2
    assert "not a turn state" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text("hello")
    assert main(["journal", "export", "--journal", str(other)]) == 2
    assert "other.txt" in capsys.readouterr().err


def test_installed_command_in_a_real_process(journal_path):
    cmd = [sys.executable, "-m", "slime_openclaw.cli", "journal", "export", "--journal", str(journal_path)]
    done = subprocess.run([*cmd, "--kind", "samples"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["method"] for line in done.stdout.splitlines()] == ["binary", "opd"]
