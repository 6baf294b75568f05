"""A light environment that measures the pool itself (benchmarks/env_pool.py, the pool's tests).

``ProbeEnv`` answers each reply with a tool message naming the step, optionally after
sleeping ``sleep_s`` (or the task's ``sleep_s``; an environment that waits instead of working: the scale run) and
holding ``payload_kb`` of state (what an environment keeps in memory). The episode is done
after ``task["steps"]`` (default ``steps``) replies. Its outcome says how many steps it ran
and whether the replies arrived in order (each reply's content is expected to be
``step <i>``), so a lost or doubled step shows up as ``passed: false``. ``fail_at`` makes
step ``i`` raise (an environment bug). It runs anywhere: no process, no file.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slime_openclaw.envs.base import Environment, Message, Observation, Outcome, Step


class ProbeEnv(Environment):
    """See the module docstring."""

    def __init__(self, steps: int = 3, sleep_s: float = 0.0, payload_kb: int = 0, fail_at: int = -1) -> None:
        self.default_steps, self.sleep_s, self.fail_at = steps, sleep_s, fail_at
        self.payload = bytearray(payload_kb * 1024)
        self.task: dict[str, Any] = {}
        self.ran: list[int] = []
        self.in_order = True

    async def reset(self, task: dict[str, Any]) -> Observation:
        self.task, self.ran, self.in_order = dict(task), [], True
        return Observation(messages=[{"role": "user", "content": f"probe {task.get('id', '')}: reply 'step <i>'"}])

    @property
    def steps(self) -> int:
        return int(self.task.get("steps", self.default_steps))

    async def step(self, reply: Message) -> Step:
        index = len(self.ran)
        if index == self.fail_at:
            raise RuntimeError(f"probe environment fails at step {index} (fail_at)")
        sleep_s = float(self.task.get("sleep_s", self.sleep_s))
        if sleep_s > 0:
            await asyncio.sleep(sleep_s)
        self.ran.append(index)
        self.in_order = self.in_order and reply.get("content") == f"step {index}"
        done = len(self.ran) >= self.steps
        info = {"exit_code": 0, "end_reason": "answer" if done else ""}
        return Step(messages=[{"role": "user", "content": f"ran step {index}"}], done=done, info=info)

    async def outcome(self) -> Outcome:
        passed = self.in_order and len(self.ran) == self.steps
        return Outcome(score=1.0 if passed else 0.0, passed=passed,
                       details={"steps_run": len(self.ran), "in_order": self.in_order, "id": self.task.get("id")})
