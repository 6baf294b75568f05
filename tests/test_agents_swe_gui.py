"""``agents eval`` and ``agents train`` with ``--env swe`` and ``--env gui`` on the embedded default.

Each environment gets a seconds-long pre-trained policy (its reference trajectories: swe's
edit-then-submit, gui's clicks in the real headless chromium), then two eval episodes and a
one-round training run (one task, a group of two episodes). Tiny budgets: gui episodes
launch a browser each, on two shared cores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from slime_openclaw.cli import main
from slime_openclaw.envs import EnvSpec
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.agents.pretrain import FAST_AGENT_RECIPE, prepare_agent_policy
from slime_openclaw.local.training.sft import read_manifest

pytestmark = pytest.mark.slow

TINY_RECIPE = dataclasses.replace(FAST_AGENT_RECIPE, max_tasks=4, concurrency=2)
ENV_ARGS = {"swe": ["--env-arg", "probe_tests=false"], "gui": ["--env-arg", "screenshots=false"]}


@pytest.fixture(params=["swe", "gui"])
def env(request: pytest.FixtureRequest) -> str:
    if request.param == "gui" and not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium is not installed: `make chromium` (make test runs it)")
    return str(request.param)


def policy(env: str, root: Path) -> Path:
    path = prepare_agent_policy(EnvSpec(env), recipe=TINY_RECIPE, cache_root=root, threads=1)
    manifest = read_manifest(path)
    assert manifest is not None and manifest["trajectories"] == 4 and manifest["env"] == env
    return path


def test_agents_eval_and_train_run_on_swe_and_gui(env: str, tmp_path: Path, capsys) -> None:
    model = policy(env, tmp_path / "cache")
    journal, evaluated = tmp_path / "j.sqlite", tmp_path / "eval.json"
    assert main(["agents", "eval", "--env", env, *ENV_ARGS[env], "--episodes", "2", "--model", str(model),
                 "--journal", str(journal), "--summary-json", str(evaluated), "--max-turns", "3"]) == 0
    summary = json.loads(evaluated.read_text())
    assert summary["episodes"] == 2 and summary["requests_failed"] == 0 and 0.0 <= summary["mean_outcome"] <= 1.0
    with SqliteJournal(journal, create=False) as store:
        sessions = {r.turn.session_id for r in store.iter_turns()}
        assert sessions == {"eval-eval-0", "eval-eval-1"}
        assert all(store.get_outcome(s) is not None for s in sessions)

    trained = tmp_path / "summary.json"
    assert main(["agents", "train", "--env", env, *ENV_ARGS[env], "--model", str(model), "--method", "prm",
                 "--rounds", "1", "--tasks-per-round", "1", "--group-size", "2", "--eval-episodes", "1",
                 "--max-turns", "3", "--concurrency", "2", "--workdir", str(tmp_path / "run"),
                 "--summary-json", str(trained)]) == 0
    summary = json.loads(trained.read_text())
    assert summary["env"] == env and summary["episodes"] == 2
    assert summary["requests_failed"] == 0 and summary["samples_lost"] == 0
    assert 0.0 <= summary["success_before"] <= 1.0 and 0.0 <= summary["success_after"] <= 1.0
    with SqliteJournal(tmp_path / "run" / "journal.sqlite", create=False) as store:
        assert len({r.turn.session_id for r in store.iter_turns()}) == 2
    assert "success rate" in capsys.readouterr().out
