"""Step-reward normalization: buckets, constant buckets, population std; the config keys."""

from __future__ import annotations

import math

import pytest

from slime_openclaw.agents.rewards import StepValue, normalize
from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError


def values(*triples: tuple[str, int, float]) -> list[StepValue]:
    return [StepValue(g, s, v) for g, s, v in triples]


def test_group_step_buckets_standardize_each_step_index_apart() -> None:
    items = values(("a", 0, 1.0), ("a", 0, -1.0), ("a", 1, 3.0), ("a", 1, 1.0), ("b", 0, 5.0))
    out = normalize(items, "group_step")
    assert out[:4] == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-5)
    assert out[4] is None  # a bucket of one is constant: no signal


def test_group_buckets_pool_every_step_of_the_group() -> None:
    items = values(("a", 0, 1.0), ("a", 1, 2.0), ("a", 2, 3.0), ("b", 0, 2.0), ("b", 1, 2.0))
    out = normalize(items, "group")
    std = math.sqrt(2 / 3)
    assert out[:3] == pytest.approx([-1 / std, 0.0, 1 / std], abs=1e-5)
    assert out[3:] == [None, None]  # every value equal: the bucket carries no signal
    assert normalize(items, "none") == [1.0, 2.0, 3.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="normalization"):
        normalize(items, "episode")


def test_agent_keys_are_checked() -> None:
    config = OpenClawConfig.from_mapping({"openclaw_agent_prm_weight": 0.25, "openclaw_agent_normalization": "group_step"})
    assert (config.agent.prm_weight, config.agent.normalization) == (0.25, "group_step")
    for bad in ({"openclaw_agent_outcome_weight": -1}, {"openclaw_agent_normalization": "step"},
                {"openclaw_agent_recent_steps": -2}):
        with pytest.raises(ConfigError, match="openclaw_agent_"):
            OpenClawConfig.from_mapping(bad)
