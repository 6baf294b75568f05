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
import time
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


def _wait_for_checkpoint(child: subprocess.Popen[bytes], workdir: Path, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.poll() is None, "the demo ended before it could be killed"
        found = complete_checkpoints(workdir / "checkpoints")
        if found:
            return found[-1][0]
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def _interactions_done(workdir: Path) -> int:
    """``progress.json``'s count (written atomically after every interaction; 0 before the first)."""
    path = workdir / "progress.json"
    return int(json.loads(path.read_text())["interactions_done"]) if path.is_file() else 0


def test_sigkill_mid_run_then_restart_resumes(policy: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "slime_openclaw.cli", *demo_args(policy, workdir, 20, "--eval-every", "0",
                                                                      "--eval-per-persona", "1", "--method", "binary")]
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_checkpoint(child, workdir, 90.0)
        at_checkpoint = _interactions_done(workdir)
        # mid-run: the loop went on past the checkpoint (requests, judging and training in flight)
        wait_until(lambda: child.poll() is not None or _interactions_done(workdir) > at_checkpoint,
                   "an interaction finished after the first checkpoint", timeout_s=90.0)
        assert child.poll() is None, "the demo ended before it could be killed"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the demo and its engine child
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    before_keys = journal_turn_keys(workdir / "journal.sqlite")
    killed_step = complete_checkpoints(workdir / "checkpoints")[-1][0]
    done_before = json.loads((workdir / "progress.json").read_text())["interactions_done"]
    assert before_keys and 0 < done_before < 20

    restart = subprocess.run(args, capture_output=True, text=True, timeout=180, start_new_session=True)
    assert restart.returncode == 0, restart.stderr[-2000:]
    summary = json.loads((workdir / "out.json").read_text())
    after_keys = journal_turn_keys(workdir / "journal.sqlite")
    assert before_keys <= after_keys and len(after_keys) > len(before_keys)  # nothing recorded was lost
    assert summary["restarts"] == 1 and summary["interactions"] == 20
    assert summary["train_steps"] > killed_step  # continued from the checkpoint, not from zero
    assert summary["weight_version"] == summary["train_steps"]
    assert summary["requests_failed"] == 0
    assert summary["samples_lost"] == 0 and summary["turns_pending"] == 0
    assert summary["turns_recorded"] == len(after_keys)
