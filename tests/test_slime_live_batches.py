"""The personal-agent rollout's samples through slime's own RolloutManager and trainer input.

``LiveRollout`` (slime_openclaw/slime/rollout.py) hands slime journal samples as real slime
``Sample``s. slime's RolloutManager (slime/ray/rollout.py) flattens, logs and converts them
(``_convert_samples_to_train_data``: loss-mask length, rollout/teacher log-probs taken from the
first sample for all), splits them by DP rank and tensorizes them; the trainer's ``get_batch``
(slime/backends/megatron_utils/data.py) lays each loss mask onto the packed token stream; the
evaluation output goes through slime's ``log_eval_rollout_data``. Two slime options ask the
samples for what the gateway never records, and are refused (slime/guards.py):
``--rollout-top-p`` below 1 (slime then asserts top-p nucleus token ids on every sample) and
``--use-rollout-routing-replay`` (the trainer requires the routed experts of every token).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from test_launch import QWEN3, hf_dir
from test_slime_agent_batches import SLIME_ROLLOUT_ARGS, manager, trainer_batch
from test_slime_agent_batches import manager_cls as manager_cls  # the fixture
from test_slime_glue import add_ready, config_args

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.slime import agent_generate, guards, rollout
from slime_openclaw.slime.recipe import apply_overrides, compose, load_recipe
from slime_openclaw.types import Method

pytestmark = pytest.mark.slime

METHODS = {"binary_rl": Method.BINARY, "combine": Method.COMBINE, "opd": Method.OPD}
UNSERVED = [({"rollout_top_p": 0.9}, "drop --rollout-top-p"),
            ({"use_rollout_routing_replay": True}, "drop --use-rollout-routing-replay")]


def live_args(tmp_path: Path, method: str, **extra: Any) -> argparse.Namespace:
    args = config_args(tmp_path, method=method)
    for key, value in {**SLIME_ROLLOUT_ARGS, "rollout_function_path": guards.PERSONAL_ROLLOUT,
                       "n_samples_per_prompt": 1, "rollout_batch_size": 2, "global_batch_size": 2,
                       "rewards_normalization": False, **extra}.items():
        setattr(args, key, value)
    return args


def live_groups(journal: SqliteJournal, args: argparse.Namespace, method: Method) -> tuple[list[list[Any]], Any]:
    """One train step of two journal samples as real Samples (the second with a teacher only for opd,
    which skips samples without one)."""
    from slime.utils.types import Sample

    add_ready(journal, "a", reward_value=1.0, teacher=True, method=method)
    add_ready(journal, "b-long", reward_value=-1.0, teacher=method is Method.OPD, n=4, method=method)
    live = rollout.LiveRollout(OpenClawConfig.from_args(args), journal, Sample, 2, clock=lambda: 1010.0,
                               sleep=lambda s: None)
    return live.train_step(0).groups, live


@pytest.mark.parametrize("recipe", sorted(METHODS))
def test_live_samples_reach_the_trainer_and_the_eval_log(tmp_path: Path, manager_cls: Any,
                                                         monkeypatch: pytest.MonkeyPatch, recipe: str) -> None:
    from slime.observability.rollout_metrics import (
        compute_metrics_from_samples,
        compute_perf_metrics_from_samples,
        log_eval_rollout_data,
    )

    method = METHODS[recipe]
    args = live_args(tmp_path, method.value)
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        groups, live = live_groups(journal, args, method)
        data, metrics = live.evaluate()
    rm = manager(manager_cls, args, groups)
    rm.custom_reward_post_process_func = None  # the personal recipes leave slime's own
    samples, _ = rm._get_rollout_data(rollout_id=0)
    compute_metrics_from_samples(args, samples)
    compute_perf_metrics_from_samples(args, samples, 1.0)
    train_data = rm._convert_samples_to_train_data(samples)
    assert train_data["raw_reward"] == [s.reward for s in samples]
    assert ("teacher_log_probs" in train_data) is (method is not Method.BINARY)
    (box,) = rm._split_train_data_by_dp(train_data)
    batch = trainer_batch(monkeypatch, box.inner)
    assert int(batch["full_loss_masks"].sum()) == sum(sum(s.loss_mask) for s in samples)
    logged = log_eval_rollout_data(0, args, data, metrics)
    assert logged["eval/openclaw_live"] == pytest.approx(0.0)  # judge rewards 1 and -1


@pytest.mark.parametrize(("extra", "fragment"), UNSERVED)
def test_options_asking_for_what_the_gateway_does_not_record_are_refused(
        tmp_path: Path, manager_cls: Any, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any],
        fragment: str) -> None:
    """slime at 624b824a: ``_convert_samples_to_train_data`` asserts ``rollout_top_p_token_ids``
    on every sample when ``rollout_top_p != 1``; with ``use_rollout_routing_replay`` the train
    actor's ``fill_routing_replay`` raises unless the rollout data carry
    ``rollout_routed_experts`` (slime/backends/megatron_utils/actor.py, not importable here),
    which slime sets only when the first sample has them."""
    args = live_args(tmp_path, "binary", **extra)
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        groups, _ = live_groups(journal, live_args(tmp_path, "binary"), Method.BINARY)
    rm = manager(manager_cls, args, groups)
    rm.custom_reward_post_process_func = None
    samples, _ = rm._get_rollout_data(rollout_id=0)
    if "rollout_top_p" in extra:
        with pytest.raises(AssertionError):
            rm._convert_samples_to_train_data(samples)
    else:
        assert "rollout_routed_experts" not in rm._convert_samples_to_train_data(samples)
    monkeypatch.setattr(rollout, "_RUNTIME", None)
    with pytest.raises(ConfigError, match=fragment):
        rollout.runtime(args)  # before any journal or service opens
    monkeypatch.setattr(agent_generate, "_RUNTIME", None)
    with pytest.raises(ConfigError, match=fragment):
        agent_generate.runtime(argparse.Namespace(**{**vars(args), "rollout_function_path": None}))
    items = [f"slime.{k.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()]
    for recipe in ("binary_rl", "toolcall"):
        with pytest.raises(ConfigError, match=fragment):
            compose(apply_overrides(load_recipe(recipe), items), hf_checkpoint=hf_dir(tmp_path / recipe, QWEN3),
                    run_dir=tmp_path, train_script="T")
