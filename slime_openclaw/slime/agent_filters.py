"""slime's dynamic-sampling filter for general agents (``--dynamic-sampling-filter-path``).

slime calls ``filter(args, group)`` on each finished task group; with the agents' generate
function a group is ``n_samples_per_prompt`` episodes, each a list of step samples, which
slime's own ``filter_hub`` filters cannot read (they take each member for one Sample).
``check_reward_nonzero_std`` keeps a group whose trained steps' rewards differ: otherwise the
reward post-process (``agent_rewards``) standardizes a constant and no step carries signal.
Removed samples (episodes with no step to train) do not count; a group with no trained step
is dropped. ``check_reward_nonzero_std_with_fallback`` keeps a rejected group when dropping it
would leave too few to fill the batch, as slime's variant of that name does.
"""

from __future__ import annotations

import statistics
from typing import Any

from slime_openclaw.slime.agent_rewards import flat_samples

MIN_STD = 1e-6
"""slime's threshold for a nonzero standard deviation."""


def _decide(args: Any, group: list[Any], keep_when_insufficient: bool) -> Any:
    from slime.rollout.filter_hub.base_types import DynamicFilterOutput

    rewards = [float(s.get_reward_value(args)) for s in flat_samples(group) if not s.remove_sample]
    if not rewards:
        return DynamicFilterOutput(keep=False, reason="no_trained_step", keep_when_insufficient=keep_when_insufficient)
    keep = len(rewards) > 1 and statistics.pstdev(rewards) > MIN_STD
    return DynamicFilterOutput(keep=keep, reason=None if keep else f"zero_std_{round(rewards[0], 1)}",
                               keep_when_insufficient=keep_when_insufficient)


def check_reward_nonzero_std(args: Any, samples: list[Any], **kwargs: Any) -> Any:
    """Keep the task group ``samples`` if its trained steps' rewards differ (module docstring)."""
    return _decide(args, samples, keep_when_insufficient=False)


def check_reward_nonzero_std_with_fallback(args: Any, samples: list[Any], **kwargs: Any) -> Any:
    """The same, keeping a rejected group when slime would otherwise sample another round."""
    return _decide(args, samples, keep_when_insufficient=True)
