"""The episode loop shared by tool-using environments that run in a ``Sandbox``.

``SandboxEnv`` owns one sandbox per episode (fresh on ``reset``, removed on ``close``),
counts turns, dispatches each tool call to a handler, answers every call with one tool
message (errors included), merges the handlers' signals into ``Step.info`` and ends the
episode when a reply has no tool call or ``max_turns`` is reached. Subclasses say what
opens an episode, which tools exist and how an episode is measured.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

from slime_openclaw.envs.base import Environment, Message, Observation, Outcome, Step
from slime_openclaw.envs.process import RunResult
from slime_openclaw.envs.sandbox import Limits, Sandbox
from slime_openclaw.envs.tools import last_traceback, parse_tool_calls, tool_message

Handler = Callable[[dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]


class SandboxEnv(Environment):
    """Base of the built-ins: sandbox lifecycle, turn limit, tool dispatch, signals."""

    def __init__(self, *, isolation: str, limits: Limits, max_turns: int):
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.isolation, self.limits, self.max_turns = isolation, limits, max_turns
        self.sandbox: Sandbox | None = None
        self.task: dict[str, Any] = {}
        self.replies: list[Message] = []
        self.done = False
        self.end_reason = ""
        self._outcome: Outcome | None = None

    @abc.abstractmethod
    async def _open(self, task: dict[str, Any]) -> Observation:
        """Check the task, prepare the sandbox, return the opening messages and tools."""

    @abc.abstractmethod
    def _handlers(self) -> dict[str, Handler]:
        """Tool name -> coroutine(arguments) -> (tool message text, info signals)."""

    @abc.abstractmethod
    async def _measure(self) -> Outcome:
        """Measure the finished (or abandoned) episode."""

    @abc.abstractmethod
    def _schemas(self) -> list[dict[str, Any]]:
        """The tool schemas shown to the agent."""

    async def _after_step(self, info: dict[str, Any]) -> None:
        """Add signals after the step's calls ran (terminal probes its checks here)."""

    async def reset(self, task: dict[str, Any]) -> Observation:
        await self.close()
        self.task, self.replies, self.done, self.end_reason, self._outcome = task, [], False, "", None
        self.sandbox = Sandbox(isolation=self.isolation, limits=self.limits)
        return await self._open(task)

    async def step(self, reply: Message) -> Step:
        if self.sandbox is None:
            raise RuntimeError("step() before reset()")
        if self.done:
            raise RuntimeError("the episode is over; call reset() for a new one")
        self.replies.append(reply)
        calls = parse_tool_calls(reply, self._schemas())
        info: dict[str, Any] = {}
        messages = []
        handlers = self._handlers()
        for call in calls:
            if call.error:
                text, signals = f"error: {call.error}", {"tool_error": call.error}
            else:
                text, signals = await handlers[call.name](call.arguments)
            messages.append(tool_message(call.id, text))
            _merge(info, signals)
        if calls:
            await self._after_step(info)
        self._maybe_end(reply, bool(calls))
        info["end_reason"] = self.end_reason
        return Step(messages=messages, done=self.done, info=info)

    def _maybe_end(self, reply: Message, called: bool) -> None:
        if not called:
            self.done, self.end_reason = True, self._end_without_call(reply)
        elif len(self.replies) >= self.max_turns:
            self.done, self.end_reason = True, "max_turns"

    def _end_without_call(self, reply: Message) -> str:
        return "no_tool_call"

    async def outcome(self) -> Outcome:
        if self.sandbox is None:
            raise RuntimeError("outcome() before reset()")
        if self._outcome is None:
            self._outcome = await self._measure()
        return self._outcome

    async def close(self) -> None:
        if self.sandbox is not None:
            await self.sandbox.close()

    def episode_details(self) -> dict[str, Any]:
        """What every outcome reports besides its measurements."""
        assert self.sandbox is not None
        return {"turns": len(self.replies), "end_reason": self.end_reason or "not_finished",
                **self.sandbox.describe()}


def run_signals(result: RunResult) -> dict[str, Any]:
    """``Step.info`` signals of one command run."""
    return {
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "traceback": last_traceback(result.output),
    }


def run_text(result: RunResult) -> str:
    """A command's output as the agent sees it, ending with its exit status."""
    status = "killed" if result.exit_code is None else str(result.exit_code)
    return f"{result.output.rstrip()}\n[exit code {status}]".lstrip("\n")


async def write_file_tool(sandbox: Sandbox, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``write_file`` tool (``path``, ``content``): the tool message text and its signals."""
    result = await sandbox.write_file(arguments["path"], arguments["content"])
    if result.exit_code == 0:
        return f"wrote {len(arguments['content'].encode())} bytes to {arguments['path']}", {"exit_code": 0}
    return f"error: {result.output.strip()}", {"exit_code": result.exit_code, "tool_error": result.output.strip()}


def _merge(info: dict[str, Any], signals: dict[str, Any]) -> None:
    """Fold one call's signals into the step's: first failure kept, flags accumulate, texts: last."""
    for key, value in signals.items():
        if key in ("timed_out", "truncated"):
            info[key] = bool(info.get(key)) or bool(value)
        elif key == "exit_code":
            if info.get(key, 0) == 0:  # keep the first failure (non-zero, or None for killed)
                info[key] = value
        elif value or key not in info:
            info[key] = value
