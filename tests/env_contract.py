"""The contract every environment must pass, as a reusable suite.

Subclass ``EnvContract`` in a test module and give it a ``case`` fixture returning an
``EnvCase``: how to build the environment, a task, the replies that solve it, and the
replies that misbehave (run forever, flood the output, try to read or edit the hidden
checks). The suite runs whole episodes through ``reset``/``step``/``outcome``/``close``
and checks the time limits, the output bound, that nothing hidden leaks, and that
``close`` is idempotent and leaves no process and no temporary directory behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from waiting import eventually

from slime_openclaw.envs import Observation, Outcome, Step


@dataclass
class EnvCase:
    """One environment under contract."""

    make: Callable[[], Any]
    """A fresh environment (built the way users build it)."""
    task: dict[str, Any]
    """A task the solving replies pass and the others fail."""
    solve: list[dict[str, Any]]
    """Assistant replies that pass every check."""
    call: Callable[[str], dict[str, Any]]
    """The assistant reply that runs this program text with the environment's main tool."""
    forever: str
    """Program text that never ends; it must contain ``token`` so leftovers can be found."""
    flood: str
    """Program text that prints without end."""
    peeks: list[str]
    """Program texts that try to read or edit the hidden checks / the expected answer."""
    secret: str
    """Text that exists only in the checks / expected answer; must never reach the agent."""
    timeout: float
    """The per-command timeout the environment was built with."""
    max_output: int
    """The output bound the environment was built with."""
    token: str = field(default_factory=lambda: f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(900) + 100}")
    """A unique number used in ``forever`` (``sleep <token>``) to find leftover processes."""


def processes_with(text: str) -> list[int]:
    """Pids whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def _text(step: Step) -> str:
    return json.dumps(step.messages)


class EnvContract:
    """Tests every environment passes; needs a ``case`` fixture (an ``EnvCase``)."""

    @pytest.fixture
    def private_tmp(self, monkeypatch):
        """Temporary files of the test go to a fresh directory (traversable by ``nobody``)."""
        base = Path(tempfile.mkdtemp(prefix="envs-contract-", dir="/tmp"))
        base.chmod(0o711)
        monkeypatch.setattr(tempfile, "tempdir", str(base))
        yield base
        monkeypatch.undo()
        leftovers = list(base.iterdir())
        shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"temporary directories left behind: {leftovers}"

    async def test_reset_opens_with_messages_and_tools(self, case: EnvCase, private_tmp):
        env = case.make()
        task = json.loads(json.dumps(case.task))
        try:
            obs = await env.reset(task)
        finally:
            await env.close()
        assert isinstance(obs, Observation)
        assert obs.messages and all(m["role"] in ("system", "user") for m in obs.messages)
        for tool in obs.tools:
            assert tool["type"] == "function" and tool["function"]["name"]
            assert tool["function"]["parameters"]["type"] == "object"
        assert task == case.task, "reset must not change the task"
        assert case.secret not in json.dumps(obs.messages) + json.dumps(obs.tools)

    async def test_solving_replies_pass_and_outcome_is_stable(self, case: EnvCase, private_tmp):
        env = case.make()
        try:
            await env.reset(case.task)
            steps = [await env.step(reply) for reply in case.solve]
            first, second = await env.outcome(), await env.outcome()
        finally:
            await env.close()
        assert all(isinstance(s, Step) for s in steps) and steps[-1].done
        assert not any(s.done for s in steps[:-1])
        for step, reply in zip(steps, case.solve, strict=True):
            ids = [c["id"] for c in reply.get("tool_calls") or []]
            assert [m.get("tool_call_id") for m in step.messages] == ids
        assert isinstance(first, Outcome) and first.passed and first.score == 1.0
        assert first == second

    async def test_giving_up_fails_and_steps_after_the_end_are_refused(self, case: EnvCase, private_tmp):
        env = case.make()
        try:
            await env.reset(case.task)
            step = await env.step({"role": "assistant", "content": "I give up."})
            outcome = await env.outcome()
            assert step.done and step.messages == []
            with pytest.raises(RuntimeError):
                await env.step({"role": "assistant", "content": "again"})
        finally:
            await env.close()
        assert not outcome.passed and outcome.score < 1.0

    async def test_a_command_that_runs_forever_is_killed_at_its_timeout(self, case: EnvCase, private_tmp):
        env = case.make()
        try:
            await env.reset(case.task)
            started = time.monotonic()
            step = await env.step(case.call(case.forever.replace("TOKEN", case.token)))
            took = time.monotonic() - started
            assert step.info["timed_out"] is True and step.info["exit_code"] is None
            assert "timed out" in _text(step) and not step.done
            assert case.timeout * 0.9 <= took < case.timeout + 15
            await eventually(lambda: not processes_with(case.token), "the timed-out command is gone", timeout_s=5)
            later = await env.step(case.solve[0])  # the episode goes on
            assert later.info.get("timed_out") is False
        finally:
            await env.close()

    async def test_an_output_flood_is_cut_with_a_marker(self, case: EnvCase, private_tmp):
        env = case.make()
        try:
            await env.reset(case.task)
            step = await env.step(case.call(case.flood))
        finally:
            await env.close()
        content = step.messages[0]["content"]
        assert step.info["truncated"] is True
        assert "bytes of output truncated" in content
        assert len(content.encode()) < case.max_output + 400

    async def test_hidden_checks_can_be_neither_read_nor_edited(self, case: EnvCase, private_tmp):
        env = case.make()
        try:
            await env.reset(case.task)
            seen = [_text(await env.step(case.call(peek))) for peek in case.peeks]
            outcome = await env.outcome()
        finally:
            await env.close()
        for text in seen:
            assert case.secret not in text
        assert not outcome.passed, "peeking at or editing the checks must not pass them"

    async def test_close_is_idempotent_and_leaves_nothing(self, case: EnvCase, private_tmp):
        env = case.make()
        await env.reset(case.task)
        await env.step(case.call(case.forever.replace("TOKEN", case.token)))
        await env.reset(case.task)  # a second episode on the same instance
        await env.step(case.solve[0])
        await env.close()
        await env.close()
        await eventually(lambda: not processes_with(case.token), "no process of the episodes is left", timeout_s=5)
        assert list(private_tmp.iterdir()) == []
