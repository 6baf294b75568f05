"""Guards (slime/guards.py): refused at launch and at the rollout function's first call."""

from __future__ import annotations

import argparse

import pytest
from test_launch import QWEN3, hf_dir

from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import guards, rollout
from slime_openclaw.slime.recipe import apply_overrides, compose, load_recipe

BAD = [
    ("binary_rl", ["slime.disable-rewards-normalization=false"], "add --disable-rewards-normalization"),
    ("combine", ["slime.use-opd=true", "slime.opd-type=sglang"], "adds the OPD term twice"),
    ("opd_topk", ["slime.use-opd=true", "slime.opd-type=sglang"], "adds the OPD term twice"),
    ("combine", ["slime.use-tis=true"], "drop --use-tis"),
    ("binary_rl", ["slime.global-batch-size=12"], "not a multiple of --global-batch-size 12"),
    ("opd", ["slime.n-samples-per-prompt=4"], "one sample per live turn"),
]


@pytest.mark.parametrize(("recipe", "items", "fragment"), BAD)
def test_launch_refuses(recipe, items, fragment, tmp_path) -> None:
    with pytest.raises(ConfigError, match=fragment):
        compose(apply_overrides(load_recipe(recipe), items), hf_checkpoint=hf_dir(tmp_path / "hf", QWEN3),
                run_dir=tmp_path, train_script="T")


@pytest.mark.parametrize(("recipe", "items", "fragment"), BAD)
def test_first_rollout_call_refuses_the_same(recipe, items, fragment, monkeypatch) -> None:
    settings = guards.settings_from_flags(apply_overrides(load_recipe(recipe), items)["slime"])
    args = argparse.Namespace(rollout_function_path=guards.PERSONAL_ROLLOUT, **settings)
    monkeypatch.setattr(rollout, "_RUNTIME", None)
    with pytest.raises(ConfigError, match=fragment):
        rollout.runtime(args)  # before any journal or service is opened


def test_groups_of_other_rollouts_and_divisible_batches_pass() -> None:
    base = {"rollout_batch_size": 8, "global_batch_size": 16}  # task groups: slime's normalization is meaningful
    guards.check({**base, "n_samples_per_prompt": 4, "rollout_function_path": "envs.rollout.generate"})
    with pytest.raises(ConfigError, match="not a multiple"):
        guards.check({**base, "n_samples_per_prompt": 3, "rollout_function_path": "envs.rollout.generate"})
    guards.check({**base, "rollout_batch_size": 32, "rollout_function_path": guards.PERSONAL_ROLLOUT,
                  "disable_rewards_normalization": True})


OFF_POLICY = {"binary_rl": "slime", "opd": "slime", "combine": "ours", "opd_topk": "ours",
              "terminal": "slime", "toolcall": "slime", "swe": "slime", "gui": "slime"}


@pytest.mark.parametrize(("recipe", "loss"), sorted(OFF_POLICY.items()))
def test_every_recipe_corrects_off_policy_samples(recipe, loss, tmp_path) -> None:
    """slime's --use-tis where slime's loss trains, our truncated importance weight where ours does."""
    plan = compose(load_recipe(recipe), hf_checkpoint=hf_dir(tmp_path / "hf", QWEN3), run_dir=tmp_path,
                   train_script="T")
    flags = plan.command
    if loss == "slime":
        assert "--use-tis" in flags and flags[flags.index("--tis-clip") + 1] == "2.0"
        assert "--custom-loss-function-path" not in flags
    else:
        assert "--use-tis" not in flags and plan.custom_config["openclaw_tis_clip"] == 2.0
        assert flags[flags.index("--custom-loss-function-path") + 1] == guards.POLICY_LOSS

