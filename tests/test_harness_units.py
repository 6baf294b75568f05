"""The harness glue without a harness: workspaces graded as episodes, configs, CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slime_openclaw.envs import builtin_tasks
from slime_openclaw.envs.base import Outcome
from slime_openclaw.errors import ConfigError
from slime_openclaw.harnesses import workspace as ws
from slime_openclaw.harnesses.gateway import api_base, post_outcome
from slime_openclaw.harnesses.mini_swe import mini_config
from slime_openclaw.harnesses.openclaw import openclaw_config
from slime_openclaw.harnesses.runs import HarnessError


async def test_a_terminal_workspace_is_graded_by_its_hidden_checks(tmp_path: Path) -> None:
    task = builtin_tasks("terminal", "eval")[1]
    space = ws.prepare("terminal", task, tmp_path / "a")
    assert space.prompt == task["instruction"]
    assert sorted(p.name for p in space.directory.iterdir()) == sorted(Path(f).name for f in task["files"])
    before = await ws.grade(space)
    assert before.score < 1.0 and not before.passed
    subprocess.run(["bash", "-c", " && ".join(task["solution"])], cwd=space.directory, check=True)
    after = await ws.grade(space)
    assert after.passed and after.score == 1.0 and len(after.details["checks"]) == len(task["checks"])


async def test_a_swe_workspace_is_graded_by_the_hidden_tests_not_its_own(tmp_path: Path) -> None:
    task = builtin_tasks("swe", "eval")[0]
    space = ws.prepare("swe", task, tmp_path / "s")
    assert space.prompt == task["issue"] and space.base
    assert not any("hidden" in str(p) for p in space.directory.rglob("*"))
    (space.directory / "tests").mkdir(exist_ok=True)
    for test_file in {n.split("::")[0] for n in task["FAIL_TO_PASS"]}:
        (space.directory / test_file).write_text("def test_discount():\n    pass\n")
    cheated = await ws.grade(space)
    assert not cheated.passed and cheated.details["dropped_paths"]


def test_the_configs_send_the_session_id_to_the_gateway(tmp_path: Path) -> None:
    mini = mini_config("http://127.0.0.1:9/", "tiny", "ep-1", tmp_path, api_key="", step_limit=5, command_timeout=9)
    assert mini["model"]["model_kwargs"]["extra_headers"] == {"X-Session-Id": "ep-1"}
    assert mini["model"]["model_kwargs"]["api_base"] == "http://127.0.0.1:9/v1"
    assert mini["environment"]["cwd"] == str(tmp_path) and mini["agent"]["step_limit"] == 5
    claw = openclaw_config("http://127.0.0.1:9/v1", "tiny", "ep-2", tmp_path, api_key="k", context_window=4096,
                           max_tokens=64)
    provider = claw["models"]["providers"]["slime"]
    assert provider["headers"] == {"X-Session-Id": "ep-2"} and provider["baseUrl"] == "http://127.0.0.1:9/v1"
    assert claw["agents"]["defaults"]["workspace"] == str(tmp_path)


def test_gateway_urls_and_unreachable_gateways_are_one_line_errors() -> None:
    assert api_base("http://h:1") == "http://h:1/v1" and api_base("http://h:1/v1/") == "http://h:1/v1"
    with pytest.raises(HarnessError, match="not an http"):
        api_base("h:1")
    with pytest.raises(HarnessError, match="not recorded"):
        post_outcome("http://127.0.0.1:9", "ep", Outcome(score=1.0, passed=True), timeout=5)
    with pytest.raises(ConfigError, match="a harness works on"):
        ws.prepare("gui", {}, Path("/nonexistent"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--task-index", "999"], "--task-index 999: there are 16 tasks"),
    (["--step-limit", "0"], "--step-limit must be at least 1"),
    (["--env", "swe", "--tasks", "/nonexistent.jsonl"], "nonexistent"),
])
def test_bad_harness_arguments_are_one_line_errors(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "slime_openclaw.cli", "agents", "harness", "mini-swe-agent",
                           "--gateway", "http://127.0.0.1:9", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1

