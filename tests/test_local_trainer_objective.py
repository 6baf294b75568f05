"""The local trainer's objective is the slime path's: same loss as ``slime/hooks.py`` on the
same samples (the real tiny model's logits), config mapping, sample selection, checkpoint
completeness and the push sequence. No engine here (see test_local_trainer.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError, EngineError
from slime_openclaw.local.training import checkpoint as ckpt
from slime_openclaw.local.training.trainer import TrainerConfig
from slime_openclaw.local.training.trainer_objective import batch_gradients, prepare
from slime_openclaw.local.training.weight_sync import push_checkpoint
from slime_openclaw.losses import StalenessPolicy, make_sum_of_sample_mean
from slime_openclaw.selection import SelectionRules, unusable_reason
from slime_openclaw.slime import hooks
from slime_openclaw.slime.logprobs import TorchBackend
from slime_openclaw.types import Method, TrainingSample

TEMPERATURE = 0.8


def sample(i: int, *, reward: float, teacher: bool, versions: int = 0, mask: tuple[int, ...] | None = None) -> TrainingSample:
    prompt = tuple(range(40 + i, 48 + i))
    response = tuple(300 + 11 * i + t for t in range(5))
    rollout = tuple(-2.0 - 0.3 * t - 0.1 * i for t in range(5))
    return TrainingSample(
        session_id="s", turn_index=i, method=Method.COMBINE, prompt_ids=prompt, response_ids=response,
        loss_mask=mask or (1,) * 5, rollout_log_probs=rollout, weight_versions=(versions,) * 5, reward=reward,
        teacher_log_probs=tuple(x + (0.5 if t % 2 else -0.25) for t, x in enumerate(rollout)) if teacher else None,
        sample_id=f"s:{i}:combine",
    )


def slime_args(tmp_path: Path) -> argparse.Namespace:
    values = {"openclaw_method": "combine", "openclaw_rl_weight": 0.5, "openclaw_opd_weight": 2.0,
              "openclaw_opd_clip": 0.4, "openclaw_judge_endpoints": ["slime:judge"],
              "openclaw_journal_path": str(tmp_path / "journal.sqlite")}
    return argparse.Namespace(custom_config_path=None, rollout_temperature=TEMPERATURE, eps_clip=0.2,
                              eps_clip_high=0.28, use_rollout_logprobs=True, **values)


def test_loss_equals_the_slime_hooks_on_the_same_samples(tmp_path: Path, tiny_model_path: Path) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    samples = [sample(0, reward=1.0, teacher=True), sample(1, reward=-1.0, teacher=False, mask=(1, 1, 0, 1, 0)),
               sample(2, reward=0.0, teacher=True)]
    args = slime_args(tmp_path)
    config = TrainerConfig.from_openclaw(OpenClawConfig.from_args(args), str(tmp_path), temperature=TEMPERATURE)
    items = [prepare(s, config, 0) for s in samples]
    ours, stats = batch_gradients(model, items, config, backward=False)

    # the slime path: advantage hook, then loss hook on packed logits (rollout log-probs as old)
    rollout = [torch.tensor(s.rollout_log_probs) for s in samples]
    data: dict[str, Any] = {
        "rollout_log_probs": rollout, "rewards": [s.reward for s in samples],
        "teacher_log_probs": [torch.tensor(s.teacher_log_probs) if s.teacher_log_probs else r.clone()
                              for s, r in zip(samples, rollout, strict=True)],  # the no-teacher marker
        "loss_masks": [torch.tensor(s.loss_mask, dtype=torch.int) for s in samples],
        "response_lengths": [5] * 3, "total_lengths": [len(s.tokens) for s in samples],
    }
    hooks.combined_advantage(args, data)
    with torch.no_grad():
        logits = torch.cat([model(input_ids=torch.tensor([s.tokens])).logits for s in samples], dim=1)
    batch = {**data, "unconcat_tokens": [torch.tensor(s.tokens) for s in samples]}
    reducer = make_sum_of_sample_mean(batch["response_lengths"], batch["loss_masks"])
    theirs, metrics = hooks.policy_loss(args, batch, logits, reducer, backend=TorchBackend())

    assert ours == pytest.approx(float(theirs) / len(samples), abs=1e-6)  # slime sums sample means
    assert stats["ppo_kl"] == pytest.approx(float(metrics["ppo_kl"]) / len(samples), abs=1e-6)
    assert stats["adv_opd_clip_frac"] > 0 and stats["adv_opd_tokens"] == 10


def test_config_from_openclaw_and_validation(tmp_path: Path) -> None:
    base = OpenClawConfig.from_mapping({"openclaw_method": "opd", "openclaw_teacher_topk": 4,
                                        "openclaw_teacher_topk_dir": str(tmp_path), "openclaw_max_staleness": 2,
                                        "openclaw_judge_endpoints": ["slime:judge"]})
    config = TrainerConfig.from_openclaw(base, str(tmp_path), batch_size=2)
    assert config.method == "opd_topk" and config.batch_size == 2
    assert config.staleness.max_staleness == 2 and config.advantage_config().w_opd == 0.0
    for bad in ({"method": "ppo"}, {"push": "abort"}, {"min_batch": 3, "batch_size": 2}, {"lr": 0.0},
                {"opd_clip": -1.0}, {"keep_checkpoints": 0}):
        with pytest.raises(ConfigError):
            TrainerConfig(checkpoint_dir=str(tmp_path), **bad)  # type: ignore[arg-type]


def test_selection_skips_untrainable_and_stale_samples(tmp_path: Path) -> None:
    opd = SelectionRules.for_method("opd", max_staleness=4, topk=False, vocab_size=2048)
    assert unusable_reason(sample(0, reward=1.0, teacher=False), opd) == "no teacher log-probs (method opd)"
    assert unusable_reason(sample(0, reward=1.0, teacher=True), opd) is None
    small = SelectionRules.for_method("opd", max_staleness=4, topk=False, vocab_size=100)
    assert unusable_reason(sample(0, reward=1.0, teacher=True), small) == "token id outside the vocabulary"
    topk = SelectionRules.for_method("opd_topk", max_staleness=4, topk=True)
    assert "top-K" in (unusable_reason(sample(0, reward=0.0, teacher=True), topk) or "")
    bounded = TrainerConfig(checkpoint_dir=str(tmp_path), staleness=StalenessPolicy(max_staleness=2))
    assert not prepare(sample(0, reward=1.0, teacher=False, versions=3), bounded, 5).dropped
    stale = prepare(sample(0, reward=1.0, teacher=False, versions=2), bounded, 5)
    assert stale.dropped and stale.staleness == 3.0 and float(stale.weights.sum()) == 0.0
    binary = prepare(sample(0, reward=1.0, teacher=True), TrainerConfig(checkpoint_dir=".", method="binary"), 0)
    assert binary.teacher is None and binary.reward == 1.0


def test_checkpoint_listing_skips_incomplete_and_prunes(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        (tmp_path / f"step_{step:08d}").mkdir()
    for step in (1, 2):
        torch.save({}, tmp_path / f"step_{step:08d}" / ckpt.STATE_FILE)
    (tmp_path / ".tmp-step_4-abc").mkdir()
    assert [s for s, _ in ckpt.complete_checkpoints(tmp_path)] == [1, 2]
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step_00000002"
    deleted = ckpt.prune(tmp_path, keep=1)
    assert {p.name for p in deleted} == {"step_00000001", ".tmp-step_4-abc"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002", "step_00000003"]


class RecordingAdmin:
    def __init__(self, fail_update: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_update = fail_update

    async def pause_generation(self, mode: str = "abort") -> None:
        self.calls.append(("pause", mode))

    async def continue_generation(self) -> None:
        self.calls.append(("continue",))

    async def update_weights_from_disk(self, path: str, weight_version: int | None = None, *,
                                       abort_all_requests: bool = False) -> str:
        self.calls.append(("update", path, weight_version))
        if self.fail_update:
            raise EngineError("refused")
        return "ok"

    async def weight_version(self) -> int:
        return 0


async def test_push_always_continues_after_a_pause() -> None:
    admin = RecordingAdmin(fail_update=True)
    with pytest.raises(EngineError):
        await push_checkpoint(admin, "/ckpt", 3, "in_place")
    assert admin.calls == [("pause", "in_place"), ("update", "/ckpt", 3), ("continue",)]
    swap = RecordingAdmin()
    assert await push_checkpoint(swap, "/ckpt", 4, "swap") == 0.0
    assert swap.calls == [("update", "/ckpt", 4)]
