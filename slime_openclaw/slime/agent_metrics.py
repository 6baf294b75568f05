"""slime's rollout log hook for general agents (``--custom-rollout-log-function-path``).

``log_rollout_data(rollout_id, args, samples, rollout_extra_metrics, rollout_time)`` adds
the environment pool's figures (``openclaw/env_pool_running``, ``_queued`` and their peaks
during the rollout, ``_reclaimed``,
``_failed``, ``_step_latency_p50_s`` / ``_p99_s``, ...: envs/pool/metrics.py) and the
rollout's environment-failed episodes (``openclaw/env_failed_episodes``) to the extra
metrics slime logs, then returns False so that slime's own logging goes on with them. A
rollout function that returns no metrics (slime's fully-async rollout returns a bare list,
so slime passes None) leaves no dict to add to: the figures are then logged here, through
slime's ``logging_utils.log`` under its rollout step, before slime logs its own. It runs in
the process of the generate function (slime's rollout manager), where the pool is.
"""

from __future__ import annotations

from typing import Any

from slime_openclaw.slime import agent_generate


def rollout_figures(samples: list[Any]) -> dict[str, float]:
    """The pools' figures (peaks reset for the next rollout) and the environment-failed episodes."""
    figures: dict[str, float] = {}
    runtime = agent_generate._RUNTIME
    if runtime is not None:
        figures.update(runtime.pool_metrics(reset_peaks=True))
    failed = sum(1 for s in samples if agent_generate.ENV_FAILURE_METADATA in (getattr(s, "metadata", None) or {}))
    figures["openclaw/env_failed_episodes"] = float(failed)
    return figures


def log_rollout_data(rollout_id: int, args: Any, samples: list[Any], rollout_extra_metrics: dict[str, Any] | None,
                     rollout_time: float) -> bool:
    """See the module docstring; False: slime logs as usual, these figures included."""
    if rollout_extra_metrics is not None:
        rollout_extra_metrics.update(rollout_figures(samples))
        return False
    if getattr(args, "load_debug_rollout_data", None):  # a replayed rollout: slime logs nothing either
        return False
    from slime.observability import logging_utils
    from slime.observability.metric_utils import compute_rollout_step

    figures: dict[str, Any] = {**rollout_figures(samples), "rollout/step": compute_rollout_step(args, rollout_id)}
    logging_utils.log(args, figures, step_key="rollout/step")
    return False
