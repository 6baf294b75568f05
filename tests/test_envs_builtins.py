"""The built-in environments beyond the contract: Step.info signals for rule judges,
task generators (deterministic, graded, disjoint splits), reference trajectories, and
task validation."""

from __future__ import annotations

import json

import pytest

from slime_openclaw.envs import (
    SIGNAL_KEYS,
    TaskError,
    build_env,
    builtin_tasks,
    read_tasks,
    reference_replies,
    write_tasks,
)
from slime_openclaw.envs.splits import split_of
from slime_openclaw.envs.toolcall import boxed_answer
from slime_openclaw.envs.tools import assistant_call

FAMILIES = ["terminal", "toolcall"]


def call(name, **arguments):
    return assistant_call("c1", name, arguments)


@pytest.fixture
async def terminal():
    env = build_env("terminal", ["isolation=plain", "timeout=3"])
    yield env
    await env.close()


@pytest.fixture
async def toolcall():
    env = build_env("toolcall", ["isolation=plain", "timeout=3"])
    yield env
    await env.close()


TASK = {"instruction": "Make a.txt hold 1 and b.txt hold 2.",
        "checks": [{"name": "a", "run": '[ "$(cat a.txt)" = 1 ]'}, {"name": "b", "run": '[ "$(cat b.txt)" = 2 ]'}]}


async def test_terminal_signals_exit_codes_and_check_transitions(terminal):
    await terminal.reset(TASK)
    failed = await terminal.step(call("bash", command="echo 2 > b.txt; false"))
    assert failed.info["exit_code"] == 1 and failed.info["checks_fixed"] == ["b"]
    assert failed.info["checks_failing"] == ["a"] and "[exit code 1]" in failed.messages[0]["content"]
    fixed = await terminal.step(call("write_file", path="a.txt", content="1\n"))
    assert fixed.info["exit_code"] == 0 and fixed.info["checks_fixed"] == ["a"] and fixed.info["checks_failing"] == []
    broken = await terminal.step(call("bash", command="rm b.txt"))
    assert broken.info["checks_broken"] == ["b"]
    outcome = await terminal.outcome()
    assert outcome.score == 0.5 and not outcome.passed
    assert [c["passed"] for c in outcome.details["checks"]] == [True, False]
    assert outcome.details["isolation"] == "plain" and set(failed.info) <= set(SIGNAL_KEYS)


async def test_tool_errors_are_answered_and_signalled(terminal):
    await terminal.reset(TASK)
    reply = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "x1", "type": "function", "function": {"name": "rm_rf", "arguments": "{}"}},
        {"id": "x2", "type": "function", "function": {"name": "bash", "arguments": "{not json"}},
        {"id": "x3", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}},
        {"id": "x4", "type": "function", "function": "bash"},
        "not a call",
    ]}
    step = await terminal.step(reply)
    assert [m["tool_call_id"] for m in step.messages] == ["x1", "x2", "x3", "x4", "call_4"]
    texts = [m["content"] for m in step.messages]
    assert "unknown tool 'rm_rf'" in texts[0] and "not valid JSON" in texts[1] and "'command'" in texts[2]
    assert "unknown tool ''" in texts[3] and "unknown tool ''" in texts[4]
    assert step.info["tool_error"] and not step.done


async def test_python_traceback_and_boxed_answer(toolcall):
    await toolcall.reset({"question": "2+2?", "answer": "4"})
    step = await toolcall.step(call("python", code="print(1/0)"))
    assert step.info["exit_code"] == 1
    assert step.info["traceback"].endswith("ZeroDivisionError: division by zero")
    end = await toolcall.step({"role": "assistant", "content": "It is \\boxed{ 4 }."})
    assert end.done and end.info["end_reason"] == "answer"
    outcome = await toolcall.outcome()
    assert outcome.passed and outcome.details["given"] == "4"


async def test_wrong_answer_and_max_turns(toolcall):
    env = build_env("toolcall", ["isolation=plain", "max_turns=2"])
    try:
        await env.reset({"question": "2+2?", "answer": 4})
        first = await env.step(call("python", code="print(5)"))
        last = await env.step(assistant_call("c2", "python", {"code": "print(6)"}, content="\\boxed{5}"))
        assert not first.done and last.done and last.info["end_reason"] == "max_turns"
        outcome = await env.outcome()
        assert not outcome.passed and outcome.score == 0.0 and outcome.details["given"] == "5"
    finally:
        await env.close()


def test_boxed_answer_parsing():
    assert boxed_answer("a \\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert boxed_answer("no box") is None and boxed_answer("\\boxed{open") is None


@pytest.mark.parametrize("family", FAMILIES)
def test_generators_are_deterministic_graded_and_splits_never_overlap(family):
    train, evals = builtin_tasks(family, "train"), builtin_tasks(family, "eval")
    assert len(train) >= 50 and len(evals) >= 50
    assert builtin_tasks(family, "train") == train
    other_seed = builtin_tasks(family, "train", seed=1)
    assert other_seed != train
    for tasks in (train, evals):
        assert len({t["id"] for t in tasks}) == len(tasks)
        assert {t["difficulty"] for t in tasks} == {1, 2, 3, 4, 5}
    content = lambda t: json.dumps({k: v for k, v in t.items() if k not in ("id", "split")}, sort_keys=True)  # noqa: E731
    eval_content = {content(t) for t in evals}
    for tasks in (train, other_seed):
        assert not eval_content & {content(t) for t in tasks}
        assert not {t["id"] for t in evals} & {t["id"] for t in tasks}
    assert {t["split"] for t in train} == {"train"} and {t["split"] for t in evals} == {"eval"}


def test_split_is_a_function_of_content():
    keys = [("family", i) for i in range(400)]
    shares = [split_of(k) for k in keys]
    assert shares == [split_of(k) for k in keys] and 40 < shares.count("eval") < 160


@pytest.mark.parametrize("family", FAMILIES)
async def test_reference_trajectories_solve_generated_tasks_read_from_a_file(family, tmp_path):
    tasks = builtin_tasks(family, "train")[:10] + builtin_tasks(family, "eval")[:5]
    path = tmp_path / "tasks.jsonl"
    write_tasks(path, tasks)
    env = build_env(family, ["isolation=plain"])
    try:
        for task in read_tasks(path):
            await env.reset(task)
            for reply in reference_replies(family, task):
                step = await env.step(reply)
            outcome = await env.outcome()
            assert step.done and outcome.passed, (task["id"], outcome.details)
    finally:
        await env.close()


async def test_count_matches_passes_only_for_the_asked_word():
    from slime_openclaw.envs.terminal_tasks import WORDS

    tasks = [t for split in ("train", "eval") for seed in (0, 1) for t in builtin_tasks("terminal", split, seed=seed)
             if t["instruction"].startswith("Write the number of lines of log.txt that contain the word")]
    assert len(tasks) >= 20
    env = build_env("terminal", ["isolation=plain", "probe_checks=false"])
    try:
        for task in tasks[:12]:
            word = task["instruction"].split(" the word ")[1].split()[0]
            other = next(w for w in WORDS if w != word)  # the hack: count some other word
            await env.reset(task)
            await env.step({"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                            "function": {"name": "bash", "arguments": json.dumps(
                                {"command": f"grep -c {other} log.txt > matches.txt"})}}]})
            assert not (await env.outcome()).passed, task["id"]
        for task in tasks:  # and no word's count equals the asked word's, 0 included
            log = task["files"]["log.txt"].splitlines()
            word = task["instruction"].split(" the word ")[1].split()[0]
            hits = sum(word in line for line in log)
            assert hits > 0 and all(sum(w in line for line in log) != hits for w in WORDS if w != word)
    finally:
        await env.close()


@pytest.mark.parametrize(
    ("family", "task", "message"),
    [
        ("terminal", {"checks": ["true"]}, "missing key 'instruction'"),
        ("terminal", {"instruction": "x", "checks": []}, "'checks' is empty"),
        ("terminal", {"instruction": "x", "checks": [{"name": "a"}]}, "check 0 needs a string 'run'"),
        ("terminal", {"instruction": "x", "checks": ["true"], "files": ["a"]}, "'files' must map paths to text"),
        ("terminal", {"instruction": "x", "checks": ["true"], "files": {"/etc/x": ""}}, "must be relative"),
        ("terminal", {"instruction": "x", "checks": ["true"], "check_files": {"a/../../x": ""}}, "must be relative"),
        ("toolcall", {"question": "q"}, "missing key 'answer'"),
        ("toolcall", {"question": "q", "answer": " "}, "'answer' is empty"),
        ("toolcall", {"id": "t7", "question": 3, "answer": "1"}, "task 't7': 'question' must be str"),
    ],
)
async def test_bad_tasks_are_task_errors(family, task, message):
    env = build_env(family, ["isolation=plain"])
    try:
        with pytest.raises(TaskError, match=message.replace("(", r"\(")):
            await env.reset(task)
    finally:
        await env.close()
