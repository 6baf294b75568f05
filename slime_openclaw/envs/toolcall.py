r"""``toolcall``: word problems with a Python interpreter tool; outcome = the boxed answer.

Tool: ``python`` (parameter ``code``): the code runs as ``python3 -I -`` in the episode's
sandbox (``sandbox``: bwrap or plain, a time limit that kills the process group, an
address-space limit, output cut with a marker); print what you want to see. A reply
without a tool call ends the episode. The answer is the last ``\boxed{...}`` in the
agent's replies, compared exactly (surrounding whitespace stripped) with the task's.

Task (one JSON line; ``solution_code`` only for reference trajectories and the optional
``mistaken_code`` / ``mistaken_answer`` only for pre-training data, never shown)::

    {"id": "add-1", "question": "Ada has 3 apples and buys 4 more. How many ...?",
     "answer": "7", "solution_code": "print(3 + 4)", "mistaken_code": "print(3 * 4)", "mistaken_answer": "12"}

Reference trajectory (``ToolCallEnv.reference_replies(task)``): an assistant message
with one ``python`` tool call running ``solution_code``
(``{"id": "call_0", "type": "function", "function": {"name": "python", "arguments":
"{\"code\": ...}"}}``), then an assistant message ``"The answer is \\boxed{<answer>}."``.
"""

from __future__ import annotations

from typing import Any

from slime_openclaw.envs import toolcall_tasks
from slime_openclaw.envs.base import Message, Observation, Outcome
from slime_openclaw.envs.sandbox import Limits
from slime_openclaw.envs.sandboxed import Handler, SandboxEnv, run_signals, run_text
from slime_openclaw.envs.tasks import TaskError, require
from slime_openclaw.envs.tools import assistant_call, function_tool

SYSTEM_PROMPT = (
    "Solve the problem. You can run Python code with the python tool; print the values you need. "
    "Give the final answer as \\boxed{answer}."
)
TOOLS = [function_tool("python", "Run Python 3 code and return what it prints.", {"code": "the Python program"})]


def _replies(code: str, answer: str) -> list[Message]:
    return [assistant_call("call_0", "python", {"code": code}),
            {"role": "assistant", "content": f"The answer is \\boxed{{{answer}}}."}]


class ToolCallEnv(SandboxEnv):
    """Word problems, a Python tool, an exactly checked boxed answer."""

    def __init__(self, isolation: str = "auto", timeout: float = 10.0, memory_mb: int = 512,
                 max_output: int = 2000, max_turns: int = 6):
        super().__init__(isolation=isolation, max_turns=max_turns,
                         limits=Limits(timeout=timeout, max_output=max_output, memory_mb=memory_mb))

    generate_tasks = staticmethod(toolcall_tasks.generate_tasks)

    @staticmethod
    def reference_replies(task: dict[str, Any]) -> list[Message]:
        """Assistant replies that solve a task carrying ``solution_code``."""
        return _replies(require(task, "solution_code", str, "toolcall"), _expected(task))

    @staticmethod
    def mistaken_replies(task: dict[str, Any]) -> list[Message] | None:
        """The same shape of replies for the task's ``mistaken_code`` (a misreading of the
        question, answered with what it prints); None for a task without one."""
        if "mistaken_code" not in task:
            return None
        return _replies(require(task, "mistaken_code", str, "toolcall"),
                        require(task, "mistaken_answer", str, "toolcall").strip())

    def _schemas(self) -> list[dict[str, Any]]:
        return TOOLS

    def _handlers(self) -> dict[str, Handler]:
        return {"python": self._python}

    async def _open(self, task: dict[str, Any]) -> Observation:
        question = require(task, "question", str, "toolcall")
        _expected(task)
        return Observation(messages=[{"role": "system", "content": SYSTEM_PROMPT},
                                     {"role": "user", "content": question}], tools=TOOLS)

    async def _python(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        assert self.sandbox is not None
        result = await self.sandbox.run("exec python3 -I -", stdin=arguments["code"])
        return run_text(result), run_signals(result)

    def _end_without_call(self, reply: Message) -> str:
        return "answer" if boxed_answer(_text(reply)) is not None else "no_tool_call"

    async def _measure(self) -> Outcome:
        given = None
        for reply in self.replies:
            given = boxed_answer(_text(reply)) or given
        expected = _expected(self.task)
        passed = given is not None and given.strip() == expected
        return Outcome(score=1.0 if passed else 0.0, passed=passed,
                       details={"expected": expected, "given": given, **self.episode_details()})


def boxed_answer(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` in ``text`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return text[begin:index].strip()
            depth -= 1
    return None


def _text(reply: Message) -> str:
    content = reply.get("content")
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _expected(task: dict[str, Any]) -> str:
    answer = require(task, "answer", (str, int, float), "toolcall")
    text = str(answer).strip()
    if not text:
        raise TaskError(f"toolcall task {task.get('id', '?')!r}: 'answer' is empty")
    return text
