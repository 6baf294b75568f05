"""The KL-to-reference penalty: Schulman's estimators as slime's ``compute_approx_kl``, and
the local trainer's use of it (zero against itself, pulls the policy back to the reference)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)

from slime_openclaw.errors import ConfigError
from slime_openclaw.local.training.trainer import TrainerConfig
from slime_openclaw.local.training.trainer_objective import batch_gradients, prepare
from slime_openclaw.losses import approx_kl
from slime_openclaw.types import Method, TrainingSample

LP = torch.tensor([-1.0, -0.5, -2.0, -0.1])
REF = torch.tensor([-1.2, -0.5, -1.0, -0.4])


def test_estimators_by_hand() -> None:
    r = [lp - ref for lp, ref in zip(LP.tolist(), REF.tolist(), strict=True)]
    assert approx_kl(LP, REF, "k1").tolist() == pytest.approx(r)
    assert approx_kl(LP, REF, "k2").tolist() == pytest.approx([x * x / 2 for x in r])
    k3 = [math.exp(-x) - 1 + x for x in r]
    assert approx_kl(LP, REF, "k3").tolist() == pytest.approx(k3)
    assert approx_kl(LP, REF, "low_var_kl").tolist() == pytest.approx(k3)
    assert min(k3) >= 0 and approx_kl(LP, LP).abs().max() == 0


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="kl type"):
        approx_kl(LP, REF, "k4")
    with pytest.raises(ConfigError, match="kl_type"):
        TrainerConfig(checkpoint_dir="x", kl_type="k4")
    with pytest.raises(ConfigError, match="kl_coef"):
        TrainerConfig(checkpoint_dir="x", kl_coef=-0.1)


@pytest.mark.slime
def test_equals_slime_compute_approx_kl() -> None:
    ppo_utils = pytest.importorskip("slime.utils.ppo_utils")
    for kind in ("k1", "k2", "k3", "low_var_kl"):
        theirs = ppo_utils.compute_approx_kl(LP, REF, kl_loss_type=kind)
        assert torch.allclose(approx_kl(LP, REF, kind), theirs.float(), atol=1e-7), kind


def _samples() -> list[TrainingSample]:
    out = []
    for i in range(3):
        response = tuple(300 + 7 * i + t for t in range(6))
        out.append(TrainingSample(
            session_id="s", turn_index=i, method=Method.BINARY, prompt_ids=tuple(range(40 + i, 50 + i)),
            response_ids=response, loss_mask=(1,) * 6, rollout_log_probs=(-2.0,) * 6, weight_versions=(0,) * 6,
            reward=0.0, sample_id=f"s:{i}:binary"))
    return out


def test_trainer_penalty_is_zero_against_itself_and_pulls_back(tiny_model_path: Path) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    config = TrainerConfig(checkpoint_dir="x", method="binary", kl_coef=0.5, temperature=0.7)
    items = [prepare(s, config, 0) for s in _samples()]
    plain, _ = batch_gradients(reference, items, TrainerConfig(checkpoint_dir="x", method="binary", temperature=0.7),
                               backward=False)
    same, stats = batch_gradients(reference, items, config, backward=False, reference=reference)
    assert stats["kl_loss"] == 0.0 and same == pytest.approx(plain, abs=1e-7)

    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    _, before = batch_gradients(policy, items, config, backward=False, reference=reference)
    assert before["kl_loss"] > 0
    assert before["loss"] == pytest.approx(before["pg_loss"] + 0.5 * before["kl_loss"], rel=1e-5)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    for _ in range(5):  # rewards are 0: the only force is the penalty
        optimizer.zero_grad()
        batch_gradients(policy, items, config, reference=reference)
        optimizer.step()
    _, after = batch_gradients(policy, items, config, backward=False, reference=reference)
    assert after["kl_loss"] < 0.8 * before["kl_loss"]
