"""Step rewards of general agents: the formula, and its standardization per bucket.

Per step (keyed by its turn index, never by list position)::

    r = w_outcome * (2 * score - 1) + w_prm * mean(votes)

``score`` is the episode's outcome in [0, 1]; ``votes`` are the step's process-judge votes
in {-1, 0, 1} (failed votes, None, are left out; no valid vote counts as 0). The weights
are the ones configured (``openclaw_agent_outcome_weight`` / ``_prm_weight``), applied here
and nowhere else: the reference documents a coefficient that never reaches training.

Normalization (``openclaw_agent_normalization``): standardize ``(r - mean) / (std + 1e-6)``
(population std) within each bucket: ``group`` (every step of every episode of one task
group), ``group_step`` (task group and step index, as the reference does) or ``none`` (raw).
A bucket whose values are all equal, a bucket of one included, carries no signal: its
steps get None and train on no evaluative reward. Pure functions; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from slime_openclaw.config_agent import NORMALIZATIONS, AgentConfig

EPS = 1e-6


@dataclass(frozen=True)
class RewardWeights:
    """``w_outcome`` and ``w_prm`` of the step reward."""

    outcome: float = 1.0
    prm: float = 1.0

    @classmethod
    def from_config(cls, config: AgentConfig) -> RewardWeights:
        """The weights of the ``openclaw_agent_*`` keys."""
        return cls(outcome=config.outcome_weight, prm=config.prm_weight)


def mean_vote(votes: Sequence[int | None]) -> float:
    """Mean of the votes that did not fail; 0.0 when none did (or there are none)."""
    valid = [v for v in votes if v is not None]
    return sum(valid) / len(valid) if valid else 0.0


def step_reward(score: float, votes: Sequence[int | None], weights: RewardWeights) -> float:
    """``w_outcome * (2 * score - 1) + w_prm * mean(votes)`` (see the module docstring)."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"outcome score must be in [0, 1], got {score}")
    return weights.outcome * (2.0 * score - 1.0) + weights.prm * mean_vote(votes)


@dataclass(frozen=True)
class StepValue:
    """One step's raw reward with what buckets it."""

    group: Hashable
    """The task group (episodes of the same task)."""
    step: int
    """The step's index within its episode (its turn index)."""
    value: float


def bucket_key(item: StepValue, normalization: str) -> Hashable:
    """The bucket ``item`` is standardized in."""
    if normalization == "group_step":
        return (item.group, item.step)
    if normalization == "group":
        return item.group
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def normalize(items: Sequence[StepValue], normalization: str) -> list[float | None]:
    """The trained reward of each item, in order: standardized per bucket, None for no signal."""
    if normalization == "none":
        return [item.value for item in items]
    buckets: dict[Hashable, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        buckets[bucket_key(item, normalization)].append(index)
    out: list[float | None] = [None] * len(items)
    for members in buckets.values():
        values = [items[i].value for i in members]
        if max(values) - min(values) <= EPS * max(1.0, max(abs(v) for v in values)):
            continue  # constant bucket: no signal
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        for i, v in zip(members, values, strict=True):
            out[i] = (v - mean) / (std + EPS)
    return out
