"""A toy custom environment for the agents' tests: reach a target sum with an ``add`` tool.

Task ``{"target": int}``; the tool ``add(x)`` adds ``x`` and answers ``total=<t>`` with
``exit code 0`` (info ``exit_code`` 0), or, when ``x`` is not an integer, an error with
info ``tool_error``. A reply without tool calls ends the episode; so do ``max_steps``
steps. Outcome: two checks (the total is the target; at most ``max_steps - 1`` steps).
Also counts what it was sent, so tests can see the driver sent nothing on its own.
"""

from __future__ import annotations

import json
from typing import Any

from slime_openclaw.envs import Environment, Observation, Outcome, Step

ADD_TOOL = {"type": "function", "function": {"name": "add", "description": "add x to the total",
                                             "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                                                            "required": ["x"]}}}


class CounterEnv(Environment):
    """See the module docstring."""

    def __init__(self, max_steps: int = 4, silent: bool = False) -> None:
        self.max_steps = max_steps
        self.silent = silent  # no info signals: the process judge must read the text
        self.replies: list[dict[str, Any]] = []
        self.closed = False

    async def reset(self, task: dict[str, Any]) -> Observation:
        self.target, self.total, self.replies = int(task["target"]), 0, []
        return Observation(messages=[{"role": "system", "content": "Use add."},
                                     {"role": "user", "content": f"Reach {self.target}."}], tools=[ADD_TOOL])

    async def step(self, reply: dict[str, Any]) -> Step:
        self.replies.append(reply)
        calls = reply.get("tool_calls") or []
        if not calls:
            return Step(messages=[], done=True, info={"end_reason": "answer"})
        answers, info = [], {}
        for call in calls:
            try:
                x = int(json.loads(call["function"]["arguments"])["x"])
            except (ValueError, KeyError, TypeError):
                answers.append({"role": "tool", "tool_call_id": call["id"], "content": "error: x must be an integer"})
                info["tool_error"] = "x must be an integer"
                continue
            self.total += x
            answers.append({"role": "tool", "tool_call_id": call["id"], "content": f"total={self.total}"})
            info.setdefault("exit_code", 0)
        done = len(self.replies) >= self.max_steps
        if done:
            info["end_reason"] = "max_turns"
        return Step(messages=answers, done=done, info={} if self.silent else info)

    async def outcome(self) -> Outcome:
        checks = [self.total == self.target, len(self.replies) < self.max_steps]
        return Outcome(score=sum(checks) / len(checks), passed=all(checks), details={"total": self.total})

    async def close(self) -> None:
        self.closed = True
