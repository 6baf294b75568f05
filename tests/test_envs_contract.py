"""The environment contract (tests/env_contract.py) for the built-ins, in each isolation
mode, and for a toy custom environment built by dotted path like a user's would be."""

from __future__ import annotations

import json
import secrets
import shlex
from typing import Any

import pytest
from env_contract import EnvCase, EnvContract

from slime_openclaw.envs import Environment, Observation, Outcome, Step, build_env
from slime_openclaw.envs.sandbox import Limits, Sandbox, bwrap_works
from slime_openclaw.envs.tools import assistant_call, function_tool

TIMEOUT = 1.5
MAX_OUTPUT = 600
SECRET = f"zq-{secrets.token_hex(6)}"
"""Made at run time, so no file on disk holds it (a leak is the only way to see it)."""
FACTORS = (secrets.randbelow(9000) + 1000, secrets.randbelow(9000) + 1000)
PRODUCT = str(FACTORS[0] * FACTORS[1])


class ToyShellEnv(Environment):
    """A custom environment written against the public pieces only: one ``sh`` tool, and the
    episode passes when ``answer.txt`` holds the reverse of the task's word."""

    def __init__(self, timeout: float = 10.0, max_output: int = 4000, isolation: str = "auto"):
        self.limits = Limits(timeout=timeout, max_output=max_output)
        self.isolation = isolation
        self.sandbox: Sandbox | None = None
        self.task: dict[str, Any] = {}
        self.tools = [function_tool("sh", "Run a shell command.", {"command": "the command"})]

    async def reset(self, task):
        await self.close()
        self.task, self.sandbox = task, Sandbox(isolation=self.isolation, limits=self.limits)
        return Observation(messages=[{"role": "user", "content": f"Write the reverse of {task['word']} to answer.txt."}],
                           tools=self.tools)

    async def step(self, reply):
        assert self.sandbox is not None
        if self.sandbox.closed or not reply.get("tool_calls"):
            if self.task.get("_done"):
                raise RuntimeError("episode over")
            self.task = {**self.task, "_done": True}
            return Step(messages=[], done=True)
        messages, info = [], {}
        for call in reply["tool_calls"]:
            result = await self.sandbox.run(json.loads(call["function"]["arguments"])["command"])
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.output})
            info = {"exit_code": result.exit_code, "timed_out": result.timed_out, "truncated": result.truncated}
        return Step(messages=messages, done=False, info=info)

    async def outcome(self):
        assert self.sandbox is not None
        result = await self.sandbox.run("cat answer.txt")
        passed = result.exit_code == 0 and result.output.strip() == self.task["word"][::-1]
        return Outcome(score=float(passed), passed=passed, details={"isolation": self.sandbox.mode})

    async def close(self):
        if self.sandbox is not None:
            await self.sandbox.close()


def _case(env: str, args: list[str], tool: str, key: str, solution: str, final: str, **fields: Any) -> EnvCase:
    """The parts every case shares: built with the test limits, solved by one call then a final answer."""
    return EnvCase(
        make=lambda: build_env(env, [*args, f"timeout={TIMEOUT}", f"max_output={MAX_OUTPUT}"]),
        solve=[assistant_call("call_0", tool, {key: solution}), {"role": "assistant", "content": final}],
        call=lambda text: assistant_call("call_x", tool, {key: text}),
        timeout=TIMEOUT, max_output=MAX_OUTPUT, **fields,
    )


def _hunt(name: str) -> str:
    """A command that searches the whole file system for the secret and for a file ``name``."""
    return (f"grep -rs {SECRET} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head; "
            f"find / -name '{name}' -not -path '/proc/*' 2>/dev/null")


def terminal_case(mode: str) -> EnvCase:
    task = {"id": "contract", "instruction": "Write the word ready to state.txt.", "files": {"seed.txt": "x\n"},
            "checks": [{"name": "state", "run": f'[ "$(cat state.txt)" = ready ] && echo {SECRET} > /dev/null'},
                       {"name": "expected", "run": 'cmp -s "$CHECKS_DIR/expected.txt" state.txt'}],
            "check_files": {"expected.txt": "ready\n", "notes.txt": SECRET}}
    return _case(
        "terminal", [f"isolation={mode}"], "bash", "command", "echo ready > state.txt", "Done.",
        task=task, forever="sleep TOKEN", flood="while true; do echo flood flood flood; done",
        peeks=['echo "$CHECKS_DIR"; ls -la / /tmp /run 2>&1; cat "$CHECKS_DIR"/* 2>&1',
               _hunt("expected.txt"),
               "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -i check",
               'echo "exit 0" > expected.txt; mkdir -p checks; echo ok > "$CHECKS_DIR/expected.txt" 2>&1; echo ok'],
        secret=SECRET,
    )


def toolcall_case(mode: str) -> EnvCase:
    return _case(
        "toolcall", [f"isolation={mode}"], "python", "code", f"print({FACTORS[0]} * {FACTORS[1]})",
        f"So it is \\boxed{{{PRODUCT}}}.",
        task={"id": "contract", "question": f"What is {FACTORS[0]} * {FACTORS[1]}?", "answer": PRODUCT},
        forever="import subprocess\nsubprocess.run(['sleep', 'TOKEN'])", flood="while True: print('flood ' * 20)",
        peeks=["import os, sys; print(dict(os.environ)); print(sys.argv); print(os.listdir('.'))",
               f"import subprocess; print(subprocess.run('grep -rs {PRODUCT} / --exclude-dir=proc --exclude-dir=sys "
               "2>/dev/null | head -3', shell=True, capture_output=True, text=True).stdout)"],
        secret=PRODUCT,
    )


def swe_case(mode: str) -> EnvCase:
    task = {"id": "contract", "issue": "calc.double(2) returns 5; it should return 4.",
            "files": {"calc.py": "def double(x):\n    return x * 2 + 1\n",
                      "tests/test_calc.py": "import calc\n\n\ndef test_callable():\n    assert callable(calc.double)\n"},
            "hidden_tests": {"tests/test_calc.py": f"import calc\n\n\ndef test_double():\n    assert calc.double(2) == 4  # {SECRET}\n"
                             "\n\ndef test_type():\n    assert isinstance(calc.double(1), int)\n"},
            "FAIL_TO_PASS": ["tests/test_calc.py::test_double"], "PASS_TO_PASS": ["tests/test_calc.py::test_type"]}
    hook = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
            "    outcome = yield\n    outcome.get_result().outcome = 'passed'\n")
    return _case(
        "swe", [f"isolation={mode}"], "bash", "command", "sed -i 's/ + 1//' calc.py", "Fixed.",
        task=task, forever="sleep TOKEN", flood="yes flood flood flood",
        peeks=["ls -la / /tmp /run 2>&1; env; cat tests/* 2>&1; git log --all -p 2>&1 | head -40",
               _hunt("test_calc.py"),
               f"printf {shlex.quote(hook)} > conftest.py; cp conftest.py tests/conftest.py; "
               "printf 'def test_double():\\n    pass\\n\\n\\ndef test_type():\\n    pass\\n' > tests/test_calc.py; echo ok"],
        secret=SECRET,
    )


def toy_case() -> EnvCase:
    return _case(f"{__name__}.ToyShellEnv", [], "sh", "command", "echo normal > answer.txt", "done",
                 task={"word": "lamron"}, forever="sleep TOKEN", flood="yes flood", peeks=["env; ls -la"],
                 secret="normal")


_NO_BWRAP = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap unusable here")
CASES = {"terminal-bwrap": lambda: terminal_case("bwrap"), "terminal-plain": lambda: terminal_case("plain"),
         "toolcall-bwrap": lambda: toolcall_case("bwrap"), "toolcall-plain": lambda: toolcall_case("plain"),
         "swe-bwrap": lambda: swe_case("bwrap"), "swe-plain": lambda: swe_case("plain"), "custom-toy": toy_case}


@pytest.fixture(params=[pytest.param(name, marks=[_NO_BWRAP] if "bwrap" in name else []) for name in CASES])
def case(request) -> EnvCase:
    return CASES[request.param]()


class TestEnvironmentContract(EnvContract):
    """Every case above runs the whole contract."""
