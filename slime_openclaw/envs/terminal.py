"""``terminal``: a bash workspace per episode, graded by hidden checks after the episode.

Tools: ``bash`` (parameter ``command``; a fresh ``bash -c`` in the workspace, state
carries over through files) and ``write_file`` (``path``, ``content``). Every command has
a deadline that kills its whole process group, output is cut to ``max_output`` bytes with
a marker, the environment is cleared and ``HOME`` is the workspace. Isolation: see
``sandbox`` (``bwrap`` where it works, else ``plain``; the outcome says which).

Task (one JSON line; ``id`` and ``difficulty`` optional, ``solution`` only for reference
trajectories and never shown to the agent)::

    {"id": "sum-3", "instruction": "Write the sum of the numbers in nums.txt to sum.txt.",
     "files": {"nums.txt": "4\\n5\\n"},              # written into the workspace first
     "checks": [{"name": "sum", "run": "[ \\"$(cat sum.txt)\\" = 9 ]"}],
     "check_files": {"expected.txt": "9\\n"},        # seen by checks only, at $CHECKS_DIR
     "solution": ["awk '{s+=$1} END {print s}' nums.txt > sum.txt"]}

Checks are shell snippets run in the workspace after the episode (exit 0 = passed);
score = checks passed / checks. They exist only in memory during the episode; check files
are written to a private directory only while checks run, bound read-only for them. With
``probe_checks`` the checks also run after every step, in a throwaway copy of the
workspace, so ``Step.info`` can say which checks the step fixed or broke (the copy is
discarded, so nothing a check revealed reaches the agent).

Outside harnesses (an agent working in its own directory): ``prepare_workspace(task, dir)``
writes the task's files there and returns the instruction; ``grade_workspace(task, dir)``
runs the checks on a copy of that directory in a fresh sandbox, as after an episode.

Reference trajectory (``TerminalEnv.reference_replies(task)``): one assistant message
per ``solution`` command, each with a single ``bash`` tool call
(``{"id": "call_<i>", "type": "function", "function": {"name": "bash", "arguments":
"{\\"command\\": ...}"}}``), then a final assistant message without tool calls.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from slime_openclaw.envs import terminal_tasks
from slime_openclaw.envs.base import Message, Observation, Outcome
from slime_openclaw.envs.sandbox import Limits, Sandbox
from slime_openclaw.envs.sandboxed import Handler, SandboxEnv, run_signals, run_text, write_file_tool
from slime_openclaw.envs.tasks import TaskError, require
from slime_openclaw.envs.tools import assistant_call, function_tool

SYSTEM_PROMPT = (
    "You are working in a bash workspace (the current directory). Use the bash tool to run a "
    "command and the write_file tool to write a file. Each command runs in a fresh shell in the "
    "workspace. When the task is done, answer without calling a tool."
)
TOOLS = [
    function_tool("bash", "Run a bash command in the workspace; returns its output and exit code.",
                  {"command": "the command line to run"}),
    function_tool("write_file", "Write a text file in the workspace (parent directories are created).",
                  {"path": "file path relative to the workspace", "content": "the full file content"}),
]


class TerminalEnv(SandboxEnv):
    """A bash workspace graded by hidden checks."""

    TASKS_VERSION = 2
    """Bumped when the generated tasks change (the cached pre-trained policies follow): 2, a
    count_matches task's word is always in its log and no other word is in as many lines."""

    def __init__(self, isolation: str = "auto", timeout: float = 10.0, max_output: int = 4000,
                 max_turns: int = 10, memory_mb: int = 1024, check_timeout: float = 20.0,
                 probe_checks: bool = True):
        super().__init__(isolation=isolation, max_turns=max_turns,
                         limits=Limits(timeout=timeout, max_output=max_output, memory_mb=memory_mb))
        self.check_timeout, self.probe_checks = check_timeout, probe_checks
        self._states: dict[str, bool] = {}

    generate_tasks = staticmethod(terminal_tasks.generate_tasks)

    @staticmethod
    def reference_replies(task: dict[str, Any]) -> list[Message]:
        """Assistant replies that solve a task carrying a ``solution`` (list of commands)."""
        commands = require(task, "solution", list, "terminal")
        replies = [assistant_call(f"call_{i}", "bash", {"command": c}) for i, c in enumerate(commands)]
        return [*replies, {"role": "assistant", "content": "Done."}]

    def _schemas(self) -> list[dict[str, Any]]:
        return TOOLS

    def _handlers(self) -> dict[str, Handler]:
        return {"bash": self._bash, "write_file": self._write}

    async def _open(self, task: dict[str, Any]) -> Observation:
        instruction = require(task, "instruction", str, "terminal")
        _checks(task)
        assert self.sandbox is not None
        for path, content in require_files(task, "files").items():
            result = await self.sandbox.write_file(path, content)
            if result.exit_code != 0:
                raise TaskError(f"terminal task {task.get('id', '?')!r}: cannot write {path!r}: {result.output}")
        require_files(task, "check_files")
        self._states = await self._probe() if self.probe_checks else {}
        return Observation(messages=[{"role": "system", "content": SYSTEM_PROMPT},
                                     {"role": "user", "content": instruction}], tools=TOOLS)

    async def _bash(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.sandbox is not None
        result = await self.sandbox.run(arguments["command"])
        return run_text(result), run_signals(result)

    async def _write(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.sandbox is not None
        return await write_file_tool(self.sandbox, arguments)

    async def _after_step(self, info: dict[str, Any]) -> None:
        if not self.probe_checks:
            return
        states = await self._probe()
        info["checks_fixed"] = [n for n, ok in states.items() if ok and not self._states.get(n)]
        info["checks_broken"] = [n for n, ok in states.items() if not ok and self._states.get(n)]
        info["checks_failing"] = [n for n, ok in states.items() if not ok]
        self._states = states

    async def _probe(self) -> dict[str, bool]:
        """Check states in a throwaway copy of the workspace."""
        assert self.sandbox is not None
        twin = self.sandbox.clone()
        try:
            return {r["name"]: r["passed"] for r in await self._run_checks(twin)}
        finally:
            await twin.close()

    async def _run_checks(self, sandbox: Sandbox) -> list[dict[str, Any]]:
        return await run_checks(sandbox, self.task, self.check_timeout)

    async def _measure(self) -> Outcome:
        assert self.sandbox is not None
        return checks_outcome(await self._run_checks(self.sandbox), self.episode_details())


async def run_checks(sandbox: Sandbox, task: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """Run a task's checks in ``sandbox``'s workspace (check files bound at ``$CHECKS_DIR`` meanwhile)."""
    private = sandbox.make_private_dir(require_files(task, "check_files"))
    results = []
    for check in _checks(task):
        run = await sandbox.run(check["run"], timeout=timeout, binds={"CHECKS_DIR": private})
        results.append({"name": check["name"], "passed": run.exit_code == 0, "exit_code": run.exit_code,
                        "output": run.output[-500:]})
    return results


def checks_outcome(results: list[dict[str, Any]], extra: dict[str, Any]) -> Outcome:
    """score = checks passed / checks, ``passed`` = all of them."""
    passed = sum(r["passed"] for r in results)
    return Outcome(score=passed / len(results), passed=passed == len(results), details={"checks": results, **extra})


def prepare_workspace(task: dict[str, Any], directory: str | Path) -> str:
    """Write a task's ``files`` (never its checks) into an empty ``directory`` for a harness that
    works there; returns the instruction to give it (``grade_workspace`` grades the result)."""
    instruction = require(task, "instruction", str, "terminal")
    _checks(task)
    where = Path(directory)
    where.mkdir(parents=True, exist_ok=True)
    if any(where.iterdir()):
        raise TaskError(f"terminal workspace: {where} is not empty")
    for rel, content in require_files(task, "files").items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(content, encoding="utf-8")
    return instruction


async def grade_workspace(task: dict[str, Any], directory: str | Path, *, isolation: str = "auto",
                          check_timeout: float = 20.0) -> Outcome:
    """The task's checks run, as after an episode, on a copy of ``directory`` in a fresh sandbox."""
    source = Sandbox(isolation=isolation)
    try:
        shutil.rmtree(source.host_workspace)
        shutil.copytree(directory, source.host_workspace, symlinks=True)
        twin = source.clone()  # hands the copy to the sandbox user (plain mode as root: nobody)
    finally:
        await source.close()
    try:
        return checks_outcome(await run_checks(twin, task, check_timeout), twin.describe())
    finally:
        await twin.close()


def _checks(task: dict[str, Any]) -> list[dict[str, str]]:
    raw = require(task, "checks", list, "terminal")
    if not raw:
        raise TaskError(f"terminal task {task.get('id', '?')!r}: 'checks' is empty")
    checks = []
    for index, check in enumerate(raw):
        if isinstance(check, str):
            check = {"run": check}
        if not isinstance(check, dict) or not isinstance(check.get("run"), str):
            raise TaskError(f"terminal task {task.get('id', '?')!r}: check {index} needs a string 'run'")
        checks.append({"name": str(check.get("name") or f"check_{index}"), "run": check["run"]})
    return checks


def require_files(task: dict[str, Any], key: str) -> dict[str, str]:
    """``task[key]`` as a path -> text mapping (absent = empty)."""
    files = task.get(key) or {}
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise TaskError(f"terminal task {task.get('id', '?')!r}: {key!r} must map paths to text")
    for path in files:
        if not path or path.startswith("/") or ".." in PurePosixPath(path).parts:
            raise TaskError(f"terminal task {task.get('id', '?')!r}: {key!r} path {path!r} must be relative, "
                            "inside the workspace")
    return files
