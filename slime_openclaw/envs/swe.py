"""``swe``: fix a bug in a small Python repository; graded by hidden tests in a clean copy.

An episode opens with an issue text and the repository (without the hidden tests) in the
workspace, committed to a local git repository as the base. Tools: ``bash`` (parameter
``command``; view, search, edit, run ``python3 -m pytest``), ``write_file`` (``path``,
``content``) and ``submit`` (no parameters). The episode ends at ``submit``, at a reply
without a tool call (the work is submitted as it stands), at ``max_turns`` or once
``time_limit`` seconds have passed.

Outcome: ``swe_grading.grade``: the agent's whole diff against the base, minus its edits
to protected paths (the hidden tests' files, ``conftest.py``, pytest configuration),
applied to a second, clean copy of the base; the hidden tests are put over it and run
with pytest there. score = share of the ``FAIL_TO_PASS`` + ``PASS_TO_PASS`` tests that
pass, ``passed`` = all of them. Editing, deleting or replacing tests in the workspace
changes nothing. With ``probe_tests`` the same grading runs after every step, so
``Step.info`` says which hidden tests the step fixed or broke (names only).

Tasks: generated ones (``swe_tasks``: ``issue``, ``files``, ``hidden_tests``,
``FAIL_TO_PASS``, ``PASS_TO_PASS``, ``solution``) or SWE-bench-shaped rows for a git
repository on disk: ``instance_id``, ``repo`` (a local path), ``base_commit``,
``problem_statement``, ``test_patch``, ``FAIL_TO_PASS``, ``PASS_TO_PASS`` (lists or JSON
strings); the workspace holds ``base_commit``'s tree, never the test patch.

Outside harnesses (an agent working in its own directory): ``checkout(task, dir)`` writes
the base there as a git repository, ``workspace_patch(dir, base)`` is its diff, and
``grade_patch(task, patch)`` grades it exactly as an episode is graded.

Reference trajectory (``SweEnv.reference_replies``): one ``bash`` call per ``solution``
command (a row's gold ``patch``, when present, is applied with ``git apply``), then a
``submit`` call.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from slime_openclaw.envs import swe_tasks
from slime_openclaw.envs.base import Message, Observation, Outcome
from slime_openclaw.envs.sandbox import Limits, resolve_isolation
from slime_openclaw.envs.sandboxed import Handler, SandboxEnv, run_signals, run_text, write_file_tool
from slime_openclaw.envs.swe_grading import (
    DIFF_SCRIPT,
    GIT,
    PY_ENV,
    Grade,
    SweSpec,
    grade,
    pytest_binds,
    spec_from_task,
    unpack,
    workspace_diff,
)
from slime_openclaw.envs.tasks import TaskError
from slime_openclaw.envs.terminal import TOOLS as TERMINAL_TOOLS
from slime_openclaw.envs.tools import assistant_call, function_tool

SYSTEM_PROMPT = (
    "You are a software engineer fixing an issue in the Python repository in the current directory. "
    "Use the bash tool to inspect files, search, edit and run commands (python3 -m pytest runs the tests), "
    "and write_file to write a whole file. Each command runs in a fresh shell in the repository. Change the "
    "source code, not the tests. When the fix is done, call submit."
)
TOOLS = [*TERMINAL_TOOLS, function_tool("submit", "Submit the repository as it is now; ends the episode.", {})]
INIT_SCRIPT = (
    "{git} init -q . && printf '__pycache__/\\n*.pyc\\n.pytest_cache/\\n' > .git/info/exclude "
    "&& {git} add -A . && {git} commit -q --no-verify -m base && {git} rev-parse HEAD"
)
PATCH_SHOWN = 20000
"""Characters of the agent's diff kept in ``Outcome.details``."""


class SweEnv(SandboxEnv):
    """A repository with a bug, an issue text, and hidden tests run in a clean copy."""

    def __init__(self, isolation: str = "auto", timeout: float = 30.0, max_output: int = 4000,
                 max_turns: int = 20, memory_mb: int = 1024, test_timeout: float = 120.0,
                 time_limit: float = 1800.0, probe_tests: bool = True):
        super().__init__(isolation=isolation, max_turns=max_turns,
                         limits=Limits(timeout=timeout, max_output=max_output, memory_mb=memory_mb))
        self.test_timeout, self.time_limit, self.probe_tests = test_timeout, time_limit, probe_tests
        self.spec: SweSpec | None = None
        self._base = ""
        self._binds: dict[str, Path] = {}
        self._states: dict[str, bool] = {}
        self._submitted, self._started = False, 0.0

    generate_tasks = staticmethod(swe_tasks.generate_tasks)

    @staticmethod
    def reference_replies(task: dict[str, Any]) -> list[Message]:
        """Replies that fix a task with a ``solution`` (commands) or a gold ``patch``, then submit."""
        commands = task.get("solution")
        if commands is None and isinstance(task.get("patch"), str):
            commands = [f"{GIT} apply - <<'SLIME_OPENCLAW_PATCH'\n{task['patch'].rstrip()}\nSLIME_OPENCLAW_PATCH"]
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise TaskError(f"swe task {task.get('id', task.get('instance_id', '?'))!r}: no 'solution' or 'patch'")
        replies = [assistant_call(f"call_{i}", "bash", {"command": c}) for i, c in enumerate(commands)]
        return [*replies, assistant_call(f"call_{len(commands)}", "submit", {}, content="The fix is in place.")]

    def _schemas(self) -> list[dict[str, Any]]:
        return TOOLS

    def _handlers(self) -> dict[str, Handler]:
        return {"bash": self._bash, "write_file": self._write, "submit": self._submit}

    async def _open(self, task: dict[str, Any]) -> Observation:
        self.spec = spec_from_task(task)
        self._submitted, self._started = False, time.monotonic()
        assert self.sandbox is not None
        await unpack(self.sandbox, self.spec.base_tar, self.test_timeout)
        init = await self.sandbox.run(INIT_SCRIPT.format(git=GIT), timeout=self.test_timeout)
        if init.exit_code != 0:
            raise TaskError(f"swe: cannot commit the base repository: {init.output.strip()[-300:]}")
        self._base = init.output.strip().splitlines()[-1]
        self._binds = pytest_binds(self.sandbox)
        self._states = (await self._grade("")).results if self.probe_tests else {}
        issue = (f"{self.spec.issue.strip()}\n\nThe repository is checked out in the current directory. Fix the "
                 "issue in the source code, then call submit.")
        return Observation(messages=[{"role": "system", "content": SYSTEM_PROMPT},
                                     {"role": "user", "content": issue}], tools=TOOLS)

    async def _bash(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.sandbox is not None
        result = await self.sandbox.run(arguments["command"], binds=self._binds, env=PY_ENV)
        return run_text(result), run_signals(result)

    async def _write(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.sandbox is not None
        return await write_file_tool(self.sandbox, arguments)

    async def _submit(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._submitted = True
        return "submitted; the hidden tests will be run on your changes", {}

    def _maybe_end(self, reply: Message, called: bool) -> None:
        if self._submitted:
            self.done, self.end_reason = True, "submit"
        elif called and time.monotonic() - self._started > self.time_limit:
            self.done, self.end_reason = True, "time_limit"
        else:
            super()._maybe_end(reply, called)

    async def _after_step(self, info: dict[str, Any]) -> None:
        if not self.probe_tests or self._submitted:
            return
        states = (await self._current())[1].results
        info["checks_fixed"] = [n for n, ok in states.items() if ok and not self._states.get(n)]
        info["checks_broken"] = [n for n, ok in states.items() if not ok and self._states.get(n)]
        info["checks_failing"] = [n for n, ok in states.items() if not ok]
        self._states = states

    async def _current(self) -> tuple[str | None, Grade]:
        """The workspace's diff against the base and its grade (all failing when no diff can be made)."""
        assert self.sandbox is not None and self.spec is not None
        patch, why = await workspace_diff(self.sandbox, self._base, self.test_timeout)
        if patch is None:
            return None, Grade({n: False for n in self.spec.fail_to_pass + self.spec.pass_to_pass}, {"error": why})
        return patch, await self._grade(patch)

    async def _grade(self, patch: str) -> Grade:
        assert self.sandbox is not None and self.spec is not None
        return await grade(self.spec, patch, isolation=self.sandbox.mode, limits=self.limits,
                           timeout=self.test_timeout)

    async def _measure(self) -> Outcome:
        assert self.spec is not None
        patch, result = await self._current()
        return grade_outcome(self.spec, patch, result, self.episode_details())


def grade_outcome(spec: SweSpec, patch: str | None, result: Grade, extra: dict[str, Any]) -> Outcome:
    """The ``Outcome`` of a grade: per-test results, the diff (cut), what grading saw, ``extra``."""
    f2p = set(spec.fail_to_pass)
    tests = [{"name": n, "kind": "FAIL_TO_PASS" if n in f2p else "PASS_TO_PASS", "passed": ok}
             for n, ok in result.results.items()]
    passed = sum(result.results.values())
    details = {"tests": tests, "patch": (patch or "")[:PATCH_SHOWN], **result.details, **extra}
    return Outcome(score=passed / len(tests), passed=passed == len(tests), details=details)


def checkout(task: dict[str, Any], directory: str | Path) -> str:
    """Write a task's base repository (never its hidden tests) into an empty ``directory`` and
    commit it to a fresh git repository there, for a harness that works in its own directory;
    returns the base commit (``workspace_patch`` diffs against it)."""
    spec, where = spec_from_task(task), Path(directory)
    where.mkdir(parents=True, exist_ok=True)
    if any(where.iterdir()):
        raise TaskError(f"swe checkout: {where} is not empty")
    with tarfile.open(fileobj=io.BytesIO(spec.base_tar)) as tar:
        tar.extractall(where, filter="data")
    return _host(INIT_SCRIPT.format(git=GIT), where).strip().splitlines()[-1]


def workspace_patch(directory: str | Path, base: str) -> str:
    """The diff of a ``checkout`` directory against its base commit (what ``grade_patch`` grades)."""
    return _host(DIFF_SCRIPT.format(git=GIT, base=base), Path(directory))


async def grade_patch(task: dict[str, Any], patch: str, *, isolation: str = "auto", test_timeout: float = 120.0,
                      memory_mb: int = 1024) -> Outcome:
    """Grade a diff made outside an episode exactly as an episode's: hidden tests in a clean copy."""
    spec, mode = spec_from_task(task), resolve_isolation(isolation)
    result = await grade(spec, patch, isolation=mode, limits=Limits(memory_mb=memory_mb), timeout=test_timeout)
    return grade_outcome(spec, patch, result, {"isolation": mode})


def _host(script: str, cwd: Path) -> str:
    run = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    if run.returncode != 0:
        raise TaskError(f"swe: git failed in {cwd}: {run.stderr.strip()[-300:]}")
    return run.stdout
