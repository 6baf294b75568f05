"""What one general-agent episode leaves behind: its steps keyed by turn index, its outcome.

The driver (driver.py) fills an ``EpisodeRecord`` as it relays the agent's replies to the
environment; the signal stage (stage.py) matches each ``StepRecord`` with the turn the
gateway recorded under ``(episode_id, turn_index)``. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.envs.base import Message, Outcome

ENV_FAILURE = "env_failure"
"""``EpisodeRecord.end_reason`` of an episode its environment failed (never trained)."""


@dataclass(frozen=True)
class StepRecord:
    """One action of the agent and the environment's answer to it (that turn's next state)."""

    turn_index: int
    """Index of the gateway turn that produced ``reply`` within the episode's session."""
    reply: Message
    """The assistant message exactly as the gateway returned it."""
    answer: tuple[Message, ...]
    """The environment's answer (``Step.messages``)."""
    info: dict[str, Any] = field(default_factory=dict)
    """The environment's signals for this step (``Step.info``, keys in ``envs.SIGNAL_KEYS``)."""
    done: bool = False


@dataclass(frozen=True)
class EpisodeRecord:
    """A finished episode: task, steps, the outcome the environment measured, how it ended."""

    episode_id: str
    """The episode's session id (``X-Session-Id``)."""
    task: dict[str, Any]
    group: str
    """The task group (episodes of one task share it; rewards are normalized within it)."""
    opening: tuple[Message, ...]
    """``Observation.messages``: the system prompt and the instruction."""
    steps: tuple[StepRecord, ...]
    outcome: Outcome
    end_reason: str
    """``done`` (the environment ended it), ``max_turns``, ``timeout``, ``request_failed`` or
    ``env_failure`` (the environment failed: no outcome recorded, nothing trained)."""
    requests_ok: int = 0
    requests_failed: int = 0
    outcome_recorded: bool = False
    """Whether the gateway accepted the outcome on the session."""
    error: str = ""
    """What failed, when a request or the outcome post did (no user text)."""

    @property
    def env_failed(self) -> bool:
        """Whether the environment, not the agent, ended the episode (see ``ENV_FAILURE``)."""
        return self.end_reason == ENV_FAILURE

    @property
    def task_text(self) -> str:
        """The instruction: the last user message of the opening (empty when there is none)."""
        for message in reversed(self.opening):
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                return str(message["content"])
        return ""
