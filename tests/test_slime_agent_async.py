"""slime's fully-async rollout (slime/rollout/fully_async_rollout.py) over the agents' generate function.

Its background worker runs slime's ``generate_and_rm_group`` on each task group and requeues a
group any of whose members is ABORTED (``getattr(member, "status")``: an episode list has none,
so a removed episode ships). It orders the groups by ``getattr(member, "index")``, which on a
plain list is the list's method (``int()`` of it failed every fully-async rollout): episodes are
``agent_generate.EpisodeSamples``, lists with the input sample's index. It returns a bare list of groups, so slime's
RolloutManager logs the rollout with no extra-metrics dict (``call_rollout_fn`` wraps the
list with ``metrics=None``), and ``agent_metrics.log_rollout_data`` then logs the pool's
figures itself through slime's ``logging_utils.log``, under slime's rollout step.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from test_launch import QWEN3, hf_dir
from test_slime_agent_batches import TASK
from test_slime_agent_flags import loop_args

from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import agent_generate, guards
from slime_openclaw.slime.recipe import apply_overrides, compose, load_recipe

pytestmark = pytest.mark.slime


class Buffer:
    """slime's data-buffer interface (``get_samples``/``add_samples``): one task, groups of two."""

    def __init__(self, n_samples: int) -> None:
        self.n_samples, self.groups, self.added = n_samples, itertools.count(), []

    def get_samples(self, n: int) -> list[list[Any]]:
        from slime.utils.types import Sample

        out = []
        for _ in range(n):
            g = next(self.groups)
            out.append([Sample(index=self.n_samples * g + i, group_index=g, prompt="", metadata={"task": TASK})
                        for i in range(self.n_samples)])
        return out

    def add_samples(self, groups: list[list[Any]]) -> None:
        self.added += groups


def identity_hook(args: Any, sample: Any, **kwargs: Any) -> None:
    """A ``--rollout-sample-hook-path`` hook that changes nothing (slime keeps the sample)."""


def run_fully_async(args: Any, buffer: Buffer) -> Any:
    from slime.rollout import fully_async_rollout
    from slime.rollout.base_types import call_rollout_fn

    fully_async_rollout.GenerateState.clear_instances()
    try:
        return call_rollout_fn(fully_async_rollout.generate_rollout_fully_async, args, 3, buffer, evaluation=False)
    finally:
        fully_async_rollout._stop_global_worker()
        fully_async_rollout.GenerateState.clear_instances()


def test_fully_async_with_sample_hooks_is_refused(tmp_path: Path) -> None:
    """slime's ``apply_rollout_sample_hooks`` rebuilds a list result as a plain list, whose
    ``index`` fully-async's sort would take ``int()`` of: refused at launch (under fully-async a
    generate function's error is logged and its group dropped by slime's worker, so the
    first-call check cannot stop the run; launch does)."""
    import asyncio

    from slime.rollout.sample_hooks import apply_rollout_sample_hooks
    from slime.utils.types import Sample

    hooks = ["test_slime_agent_async.identity_hook"]
    args = loop_args(tmp_path, rollout_function_path=guards.FULLY_ASYNC_ROLLOUT, rollout_sample_hook_path=hooks)
    episode = agent_generate.EpisodeSamples([Sample(index=4)], 4)
    rebuilt = asyncio.run(apply_rollout_sample_hooks(args, episode))
    assert episode.index == 4 and callable(rebuilt.index)
    with pytest.raises(ConfigError, match="drop --rollout-sample-hook-path"):
        guards.check(vars(args))
    items = [f"slime.rollout-function-path={guards.FULLY_ASYNC_ROLLOUT}", f"slime.rollout-sample-hook-path={hooks[0]}"]
    with pytest.raises(ConfigError, match="drop --rollout-sample-hook-path"):
        compose(apply_overrides(load_recipe("toolcall"), items), hf_checkpoint=hf_dir(tmp_path / "hf", QWEN3),
                run_dir=tmp_path, train_script="T")


def test_fully_async_ships_failed_episodes_and_logs_the_pool_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleanup_runtime: None) -> None:
    from slime.observability import logging_utils, rollout_metrics

    args = loop_args(tmp_path, custom_rollout_log_function_path="slime_openclaw.slime.agent_metrics.log_rollout_data")
    logged: list[dict[str, Any]] = []
    monkeypatch.setattr(logging_utils, "log", lambda a, metrics, step_key: logged.append(dict(metrics)))
    buffer = Buffer(args.n_samples_per_prompt)
    output = run_fully_async(args, buffer)
    assert buffer.added == []  # an episode is a list: never requeued as an aborted group
    (group,) = output.samples
    assert output.metrics is None and [len(episode) for episode in group] == [1, 1]
    samples = [s for episode in group for s in episode]
    assert agent_generate._RUNTIME is not None
    rollout_metrics.log_rollout_data(3, args, samples, output.metrics, 1.0)
    ours = [m for m in logged if "openclaw/env_failed_episodes" in m]
    assert len(ours) == 1 and ours[0]["rollout/step"] == 3 and "openclaw/env_pool_running" in ours[0]
    assert any("rollout/response_len/mean" in m for m in logged)  # slime's own log goes on
