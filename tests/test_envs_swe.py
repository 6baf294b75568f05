"""The ``swe`` environment beyond the contract: grading in a clean copy (edited tests change
nothing), the generator (deterministic, four bug kinds, disjoint splits, every bug real and
fixed by its reference), SWE-bench-shaped rows for a local git repository, step signals
and the episode limits."""

from __future__ import annotations

import json
import subprocess

import pytest

from slime_openclaw.envs import TaskError, build_env, builtin_tasks, reference_replies
from slime_openclaw.envs.sandbox import Limits, bwrap_works
from slime_openclaw.envs.swe import checkout, grade_patch, workspace_patch
from slime_openclaw.envs.swe_grading import grade, patch_paths, spec_from_task, split_patch
from slime_openclaw.envs.tools import assistant_call

_NO_BWRAP = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap unusable here")
HOOK = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    outcome = yield\n    outcome.get_result().outcome = 'passed'\n")


def bash(command: str, n: int = 0) -> dict:
    return assistant_call(f"c{n}", "bash", {"command": command})


@pytest.fixture
async def swe():
    env = build_env("swe", ["isolation=plain", "timeout=20"])
    yield env
    await env.close()


async def _episode(env, task, replies):
    await env.reset(task)
    steps = [await env.step(reply) for reply in replies]
    return steps, await env.outcome()


async def test_editing_the_hidden_tests_in_the_workspace_changes_nothing(swe):
    task = builtin_tasks("swe", "train")[0]
    test_file = task["FAIL_TO_PASS"][0].split("::")[0]
    names = [n.split("::")[1] for n in task["FAIL_TO_PASS"] + task["PASS_TO_PASS"]]
    trivial = "".join(f"def {name}():\n    pass\n\n\n" for name in names)
    tamper = [assistant_call("w1", "write_file", {"path": test_file, "content": trivial}),
              assistant_call("w2", "write_file", {"path": "conftest.py", "content": HOOK}),
              assistant_call("w3", "write_file", {"path": "tests/conftest.py", "content": HOOK}),
              bash("printf '[pytest]\\naddopts = -p no:python\\n' > pytest.ini", 4)]
    _, untouched = await _episode(swe, task, [{"role": "assistant", "content": "done"}])
    steps, tampered = await _episode(swe, task, [*tamper, {"role": "assistant", "content": "done"}])
    assert not tampered.passed and tampered.score == untouched.score < 1.0
    assert set(tampered.details["dropped_paths"]) == {test_file, "conftest.py", "tests/conftest.py", "pytest.ini"}
    assert not steps[0].info["checks_fixed"] and steps[0].info["checks_failing"]
    fixed_steps, fixed = await _episode(swe, task, [*tamper, *reference_replies("swe", task)])
    assert fixed.passed and fixed.score == 1.0 and fixed_steps[-1].info["end_reason"] == "submit"
    assert [t["kind"] for t in fixed.details["tests"]].count("FAIL_TO_PASS") == len(task["FAIL_TO_PASS"])


def test_generator_is_deterministic_covers_four_kinds_and_splits_never_overlap():
    train, evals = builtin_tasks("swe", "train"), builtin_tasks("swe", "eval")
    assert len(train) >= 30 and len(evals) >= 12
    assert builtin_tasks("swe", "train") == train and builtin_tasks("swe", "train", seed=1) != train
    for tasks in (train, evals):
        assert {t["kind"] for t in tasks} == {"off_by_one", "wrong_operator", "missing_case", "wrong_default"}
        assert len({t["id"] for t in tasks}) == len(tasks)
        assert len({json.dumps(t["files"], sort_keys=True) for t in tasks}) == len(tasks)
    content = lambda t: json.dumps([t["files"], t["hidden_tests"]], sort_keys=True)  # noqa: E731
    eval_content = {content(t) for t in evals}
    for tasks in (train, builtin_tasks("swe", "train", seed=1)):
        assert not eval_content & {content(t) for t in tasks}
    for task in train + evals:
        assert not set(task["hidden_tests"]) - set(task["files"])  # hidden tests replace visible test files
        assert all(node.split("::")[0] in task["hidden_tests"] for node in task["FAIL_TO_PASS"])


async def test_every_planted_bug_fails_its_new_tests_and_the_reference_edit_fixes_it(tmp_path):
    for task in builtin_tasks("swe", "train")[:8] + builtin_tasks("swe", "eval")[:4]:
        spec = spec_from_task(task)
        base = await grade(spec, "", isolation="plain", limits=Limits(), timeout=60)
        f2p = set(task["FAIL_TO_PASS"])
        assert not any(ok for n, ok in base.results.items() if n in f2p), (task["id"], base.details)
        assert all(ok for n, ok in base.results.items() if n not in f2p), (task["id"], base.details)
    env = build_env("swe", ["isolation=plain", "timeout=20", "probe_tests=false"])
    try:
        for task in builtin_tasks("swe", "train")[8:12] + builtin_tasks("swe", "eval")[4:6]:
            steps, outcome = await _episode(env, task, reference_replies("swe", task))
            assert steps[-1].done and outcome.passed, (task["id"], outcome.details)
            assert "checks_fixed" not in steps[0].info  # probing off
    finally:
        await env.close()


def _git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def swebench_row(tmp_path):
    """A real local git repository with a bug, its fix and the tests that show it, as a row."""
    repo = tmp_path / "project"
    (repo / "shop").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "shop" / "__init__.py").write_text("")
    (repo / "shop" / "cart.py").write_text("def total(prices, tax=0.0):\n    return sum(prices) * (1 - tax)\n")
    (repo / "tests" / "test_cart.py").write_text("from shop import cart\n\n\ndef test_empty():\n"
                                                 "    assert cart.total([]) == 0\n")
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD").strip()
    with (repo / "tests" / "test_cart.py").open("a") as handle:
        handle.write("\n\ndef test_tax_is_added():\n    assert cart.total([100], tax=0.25) == 125\n")
    test_patch = _git(repo, "diff")
    _git(repo, "checkout", "-q", "--", ".")
    (repo / "shop" / "cart.py").write_text("def total(prices, tax=0.0):\n    return sum(prices) * (1 + tax)\n")
    gold = _git(repo, "diff")
    _git(repo, "commit", "-q", "-am", "fix (not the base)")
    return {"instance_id": "shop__cart-1", "repo": str(repo), "base_commit": base,
            "problem_statement": "total() subtracts the tax instead of adding it.", "test_patch": test_patch,
            "patch": gold, "FAIL_TO_PASS": json.dumps(["tests/test_cart.py::test_tax_is_added"]),
            "PASS_TO_PASS": ["tests/test_cart.py::test_empty"]}


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=_NO_BWRAP), "plain"])
async def test_a_swebench_row_of_a_local_repository(mode, swebench_row):
    swe = build_env("swe", [f"isolation={mode}", "timeout=20"])
    try:
        await _row_episodes(swe, swebench_row)
    finally:
        await swe.close()


async def _row_episodes(swe, swebench_row):
    obs = await swe.reset(swebench_row)
    assert "subtracts the tax" in obs.messages[-1]["content"]
    look = await swe.step(bash("cat tests/test_cart.py shop/cart.py; git log --oneline | wc -l"))
    text = look.messages[0]["content"]
    assert "test_tax_is_added" not in text and "(1 - tax)" in text and "\n1\n" in text
    assert look.info["checks_failing"] == ["tests/test_cart.py::test_tax_is_added"]
    fix = await swe.step(bash("sed -i 's/1 - tax/1 + tax/' shop/cart.py", 1))
    assert fix.info["checks_fixed"] == ["tests/test_cart.py::test_tax_is_added"] and fix.info["checks_failing"] == []
    end = await swe.step({"role": "assistant", "content": "Fixed."})
    outcome = await swe.outcome()
    assert end.done and outcome.passed and outcome.details["end_reason"] == "no_tool_call"
    assert "+    return sum(prices) * (1 + tax)" in outcome.details["patch"]
    steps, gold = await _episode(swe, swebench_row, reference_replies("swe", swebench_row))
    assert gold.passed, gold.details
    _, nothing = await _episode(swe, swebench_row, [{"role": "assistant", "content": "no"}])
    assert nothing.score == 0.5 and not nothing.passed


async def test_step_signals_submit_and_limits(swe):
    task = builtin_tasks("swe", "eval")[0]
    await swe.reset(task)
    crash = await swe.step(bash("python3 -c 'raise KeyError(7)'"))
    assert crash.info["exit_code"] == 1 and crash.info["traceback"].endswith("KeyError: 7")
    assert "[exit code 1]" in crash.messages[0]["content"] and not crash.done
    runs = await swe.step(bash("python3 -m pytest -q 2>&1 | tail -1", 1))
    assert "passed" in runs.messages[0]["content"]  # pytest works in the workspace
    end = await swe.step(assistant_call("s", "submit", {}))
    assert end.done and end.info["end_reason"] == "submit"
    for args, reason in ((["max_turns=1"], "max_turns"), (["time_limit=0"], "time_limit")):
        env = build_env("swe", ["isolation=plain", "probe_tests=false", *args])
        try:
            await env.reset(task)
            step = await env.step(bash("true"))
            assert step.done and step.info["end_reason"] == reason
        finally:
            await env.close()


def test_patch_parsing_and_protected_paths():
    patch = ("diff --git a/pkg/a.py b/pkg/a.py\n--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -1 +1 @@\n-x\n+y\n"
             "diff --git a/conftest.py b/conftest.py\nnew file mode 100644\n--- /dev/null\n+++ b/conftest.py\n@@ -0,0 +1 @@\n+z\n"
             "diff --git a/tests/t.py b/tests/t.py\n--- a/tests/t.py\n+++ b/tests/t.py\n@@ -1 +1 @@\n-p\n+q\n")
    assert patch_paths(patch) == ["pkg/a.py", "conftest.py", "tests/t.py"]
    kept, dropped = split_patch(patch, {"tests/t.py"})
    assert kept.startswith("diff --git a/pkg/a.py") and "conftest" not in kept and "tests/t.py" not in kept
    assert dropped == ["conftest.py", "tests/t.py"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"FAIL_TO_PASS": []}, "'FAIL_TO_PASS' is empty"),
        ({"FAIL_TO_PASS": "[not json"}, "not a JSON list"),
        ({"PASS_TO_PASS": [3]}, "list of pytest node ids"),
        ({"repo": "/nonexistent/repo"}, "is not a directory"),
        ({"base_commit": "deadbeef"}, "cannot read 'deadbeef'"),
        ({"problem_statement": ""}, "'problem_statement' must be a non-empty string"),
    ],
)
async def test_bad_rows_are_task_errors(swe, swebench_row, change, message):
    with pytest.raises(TaskError, match=message):
        await swe.reset({**swebench_row, **change})


async def test_bad_generated_tasks_are_task_errors(swe):
    task = builtin_tasks("swe", "train")[0]
    for change, message in (({"hidden_tests": {}}, "'hidden_tests' is empty"),
                            ({"files": {"../x.py": ""}}, "must be relative"), ({"issue": 3}, "'issue' must be")):
        with pytest.raises(TaskError, match=message):
            await swe.reset({**task, **change})


async def test_an_outside_harness_checkout_is_graded_like_an_episode(tmp_path):
    task = builtin_tasks("swe", "eval")[1]
    where = tmp_path / "work"
    base = checkout(task, where)
    new_tests = [n.split("::")[1] for n in task["FAIL_TO_PASS"]]
    assert not any(name in (where / path).read_text() for path in task["hidden_tests"] for name in new_tests)
    untouched = await grade_patch(task, workspace_patch(where, base), isolation="plain")
    assert untouched.details["patch"] == "" and not untouched.passed
    subprocess.run(["bash", "-c", task["solution"][0]], cwd=where, check=True)
    (where / task["FAIL_TO_PASS"][0].split("::")[0]).write_text("def test_nothing():\n    pass\n")
    patch = workspace_patch(where, base)
    fixed = await grade_patch(task, patch, isolation="plain")
    assert fixed.passed and fixed.score == 1.0 and fixed.details["dropped_paths"] == [task["FAIL_TO_PASS"][0].split("::")[0]]
    with pytest.raises(TaskError, match="is not empty"):
        checkout(task, where)
