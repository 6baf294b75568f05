"""slime settings whose code cannot read the agents' results, run through slime's own rollout loop.

With the agents' generate function a task group is ``n_samples_per_prompt`` episodes, each a
list of step samples with a float reward. slime's ``generate_rollout_async`` / ``abort`` /
``generate_and_rm_group`` (slime/rollout/sglang_rollout.py) and its filter hub read group
members as single Samples under ``--partial-rollout``, ``--group-rm`` and its dynamic-sampling
filters, and index rewards under ``--reward-key``: each ran slime's loop into an AttributeError
or TypeError mid-rollout. They are refused at launch and at the generate function's first call
(guards.check_agent); ``agent_filters`` is the episode-level dynamic-sampling filter.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
from test_launch import QWEN3, hf_dir
from test_slime_agent_batches import TASK, agent_args, step_episode

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import agent_generate, guards
from slime_openclaw.slime.recipe import apply_overrides, compose, load_recipe
from slime_openclaw.slime.samples import SampleLayout

pytestmark = pytest.mark.slime

SLIME_FILTER = "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std"
REFUSED = [
    ({"partial_rollout": True, "over_sampling_batch_size": 2}, "drop --partial-rollout"),
    ({"group_rm": True}, "drop --group-rm"),
    ({"reward_key": "score"}, "drop --reward-key"),
    ({"dynamic_sampling_filter_path": SLIME_FILTER}, "use slime_openclaw.slime.agent_filters"),
]


def loop_args(tmp_path: Path, **extra: Any) -> argparse.Namespace:
    """What slime's rollout loop reads of its arguments, our generate function plugged in."""
    return agent_args(tmp_path, **{
        "custom_generate_function_path": guards.AGENT_GENERATE, "rollout_global_dataset": True,
        "rollout_batch_size": 1, "n_samples_per_prompt": 2, "global_batch_size": 2, "over_sampling_batch_size": 1,
        "dynamic_sampling_filter_path": None, "partial_rollout": False, "mask_offpolicy_in_partial_rollout": False,
        "group_rm": False, "custom_rm_path": "slime_openclaw.slime.reward.reward", "eval_reward_key": None,
        "rollout_sample_filter_path": None, "rollout_all_samples_process_path": None, "rollout_sample_hook_path": None,
        "ci_test": False, "sglang_server_concurrency": 4, "rollout_num_gpus_per_engine": 1, "sglang_dp_size": 1,
        "rollout_temperature": 1.0, "rollout_top_k": -1, "rollout_max_response_len": 16,
        "rollout_stop": None, "rollout_stop_token_ids": None, "rollout_skip_special_tokens": False,
        "sglang_enable_deterministic_inference": False, **extra})


def run_slime_rollout(monkeypatch: pytest.MonkeyPatch, args: argparse.Namespace) -> Any:
    """slime's ``generate_rollout_async`` over one task (nothing listens on the router: every
    episode's first request fails); its end-of-rollout abort finds no SGLang worker to abort."""
    from slime.rollout import sglang_rollout
    from slime.utils.types import Sample

    async def no_workers(url: str) -> dict[str, Any]:
        return {"workers": []}

    async def idle(urls: list[str]) -> None:
        return None

    monkeypatch.setattr(sglang_rollout, "get", no_workers)
    monkeypatch.setattr(sglang_rollout, "abort_servers_until_idle", idle)
    sglang_rollout.GenerateState.clear_instances()
    counter = iter(range(1000))

    def data_source(n: int) -> list[list[Any]]:
        groups = []
        for _ in range(n):
            g = next(counter)
            groups.append([Sample(index=2 * g + i, group_index=g, prompt="", metadata={"task": TASK})
                           for i in range(args.n_samples_per_prompt)])
        return groups

    try:
        return asyncio.run(sglang_rollout.generate_rollout_async(args, 0, data_source))
    finally:
        sglang_rollout.GenerateState.clear_instances()
        # a failed episode's sibling task is left unretrieved by slime's gather: collected here, not
        # inside a later ast.parse, whose state CPython 3.11.7 shares with the one the "Task
        # exception was never retrieved" traceback runs (SystemError: AST constructor recursion depth)
        gc.collect()


def test_slimes_rollout_loop_runs_over_failed_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      cleanup_runtime: None) -> None:
    """The settings kept: slime's loop gives one group of two ``[removed sample]`` episodes."""
    output, aborted = run_slime_rollout(monkeypatch, loop_args(tmp_path))
    (group,) = output.samples
    assert aborted == [] and [len(episode) for episode in group] == [1, 1]
    assert all(s.remove_sample and s.reward == 0.0 for episode in group for s in episode)


@pytest.mark.parametrize(("extra", "fragment"), REFUSED)
def test_slimes_rollout_loop_stops_at_the_first_episode_with_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleanup_runtime: None,
        extra: dict[str, Any], fragment: str) -> None:
    """Before the guard, group rm failed here (``generate_and_rm_group`` sets ``.reward`` on each
    member: AttributeError on a list) and so did slime's filter; partial rollout fails in
    ``abort`` and the reward key in the reward hook (the two tests below)."""
    with pytest.raises(ConfigError, match=fragment):
        run_slime_rollout(monkeypatch, loop_args(tmp_path, **extra))
    assert agent_generate._RUNTIME is None  # refused before any journal or gateway opened


def test_slimes_partial_rollout_abort_reads_each_group_member_as_a_sample(tmp_path: Path) -> None:
    """slime's ``abort`` under ``--partial-rollout`` collects the groups still pending at the end
    of a rollout and reads ``sample.response`` of each member: an episode is a list."""
    from slime.rollout import sglang_rollout

    args = loop_args(tmp_path, partial_rollout=True)
    layout = SampleLayout.from_config(OpenClawConfig.from_args(args))
    group = [step_episode(0, 0, layout), step_episode(1, 0, layout)]

    async def no_workers(url: str) -> dict[str, Any]:
        return {"workers": []}

    async def idle(urls: list[str]) -> None:
        return None

    async def pending_then_abort() -> Any:
        async def finished() -> list[Any]:
            return group

        state = sglang_rollout.GenerateState(args)
        state.pendings = {asyncio.create_task(finished())}
        return await sglang_rollout.abort(args, 0)

    sglang_rollout.GenerateState.clear_instances()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sglang_rollout, "get", no_workers)
        mp.setattr(sglang_rollout, "abort_servers_until_idle", idle)
        try:
            with pytest.raises(AttributeError, match="'list' object has no attribute 'response'"):
                asyncio.run(pending_then_abort())
        finally:
            sglang_rollout.GenerateState.clear_instances()


def test_slimes_reward_key_indexes_the_agents_float_rewards(tmp_path: Path) -> None:
    """slime's ``Sample.get_reward_value`` (our reward hook's and slime's metrics' reader) under
    ``--reward-key`` indexes the reward, a float for every agent step."""
    from slime_openclaw.slime.agent_rewards import post_process_rewards

    args = agent_args(tmp_path, reward_key="score")
    layout = SampleLayout.from_config(OpenClawConfig.from_args(args))
    with pytest.raises(TypeError, match="not subscriptable"):
        post_process_rewards(args, [step_episode(0, 0, layout)])


@pytest.mark.parametrize(("extra", "fragment"), REFUSED)
def test_launch_refuses_them(tmp_path: Path, extra: dict[str, Any], fragment: str) -> None:
    items = [f"slime.{k.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()]
    with pytest.raises(ConfigError, match=fragment):
        compose(apply_overrides(load_recipe("toolcall"), items), hf_checkpoint=hf_dir(tmp_path / "hf", QWEN3),
                run_dir=tmp_path, train_script="T")


def test_the_agent_filter_reads_episode_groups_where_slimes_cannot(tmp_path: Path) -> None:
    """slime's filter takes a group member for a Sample; ours keeps a group whose trained steps'
    rewards differ, and is called through slime's own ``call_dynamic_filter``."""
    from slime.rollout.filter_hub.base_types import call_dynamic_filter, should_drop_dynamic_filter_output
    from slime.utils.misc import load_function
    from slime.utils.types import Sample

    args = agent_args(tmp_path)
    layout = SampleLayout.from_config(OpenClawConfig.from_args(args))
    removed = Sample(index=9, group_index=0, reward=0.0, remove_sample=True)
    varied = [step_episode(0, 0, layout), [removed]]  # step rewards 0.5 and 1.5: signal
    flat = [step_episode(2, 1, layout, n_steps=1), step_episode(3, 1, layout, n_steps=1), [removed]]
    with pytest.raises(AttributeError):
        load_function(SLIME_FILTER)(args, varied)
    ours = load_function("slime_openclaw.slime.agent_filters.check_reward_nonzero_std")
    assert call_dynamic_filter(ours, args, varied).keep
    dropped = call_dynamic_filter(ours, args, flat)
    assert not dropped.keep and dropped.reason == "zero_std_0.5"
    assert not call_dynamic_filter(ours, args, [[removed]]).keep
    fallback = load_function("slime_openclaw.slime.agent_filters.check_reward_nonzero_std_with_fallback")
    out = call_dynamic_filter(fallback, args, flat)
    assert not should_drop_dynamic_filter_output(out, remaining_batch_size=1, target_data_size=1)
    assert should_drop_dynamic_filter_output(out, remaining_batch_size=3, target_data_size=1)
    guards.check({"custom_generate_function_path": guards.AGENT_GENERATE,
                  "dynamic_sampling_filter_path": guards.AGENT_FILTER})
