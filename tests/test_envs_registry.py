"""The environment interface, the registry (names, dotted paths, typed --env-arg) and task files."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from slime_openclaw.envs import (
    BUILTIN,
    Environment,
    EnvSpec,
    Observation,
    Outcome,
    Step,
    TaskError,
    build_env,
    load_env_class,
    parse_env_args,
    read_tasks,
    write_tasks,
)
from slime_openclaw.errors import ConfigError


class Counter(Environment):
    """A toy environment: counts replies, done after ``limit``; typed constructor arguments."""

    def __init__(self, limit: int = 2, scale: float = 1.0, loud: bool = False, label: str = "x",
                 extra: dict | None = None):
        self.limit, self.scale, self.loud, self.label, self.extra = limit, scale, loud, label, extra
        self.count = 0

    async def reset(self, task):
        self.count = 0
        return Observation(messages=[{"role": "user", "content": task["q"]}], tools=[])

    async def step(self, reply):
        self.count += 1
        return Step(messages=[{"role": "user", "content": str(self.count)}], done=self.count >= self.limit)

    async def outcome(self):
        return Outcome(score=1.0, passed=True, details={"count": self.count})


class NotAnEnv:
    def reset(self, task):  # not async
        return None


def test_contract_types_are_frozen_and_keyword_built():
    obs = Observation(messages=[{"role": "user", "content": "hi"}], tools=[])
    step = Step(messages=[], done=True)
    out = Outcome(score=0.5, passed=False, details={})
    assert step.info == {}
    for value in (obs, step, out):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.messages = []  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Outcome(score=1.5, passed=True)


async def test_custom_env_by_dotted_path_with_typed_args():
    env = build_env(f"{__name__}.Counter", ["limit=3", "scale=2", "loud=yes", "label=7", 'extra={"a": 1}'])
    assert (env.limit, env.scale, env.loud, env.label, env.extra) == (3, 2.0, True, "7", {"a": 1})
    async with env:
        await env.reset({"q": "go"})
        steps = [await env.step({"role": "assistant", "content": "a"}) for _ in range(3)]
    assert [s.done for s in steps] == [False, False, True]


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("nope", [], "unknown environment 'nope'"),
        ("no_such_pkg.mod.Env", [], "cannot import module 'no_such_pkg.mod'"),
        (f"{__name__}.Missing", [], "has no class 'Missing'"),
        (f"{__name__}.NotAnEnv", [], "lacks async method(s) reset, step, outcome, close"),
        (f"{__name__}.Counter", ["limit=three"], "'three' is not a valid int"),
        (f"{__name__}.Counter", ["loud=maybe"], "'maybe' is not a valid bool"),
        (f"{__name__}.Counter", ["colour=red"], "unknown argument 'colour' (accepts: limit, scale"),
        (f"{__name__}.Counter", ["limit"], "expected key=value"),
        (f"{__name__}.Counter", ["limit=1", "limit=2"], "given twice"),
    ],
)
def test_bad_names_and_args_are_one_line_config_errors(name, args, message):
    with pytest.raises(ConfigError) as info:
        EnvSpec.parse(name, args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_spec_pickles_and_builds_fresh_instances():
    spec = EnvSpec.parse(f"{__name__}.Counter", ["limit=5"])
    clone = pickle.loads(pickle.dumps(spec))
    first, second = clone.build(), clone.build()
    assert first is not second and first.limit == second.limit == 5
    assert spec.path == f"{__name__}.Counter"


def test_builtin_names_map_to_dotted_paths():
    assert BUILTIN["terminal"] == "slime_openclaw.envs.terminal.TerminalEnv"
    assert BUILTIN["toolcall"] == "slime_openclaw.envs.toolcall.ToolCallEnv"
    assert BUILTIN["swe"] == "slime_openclaw.envs.swe.SweEnv"
    assert EnvSpec("terminal").path == BUILTIN["terminal"]


def test_parse_env_args_keeps_strings():
    assert parse_env_args(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}


def test_task_file_round_trip_and_errors(tmp_path):
    good = tmp_path / "tasks.jsonl"
    assert write_tasks(good, [{"id": "a", "q": "é"}, {"id": "b"}]) == 2
    good.write_text(good.read_text() + "\n  \n")
    assert read_tasks(good) == [{"id": "a", "q": "é"}, {"id": "b"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n\n[1, 2]\n')
    with pytest.raises(TaskError, match=r"bad.jsonl:3: a task must be a JSON object, got list"):
        read_tasks(bad)
    bad.write_text('{"id": 1}\n{"id": \n')
    with pytest.raises(TaskError, match=r"bad.jsonl:2: not valid JSON"):
        read_tasks(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TaskError, match="no tasks"):
        read_tasks(tmp_path / "empty.jsonl")
    with pytest.raises(TaskError, match="tasks file not found"):
        read_tasks(tmp_path / "missing.jsonl")


def test_load_env_class_accepts_duck_typed_classes():
    assert load_env_class(f"{__name__}.Counter") is Counter
