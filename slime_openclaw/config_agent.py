"""The ``openclaw_agent_*`` keys: how a general agent's step rewards are formed.

Per step ``r = outcome_weight * (2 * score - 1) + prm_weight * mean(votes)`` (``score``:
the episode's outcome in [0, 1]; ``votes``: the step's process-judge votes in {-1, 0, 1},
failed votes left out), then standardized per bucket (``normalization``). Read by the
step-reward code of both paths (slime_openclaw/agents/rewards.py); config.py makes it the
``agent`` section of ``OpenClawConfig``. Nothing here imports torch or slime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slime_openclaw.errors import ConfigError

NORMALIZATIONS = ("group_step", "group", "none")
"""Bucket of the step-reward standardization: (task group, step index), the task group, none."""


@dataclass(frozen=True)
class AgentConfig:
    """Step rewards of general agents (``openclaw_agent_*``)."""

    outcome_weight: float = 1.0
    """w_outcome: weight of the episode outcome term ``2 * score - 1`` in every step's reward."""
    prm_weight: float = 1.0
    """w_prm: weight of the mean process-judge vote of the step."""
    normalization: str = "group"
    """Standardize step rewards within ``group`` (all steps of a task group's episodes), ``group_step`` (task group and step index, as the reference does) or ``none``; a bucket whose values are all equal carries no signal."""
    recent_steps: int = 2
    """Earlier steps the process judge sees besides the task, the step and the environment's answer."""
    method: str = "prm"
    """Step rewards on the slime path: ``outcome`` (outcome term only), ``prm`` (outcome + process votes) or ``combine`` (both, plus OPD from hints)."""
    env: str = "terminal"
    """Environment of the slime generate function: a built-in short name or ``package.module.ClassName``."""
    env_args: str = ""
    """Its keyword arguments as ``key=value`` pairs separated by commas."""
    max_turns: int = 8
    """Agent turns per episode at most on the slime path (the environment usually ends it first)."""

    def env_arg_pairs(self) -> list[str]:
        """``env_args`` as ``key=value`` strings (the ``--env-arg`` form)."""
        return [part.strip() for part in self.env_args.split(",") if part.strip()]

    def __post_init__(self) -> None:
        for key, value in (("outcome_weight", self.outcome_weight), ("prm_weight", self.prm_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"openclaw_agent_{key}: must be a finite number >= 0, got {value}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"openclaw_agent_normalization: must be one of {', '.join(NORMALIZATIONS)}, "
                              f"got {self.normalization!r}")
        if self.method not in ("outcome", "prm", "combine"):
            raise ConfigError(f"openclaw_agent_method: must be outcome, prm or combine, got {self.method!r}")
        if self.max_turns < 1:
            raise ConfigError(f"openclaw_agent_max_turns: must be >= 1, got {self.max_turns}")
        if self.recent_steps < 0:
            raise ConfigError(f"openclaw_agent_recent_steps: must be >= 0, got {self.recent_steps}")
