"""The demo's parts without a model: journal accounting, persisted progress, the display,
the summary, the curve, and the command line's refusals."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from slime_openclaw import cli
from slime_openclaw.errors import ConfigError
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.local.demo.command import clear_workdir, default_workdir
from slime_openclaw.local.demo.loop import DemoState, Live
from slime_openclaw.local.demo.report import (
    ProgressLine,
    plot_curve,
    summary_table,
    verdict,
    write_summary_json,
)
from slime_openclaw.local.demo.run_journal import end_dead_run, journal_figures, release_leases
from tests.journal_factories import make_next_state, make_sample, make_turn


def test_journal_figures_account_for_every_turn() -> None:
    journal = MemoryJournal()
    turns = [make_turn("s", i) for i in range(4)]
    for turn in turns:
        journal.record_turn(turn)
    for turn in turns[:3]:
        journal.attach_next_state(turn.key, make_next_state())
    claimed = journal.claim_observed(3)
    assert len(claimed) == 3
    journal.record_signals(turns[0].key, None, None, [make_sample(turns[0])])
    journal.record_signals(turns[1].key, None, None, [])  # discarded with the default reason
    figures = journal_figures(journal)
    assert figures == {"turns_recorded": 4, "samples_produced": 1, "samples_lost": 0,
                       "turns_pending": 2, "max_turn_weight_version": 4}
    drained = journal.drain(5, "local-trainer")
    assert len(drained) == 1
    assert release_leases(journal, "other") == 0
    assert release_leases(journal, "local-trainer") == 1  # back to READY: trainable again
    assert len(journal.drain(5, "local-trainer")) == 1



def test_a_restart_ends_the_dead_runs_sessions_and_drops_its_claims() -> None:
    journal = MemoryJournal(claim_lease_seconds=60.0)
    turns = [make_turn("s", i) for i in range(3)]
    for turn in turns:
        journal.record_turn(turn)
    journal.attach_next_state(turns[0].key, make_next_state())
    assert [r.turn.key for r in journal.claim_observed(5, owner="dead")] == [turns[0].key]
    assert end_dead_run(journal) == 3  # the claimed turn and the two SERVED ones, now session-ended
    claimed = journal.claim_observed(5, owner="new")  # at once, not after the dead run's 60 s lease
    assert sorted(r.turn.key for r in claimed) == sorted(t.key for t in turns)
    assert journal_figures(journal)["turns_pending"] == 3  # OBSERVED until this run's workers judge them


def test_progress_state_round_trips_and_refuses_another_run(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    state = DemoState(method="opd", seed=3, interactions_done=7, score_before=0.25, train_scores=[1.0, 0.0])
    state.save(path)
    assert DemoState.load(path, "opd", 3) == state
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    with pytest.raises(ConfigError, match="--fresh"):
        DemoState.load(path, "binary", 3)
    assert DemoState.load(tmp_path / "none.json", "binary", 1) == DemoState(method="binary", seed=1)


def test_progress_line_terminal_and_log() -> None:
    state = DemoState(method="combine", seed=0, interactions_done=5, score_before=0.2, train_scores=[1.0, 0.0])
    live = Live(phase="training", total=10, state=state, train_steps=2, weight_version=2)
    tty = io.StringIO()
    line = ProgressLine(tty, tty=True)
    line(live)
    line(live)  # unchanged: not redrawn
    line.finish()
    text = tty.getvalue()
    assert text.count("\r") == 1 and text.endswith("\n")
    assert "5/10 interactions" in text and "steps 2" in text and "weights v2" in text and "score 0.50" in text
    log = io.StringIO()
    plain = ProgressLine(log, tty=False, every_s=3600)
    plain(live)
    state.interactions_done = 6
    plain(live)  # same phase within every_s: throttled
    live.phase = "evaluating (after)"
    plain(live)  # a new phase always prints
    assert "\r" not in log.getvalue() and len(log.getvalue().splitlines()) == 2


def test_summary_is_honest_about_small_changes(tmp_path: Path) -> None:
    summary = {"method": "binary", "score_before": 0.40, "score_after": 0.42, "interactions": 10, "train_steps": 3,
               "weight_version": 3, "requests_served": 30, "requests_failed": 0, "turns_recorded": 20,
               "samples_produced": 12, "samples_lost": 0, "turns_pending": 0, "restarts": 0, "elapsed_s": 9.0,
               "curve": [{"interactions": 0, "weight_version": 0, "score": 0.4, "per_persona": {"student": 0.4}},
                         {"interactions": 10, "weight_version": 3, "score": 0.42, "per_persona": {"student": 0.42}}]}
    assert verdict(summary).startswith("no clear change")
    assert "rose" in verdict({**summary, "score_after": 0.6})
    assert "FELL" in verdict({**summary, "score_after": 0.1})
    table = summary_table(summary)
    assert "0.400 -> 0.420" in table and "20 / 12 / 0" in table and "30 / 0" in table
    write_summary_json(tmp_path / "s" / "summary.json", summary)
    assert json.loads((tmp_path / "s" / "summary.json").read_text()) == summary
    plot_curve(tmp_path / "curve.png", {"binary": summary["curve"]})
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_workdir_default_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_workdir("opd", 2) == tmp_path / "slime-openclaw" / "demo" / "opd-seed2"
    work = tmp_path / "w"
    (work / "checkpoints" / "step_00000001").mkdir(parents=True)
    (work / "progress.json").write_text("{}")
    (work / "mine.txt").write_text("kept")
    clear_workdir(work)
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("flags", [["--interactions", "0"], ["--lr", "-1"], ["--policy", "/nonexistent"]])
def test_bad_flags_are_one_line_errors(flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--workdir", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err.startswith("slime-openclaw demo: ")
