"""slime's reward post-process hook for general agents (``--custom-reward-post-process-path``).

``post_process_rewards(args, samples) -> (raw_rewards, rewards)``: the raw rewards are the
step rewards the generate function set (agent_generate.py); ``rewards`` are those
standardized per ``openclaw_agent_normalization`` bucket (agents/rewards.py): the task
group is the sample's ``group_index`` (the ``--n-samples-per-prompt`` episodes of one
task), the step its turn index. A constant bucket carries no signal (0.0). Samples that
are not agent steps keep their raw reward.
"""

from __future__ import annotations

import itertools
from typing import Any

from slime_openclaw.agents.rewards import StepValue, normalize
from slime_openclaw.slime.agent_generate import AGENT_METADATA


def flat_samples(samples: list[Any]) -> list[Any]:
    """The samples of a batch or task group whose members are Samples or lists of them."""
    return list(itertools.chain.from_iterable(s if isinstance(s, list) else [s] for s in samples))


def post_process_rewards(args: Any, samples: list[Any]) -> tuple[list[float], list[float]]:
    """See the module docstring."""
    from slime_openclaw.slime.hooks import config_for

    flat = flat_samples(samples)
    raw = [float(s.get_reward_value(args)) for s in flat]
    steps = [i for i, s in enumerate(flat) if AGENT_METADATA in (s.metadata or {})]
    items = [StepValue(flat[i].group_index, int(flat[i].metadata[AGENT_METADATA]["step"]), raw[i]) for i in steps]
    normalized = normalize(items, config_for(args).agent.normalization)
    rewards = list(raw)
    for i, value in zip(steps, normalized, strict=True):
        rewards[i] = 0.0 if value is None else value
    return raw, rewards
