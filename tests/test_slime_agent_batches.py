"""What slime's own code does with the batches the agents' generate function gives it.

A task group mixes episodes that give their steps (a list of Samples) with episodes that
trained nothing (their first request failed, or their environment did). Each batch goes
through the pieces of slime's RolloutManager (slime/ray/rollout.py) that are plain Python:
``_get_rollout_data`` (flattening), slime's rollout metrics, ``_convert_samples_to_train_data``
(our reward post-process hook), ``_split_train_data_by_dp`` (tensors for the trainer), and
then slime's trainer-side ``get_batch`` (slime/backends/megatron_utils/data.py), which lays
each sample's loss mask onto the packed token stream.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from journal_factories import make_turn
from test_slime_agents import free_port

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.slime import agent_generate
from slime_openclaw.slime.samples import SampleLayout

pytestmark = pytest.mark.slime

TASK = {"id": "t1", "question": "What is 2 + 3?", "answer": "5", "solution_code": "print(2 + 3)"}


@pytest.fixture
def manager_cls(monkeypatch: pytest.MonkeyPatch) -> Any:
    """slime's RolloutManager class (the one under ``@ray.remote``), importable on CPU: ``ray``
    stubbed where it is missing, torchvision stood in; ``ray.put`` is the identity (no cluster)."""
    from slime_parse_env import install_torchvision_stand_in

    install_torchvision_stand_in()
    from transformers.utils import import_utils

    import_utils.is_torchvision_available.cache_clear()
    if importlib.util.find_spec("ray") is None:
        ray = types.ModuleType("ray")
        ray.remote = lambda *a, **k: a[0] if a and isinstance(a[0], type) else (lambda c: c)  # type: ignore[attr-defined]
        ray.put = lambda value, **_: value  # type: ignore[attr-defined]
        util = types.ModuleType("ray.util")
        strategies = types.ModuleType("ray.util.scheduling_strategies")
        strategies.PlacementGroupSchedulingStrategy = object  # type: ignore[attr-defined]
        util.scheduling_strategies = strategies  # type: ignore[attr-defined]
        ray.util = util  # type: ignore[attr-defined]
        for name, module in (("ray", ray), ("ray.util", util), ("ray.util.scheduling_strategies", strategies)):
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.delitem(sys.modules, "slime.ray.rollout", raising=False)
    import slime.ray.rollout as slime_rollout

    monkeypatch.setattr(slime_rollout.ray, "put", lambda value, **_: value, raising=False)
    return getattr(slime_rollout.RolloutManager, "__ray_actor_class__", slime_rollout.RolloutManager)


SLIME_ROLLOUT_ARGS = dict(
    advantage_estimator="grpo", reward_key=None, eval_reward_key=None, load_debug_rollout_data=None,
    log_reward_category=None, sglang_speculative_algorithm=None, rollout_num_gpus=1, rollout_top_p=1.0,
    use_dynamic_batch_size=False, micro_batch_size=1, max_tokens_per_gpu=None, balance_data=False,
    balance_by_flops=False, rollout_data_transport="object-store", use_rollout_routing_replay=False,
    custom_eval_rollout_log_function_path=None, log_passrate=False, use_wandb=False, use_tensorboard=False,
    wandb_always_use_train_step=False)
"""The arguments slime's RolloutManager conversion, DP split and rollout metrics read (its defaults)."""


def agent_args(tmp_path: Path, **extra: Any) -> argparse.Namespace:
    from slime_openclaw.local.model.tiny_model import ensure_default_model

    values = dict(
        hf_checkpoint=str(ensure_default_model()), sglang_router_ip="127.0.0.1", sglang_router_port=free_port(),
        custom_config_path=None, openclaw_agent_env="toolcall", openclaw_agent_method="outcome",
        openclaw_agent_max_turns=3, openclaw_agent_normalization="group_step",
        openclaw_journal_path=str(tmp_path / "j.sqlite"), openclaw_method="binary",
        openclaw_gateway_port=free_port(), rewards_normalization=True,
        n_samples_per_prompt=2, rollout_batch_size=2, global_batch_size=4)
    return argparse.Namespace(**{**SLIME_ROLLOUT_ARGS, **values, **extra})


def failed_episode(args: argparse.Namespace, index: int, group: int) -> Any:
    """What the real generate gives for an episode whose first request failed (nothing listens)."""
    from slime.utils.types import Sample

    source = Sample(index=index, group_index=group, prompt="", metadata={"task": TASK})
    return asyncio.run(agent_generate.generate(args, source, {"max_new_tokens": 16, "temperature": 1.0}))


def step_episode(index: int, group: int, layout: SampleLayout, n_steps: int = 2) -> list[Any]:
    """What the real generate gives for an episode of ``n_steps`` judged steps (``step_samples``)."""
    from slime.utils.types import Sample

    source = Sample(index=index, group_index=group, prompt="", metadata={"task": TASK})
    episode_id = f"ep-{index}"
    episode = SimpleNamespace(episode_id=episode_id, outcome=SimpleNamespace(score=1.0, passed=True))
    judged = [SimpleNamespace(hint=None, teacher=None, raw_reward=0.5 + step,
                              record=SimpleNamespace(turn=make_turn(episode_id, step, n_prompt=6, n_response=3)),
                              step=SimpleNamespace(turn_index=step)) for step in range(n_steps)]
    stage = SimpleNamespace(method="outcome")
    return agent_generate.step_samples(Sample, source, episode, judged, stage, layout)


def manager(cls: Any, args: argparse.Namespace, groups: list[list[Any]]) -> Any:
    from slime.rollout.base_types import RolloutFnTrainOutput

    from slime_openclaw.slime.agent_rewards import post_process_rewards

    rm = cls.__new__(cls)  # the actor's state that these methods read, without its servers
    rm.args, rm.data_source = args, None
    rm.generate_rollout = lambda *a, **k: RolloutFnTrainOutput(samples=groups, metrics={})
    rm.custom_reward_post_process_func = post_process_rewards
    rm.custom_convert_samples_to_train_data_func = None
    rm.train_parallel_config = {"dp_size": 1, "cp_size": 1, "vpp_size": 1, "microbatch_group_size_per_vp_stage": 1}
    return rm


def trainer_batch(monkeypatch: pytest.MonkeyPatch, rollout_data: dict[str, Any]) -> dict[str, Any]:
    """slime's ``get_batch`` over one rank's rollout data (TP = CP = 1, on CPU)."""
    from megatron.core import mpu
    from slime.backends.megatron_utils import data as megatron_data

    monkeypatch.setattr(mpu, "get_tensor_model_parallel_world_size", lambda: 1)
    monkeypatch.setattr(mpu, "get_context_parallel_world_size", lambda: 1)
    monkeypatch.setattr(mpu, "get_context_parallel_rank", lambda: 0)
    monkeypatch.setattr(megatron_data.accelerator, "device", lambda: "cpu")
    keys = ("tokens", "loss_masks", "total_lengths", "response_lengths")
    total = rollout_data["total_lengths"]
    iterator = SimpleNamespace(get_next=lambda wanted: {
        "tokens": rollout_data["tokens"], "loss_masks": rollout_data["loss_masks"],
        "total_lengths": [total[i] for i in rollout_data["partition"]],
        "response_lengths": rollout_data["response_lengths"]})
    return megatron_data.get_batch(iterator, list(keys))


@pytest.mark.parametrize(("failed_first", "method"), [(False, "binary"), (True, "binary"), (True, "combine")])
def test_a_group_mixing_failed_and_stepped_episodes_reaches_the_trainer(
        tmp_path: Path, manager_cls: Any, monkeypatch: pytest.MonkeyPatch, cleanup_runtime: None,
        failed_first: bool, method: str) -> None:
    """slime/ray/rollout.py ``_get_rollout_data`` flattens ``while isinstance(data[0], list)``:
    a task group whose episodes are a list and a bare Sample either fails there (chain over a
    Sample) or stays half-nested (its metrics and the reward hook then see lists). And each
    sample reaches ``get_batch``, which pads the loss mask by ``prompt_length - 1`` (a sample of
    no tokens fails), and ``tensorize_rollout_data_for_training`` (``rollout_log_probs`` taken
    from the first sample for all: one missing fails, or drops them for the batch; so are
    ``teacher_log_probs`` where the layout has them)."""
    from slime.observability.rollout_metrics import compute_metrics_from_samples
    from slime.utils.types import Sample

    args = agent_args(tmp_path, openclaw_method=method)
    layout = SampleLayout.from_config(OpenClawConfig.from_args(args))
    failed = [failed_episode(args, i, group) for i, group in ((1, 0), (3, 1))]
    stepped = [step_episode(i, group, layout) for i, group in ((0, 0), (2, 1))]
    groups = [[failed[g], stepped[g]] if failed_first else [stepped[g], failed[g]] for g in range(2)]
    rm = manager(manager_cls, args, groups)

    samples, _ = rm._get_rollout_data(rollout_id=0)
    assert all(isinstance(s, Sample) for s in samples) and len(samples) == 6
    compute_metrics_from_samples(args, samples)
    train_data = rm._convert_samples_to_train_data(samples)
    removed = [i for i, s in enumerate(samples) if s.remove_sample]
    assert len(removed) == 2 and all(sum(train_data["loss_masks"][i]) == 0 for i in removed)
    assert all(train_data["rewards"][i] == 0.0 for i in removed)
    assert len(set(train_data["rollout_ids"])) == 4  # one rollout per episode, as global_batch_size counts
    assert len(train_data["rollout_log_probs"]) == len(samples)
    assert len(train_data.get("teacher_log_probs", [])) == (len(samples) if layout.with_teacher else 0)
    (box,) = rm._split_train_data_by_dp(train_data)
    rollout_data = box.inner
    batch = trainer_batch(monkeypatch, rollout_data)
    assert batch["full_loss_masks"].shape == batch["tokens"].shape
    assert int(batch["full_loss_masks"].sum()) == sum(sum(s.loss_mask) for s in samples if not s.remove_sample) > 0
