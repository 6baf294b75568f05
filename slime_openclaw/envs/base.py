"""The one interface every general-agent environment implements, in OpenAI chat terms.

An episode is ``reset(task)`` -> ``Observation`` (the opening chat messages and the tool
schemas), then ``step(reply)`` -> ``Step`` once per assistant reply until ``Step.done``,
then ``outcome()`` -> ``Outcome`` (what the environment measures, never what the driver
did), then ``close()``. A call that fails because of the environment itself (not the agent)
raises ``EnvironmentFailure``. The environment knows nothing about the gateway, tokens or
training: the episode driver relays messages, and the environment's answer to a step is
that turn's next state.

``Step.info`` carries environment signals for rule judges and hints. The keys are fixed
here (``SIGNAL_KEYS``) so that judges read the same names from every environment; an
environment sets only the keys it can measure.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
"""One OpenAI chat message (``role``, ``content``, ``tool_calls``, ``tool_call_id``, ...)."""

SIGNAL_KEYS: dict[str, str] = {
    "exit_code": "int: exit status of the last command or program the step ran (non-zero = failure; "
    "-9 style negatives for a signal, None when it never finished).",
    "timed_out": "bool: a command of this step ran past its time limit and was killed with its process group.",
    "traceback": "str: the last Python traceback found in this step's output (empty when none).",
    "tool_error": "str: why a tool call could not be carried out (unknown tool, arguments not JSON, "
    "missing parameter); empty when every call ran.",
    "truncated": "bool: some output of this step was cut to the output limit (marked in the text).",
    "checks_fixed": "list[str]: checks that went from failing to passing with this step.",
    "checks_broken": "list[str]: checks that went from passing to failing with this step.",
    "checks_failing": "list[str]: checks failing after this step (names only; their text stays hidden).",
    "screenshot": "str: path of a PNG of the page after this step (gui; removed with the episode).",
    "end_reason": "str: why the episode ended at this step (answer, no_tool_call, max_turns, submit, time_limit); "
    "empty while it goes on.",
}
"""Documented keys of ``Step.info``: name -> type and meaning."""


@dataclass(frozen=True)
class Observation:
    """What opens an episode."""

    messages: list[Message]
    """Chat messages that start the episode (typically a system prompt and the user's instruction)."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """OpenAI tool schemas (``{"type": "function", "function": {...}}``) the agent may call."""


@dataclass(frozen=True)
class Step:
    """The environment's answer to one assistant reply: that turn's next state."""

    messages: list[Message]
    """Tool messages (one per tool call, with its ``tool_call_id``) or a user message."""
    done: bool
    """True when the episode is over; the driver then asks for ``outcome()``."""
    info: dict[str, Any] = field(default_factory=dict)
    """Environment signals for rule judges and hints; keys and meanings in ``SIGNAL_KEYS``."""


@dataclass(frozen=True)
class Outcome:
    """The verifiable result of an episode, measured by the environment alone."""

    score: float
    """Share of checks passed, in [0, 1]."""
    passed: bool
    """Whether the episode counts as a success (every check passed, or the answer is right)."""
    details: dict[str, Any] = field(default_factory=dict)
    """What was measured: per-check results, the expected and given answer, the isolation mode."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Outcome.score must be in [0, 1], got {self.score}")


class EnvironmentFailure(RuntimeError):
    """The environment itself failed (its actor died, a call ran past its time limit, its host
    lost the lease): the episode ends as an environment failure, never the agent's fault.

    The driver ends the episode with ``end_reason == "env_failure"``, records no outcome and
    its turns train nothing (the signal stage discards them with the reason).
    """


class Environment(abc.ABC):
    """Base class of environments (a user's class may also just provide the four methods).

    One instance runs one episode at a time; ``reset`` may be called again after
    ``outcome`` to start the next one. ``close`` must be idempotent and leave no process
    or temporary directory behind. Usable as ``async with env: ...``.
    """

    @abc.abstractmethod
    async def reset(self, task: dict[str, Any]) -> Observation:
        """Start an episode for ``task`` (one JSON-lines object, as read)."""

    @abc.abstractmethod
    async def step(self, reply: Message) -> Step:
        """Answer one assistant message exactly as the gateway returned it."""

    @abc.abstractmethod
    async def outcome(self) -> Outcome:
        """Measure the episode (after the last step, or after the driver gave up)."""

    async def close(self) -> None:  # noqa: B027 - a no-op default is the right one here
        """Release every resource; safe to call more than once."""

    async def __aenter__(self) -> Environment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
