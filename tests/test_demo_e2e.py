"""The demo's loop closes, and survives SIGKILL: real engine child, gateway, signal workers,
trainer, SQLite journal, the openai client, on a policy from the fast pre-training recipe.

The learning claim (the score rises) is the benchmark's (benchmarks/personalization.py); with
a seconds-long pre-training and a dozen interactions these tests assert the mechanism:
samples are produced and consumed, weights change and the engine serves the new version on
turns it records, no request fails, nothing recorded is lost, and a killed run resumes from
its journal and checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from slime_openclaw import cli
from slime_openclaw.journal.rules import SampleState
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.demo.report import SUMMARY_KEYS
from slime_openclaw.local.personal.pretrain import FAST_RECIPE, prepare_policy
from slime_openclaw.local.training.checkpoint import complete_checkpoints
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_policy(tmp_path_factory.mktemp("policy") / "fast", recipe=FAST_RECIPE, threads=1)


def demo_args(policy: Path, workdir: Path, interactions: int, *extra: str) -> list[str]:
    return ["demo", "--policy", str(policy), "--workdir", str(workdir), "--interactions", str(interactions),
            "--users", "4", "--batch-size", "4", "--max-tokens", "24",
            "--summary-json", str(workdir / "out.json"), *extra]


def journal_turn_keys(path: Path) -> set[str]:
    journal = SqliteJournal(str(path))
    try:
        return {record.turn.key for record in journal.iter_turns()}
    finally:
        journal.close()


def test_the_loop_closes(policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "run"
    assert cli.main(demo_args(policy, workdir, 10, "--eval-every", "5", "--eval-per-persona", "1",
                                    "--method", "combine")) == 0
    summary = json.loads((workdir / "out.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["method"] == "combine" and summary["interactions"] == 10
    assert summary["requests_failed"] == 0 and summary["requests_served"] > 10
    assert summary["train_steps"] >= 1
    assert summary["weight_version"] == summary["train_steps"]  # the engine serves the newest weights
    assert summary["max_turn_weight_version"] >= 1  # turns were produced (and recorded) by pushed weights
    assert summary["samples_lost"] == 0 and summary["turns_pending"] == 0
    assert summary["samples_produced"] > 0
    assert [p["label"] for p in summary["curve"]] == ["before", "i5", "after"]
    assert 0.0 <= summary["score_before"] <= 1.0 and 0.0 <= summary["score_after"] <= 1.0

    journal = SqliteJournal(str(workdir / "journal.sqlite"))
    try:
        assert summary["turns_recorded"] == len(list(journal.iter_turns())) > 0
        assert summary["samples_produced"] == len(list(journal.iter_samples()))
        assert list(journal.iter_samples(SampleState.CONSUMED))  # the trainer consumed samples
    finally:
        journal.close()

    newest = complete_checkpoints(workdir / "checkpoints")[-1][1]
    trained, base = load_file(newest / "model.safetensors"), load_file(policy / "model.safetensors")
    assert any(not trained[name].equal(base[name]) for name in base if name in trained)  # weights changed
    assert (workdir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "preference score" in out and "turns recorded / samples produced / lost" in out


INTERACTIONS = 20
"""The killed run's total. The first checkpoint lands after 3-8 interactions (batch of 4 samples,
measured idle and with two busy loops on this 2-core machine), so a dozen or more remain when
the kill lands, while the restart still has little to do."""
STARTUP_S = 300.0
"""Deadline for the first checkpoint: engine child, trainer imports, the "before" round, a
step; about 10 s on an idle machine, several times that on a loaded one."""
RESTART_S = 420.0
"""Deadline for the restarted run to finish (about 15 s idle)."""


def _interactions_done(workdir: Path) -> int:
    """``progress.json``'s count (written atomically after every interaction; 0 before the first)."""
    path = workdir / "progress.json"
    return int(json.loads(path.read_text())["interactions_done"]) if path.is_file() else 0


def _first_checkpoint_then_one_more_interaction(child: subprocess.Popen[bytes], workdir: Path, log: Path) -> None:
    """Return while the demo runs, once an interaction finished after its first complete checkpoint
    (requests, judging and training are in flight then); fail with the demo's log if it ends first."""
    at_checkpoint: int | None = None

    def mid_run() -> bool:
        nonlocal at_checkpoint
        if child.poll() is not None:
            raise AssertionError(f"the demo ended (exit {child.returncode}) before it could be killed, at "
                                 f"{_interactions_done(workdir)} interactions:\n{log.read_text()[-2000:]}")
        if at_checkpoint is None:
            if complete_checkpoints(workdir / "checkpoints"):
                at_checkpoint = _interactions_done(workdir)
            return False
        return _interactions_done(workdir) > at_checkpoint

    wait_until(mid_run, "a checkpoint, then an interaction after it", timeout_s=STARTUP_S, interval_s=0.02)


def test_sigkill_mid_run_then_restart_resumes(policy: Path, tmp_path: Path) -> None:
    workdir, log = tmp_path / "run", tmp_path / "killed.log"
    args = [sys.executable, "-m", "slime_openclaw.cli", *demo_args(
        policy, workdir, INTERACTIONS, "--eval-every", "0", "--eval-per-persona", "1", "--method", "binary")]
    with open(log, "wb") as output:
        child = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _first_checkpoint_then_one_more_interaction(child, workdir, log)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the demo and its engine child, at once
        child.wait(60)
    assert child.returncode == -signal.SIGKILL
    before_keys = journal_turn_keys(workdir / "journal.sqlite")
    killed_step = complete_checkpoints(workdir / "checkpoints")[-1][0]
    done_before = _interactions_done(workdir)
    assert before_keys and 0 < done_before < INTERACTIONS

    restart = subprocess.run(args, capture_output=True, text=True, timeout=RESTART_S, start_new_session=True)
    assert restart.returncode == 0, restart.stderr[-2000:]
    summary = json.loads((workdir / "out.json").read_text())
    after_keys = journal_turn_keys(workdir / "journal.sqlite")
    assert before_keys <= after_keys and len(after_keys) > len(before_keys)  # nothing recorded was lost
    assert summary["restarts"] == 1 and summary["interactions"] == INTERACTIONS
    assert summary["train_steps"] > killed_step  # continued from the checkpoint, not from zero
    assert summary["weight_version"] == summary["train_steps"]
    assert summary["requests_failed"] == 0
    assert summary["samples_lost"] == 0 and summary["turns_pending"] == 0  # the killed run's claims were freed
    assert summary["turns_recorded"] == len(after_keys)
