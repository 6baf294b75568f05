"""Reward hook for ``--custom-rm-path``: the evaluative reward the journal recorded.

slime calls ``await rm(args, sample)`` per sample, or ``await rm(args, samples)`` with
``--group-rm`` (or when a custom generate function returns a list), and expects a number
or a list of numbers. Our samples were judged before they reached slime (the signal
workers judge each turn against its next state), so the hook returns the judge score the
rollout function put in ``sample.metadata["openclaw"]``. A sample that did not come from
the journal (e.g. slime's own eval rollout over a dataset) has no next state to judge and
gets its existing numeric ``reward``, or 0.0: "no evaluative signal", as in the journal.
"""

from __future__ import annotations

from typing import Any

from slime_openclaw.slime.samples import METADATA_KEY


def recorded_reward(sample: Any) -> float:
    """The judge score recorded for ``sample`` (see the module doc)."""
    metadata = getattr(sample, "metadata", None) or {}
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if isinstance(ours, dict) and "judge_reward" in ours:
        return float(ours["judge_reward"])
    reward = getattr(sample, "reward", None)
    if isinstance(reward, (int, float)) and not isinstance(reward, bool):
        return float(reward)
    return 0.0


async def reward(args: Any, sample: Any, **kwargs: Any) -> float | list[float]:
    """slime custom reward model: one sample -> float, a list of samples -> list of floats."""
    if isinstance(sample, (list, tuple)):
        return [recorded_reward(s) for s in sample]
    return recorded_reward(sample)


async def group_reward(args: Any, samples: list[Any], **kwargs: Any) -> list[float]:
    """The same for ``--group-rm`` (slime's group contract names the parameter ``samples``)."""
    return [recorded_reward(s) for s in samples]
