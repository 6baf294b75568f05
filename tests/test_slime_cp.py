"""The loss hook under context parallelism, and its metrics reduced the way slime reduces them.

Without slime: ``cp_fakes.py`` reproduces slime's zigzag CP split (the slime-marked test in
``test_slime_upstream.py`` checks it against slime's own helpers and runs slime's loss entry
at CP=2). Each CP rank sees CP-local log-probs, advantages, old and rollout log-probs beside
slime's full-response loss masks; the ranks' losses, gradients and metrics must add up to the
non-CP ones, because slime sums them over the DP x CP group.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch
from cp_fakes import CPBackend, cp_sum_of_sample_mean, local_rows
from test_slime_glue import config_args

from slime_openclaw.losses import StalenessPolicy, make_sum_of_sample_mean, truncated_importance_weights
from slime_openclaw.slime import hooks
from slime_openclaw.slime.logprobs import TorchBackend
from slime_openclaw.slime.topk_channel import TopKRows, TopKStage, token_digest

SHAPES = [(2, 10), (4, 5), (3, 4), (6, 1)]  # (prompt, response); some responses sit on one rank only
METRICS = ("loss", "pg_loss", "pg_clipfrac", "ppo_kl", "tis", "tis_clipfrac", "tis_abs")


def make_batch(seed: int = 0, vocab: int = 12, shapes=SHAPES) -> tuple[dict[str, Any], torch.Tensor]:
    """A packed micro-batch (full-response tensors) with PPO clipping and TIS clipping both active."""
    gen = torch.Generator().manual_seed(seed)
    tokens = [torch.randint(0, vocab, (p + r,), generator=gen) for p, r in shapes]
    logits = torch.randn(1, sum(p + r for p, r in shapes), vocab, generator=gen).requires_grad_()
    batch: dict[str, Any] = {
        "unconcat_tokens": tokens,
        "total_lengths": [p + r for p, r in shapes],
        "response_lengths": [r for _, r in shapes],
        "loss_masks": [(torch.rand(r, generator=gen) > 0.25).int() for _, r in shapes],
        "advantages": [torch.randn(r, generator=gen) for _, r in shapes],
    }
    with torch.no_grad():
        current = TorchBackend().log_probs(logits, argparse.Namespace(rollout_temperature=1.0), batch)
    batch["log_probs"] = [c + 0.3 * torch.randn(c.shape, generator=gen) for c in current]
    batch["rollout_log_probs"] = [o + torch.randn(o.shape, generator=gen) for o in batch["log_probs"]]
    return batch, logits


def rank_batch(batch: dict[str, Any], rank: int, size: int) -> dict[str, Any]:
    """What slime hands the loss on CP rank ``rank``: per-token tensors cut, loss masks full."""
    backend = CPBackend(rank, size)
    local = dict(batch)
    for key in ("advantages", "log_probs", "rollout_log_probs"):
        local[key] = backend.cut(batch[key], batch)
    return local


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("per_token", [False, True])
def test_cp_ranks_add_up_to_the_full_sequence_loss(tmp_path, size, per_token) -> None:
    args = config_args(tmp_path, openclaw_tis_clip=2.0)
    batch, logits = make_batch()
    full_reducer = (cp_sum_of_sample_mean(batch, 0, 1, per_token=True) if per_token
                    else make_sum_of_sample_mean(batch["response_lengths"], batch["loss_masks"]))
    loss, metrics = hooks.policy_loss(args, batch, logits, full_reducer, backend=TorchBackend())
    loss.backward()
    expected_grad, logits.grad = logits.grad.clone(), None
    assert float(metrics["tis_clipfrac"]) > 0 and float(metrics["pg_clipfrac"]) > 0  # both clips active
    totals = dict.fromkeys(METRICS, 0.0)
    for rank in range(size):
        local = rank_batch(batch, rank, size)
        reducer = cp_sum_of_sample_mean(batch, rank, size, per_token=per_token)
        part, part_metrics = hooks.policy_loss(args, local, logits, reducer, backend=CPBackend(rank, size))
        part.backward()
        for key in METRICS:
            totals[key] += float(part_metrics[key])
    for key in METRICS:
        assert totals[key] == pytest.approx(float(metrics[key]), abs=1e-5), key
    assert torch.allclose(logits.grad, expected_grad, atol=1e-6)


def test_a_rank_without_response_tokens_contributes_zero_and_keeps_the_graph(tmp_path) -> None:
    args = config_args(tmp_path, openclaw_tis_clip=2.0)
    shapes = [(6, 1)]  # total 7, cp 2: the one logit row (5) is on rank 1
    batch, logits = make_batch(shapes=shapes)
    assert local_rows(7, 1, 0, 2) == [] and local_rows(7, 1, 1, 2) == [0]
    local = rank_batch(batch, 0, 2)
    loss, metrics = hooks.policy_loss(args, local, logits, cp_sum_of_sample_mean(batch, 0, 2),
                                      backend=CPBackend(0, 2))
    assert float(loss.detach()) == 0.0 and float(metrics["tis"]) == 0.0
    loss.backward()  # 0 * logits.sum(): every rank backpropagates, as slime's collectives need
    assert logits.grad is not None


def slime_reduce(logs: list[dict[str, torch.Tensor]], denominator: float) -> dict[str, float]:
    """``reduce_train_step_metrics``: sum each metric over micro-batches (and ranks), divide once."""
    return {key: sum(float(log[key]) for log in logs) / denominator for key in logs[0]}


@pytest.mark.parametrize("per_token", [False, True])
def test_tis_and_topk_metrics_reduce_to_per_sample_or_per_token_means(tmp_path, per_token) -> None:
    """Two micro-batches of different sizes; slime divides the summed metrics by the step's samples
    (tokens with --calculate-per-token-loss): the result must be the mean over samples (tokens)."""
    args = config_args(tmp_path, openclaw_tis_clip=2.0)
    policy = StalenessPolicy(max_staleness=None, tis_cap=2.0)
    logs, per_sample, ratios, clipped = [], [], [], []
    for seed, shapes in ((1, SHAPES[:1]), (2, SHAPES[1:])):
        batch, logits = make_batch(seed=seed, shapes=shapes)
        reducer = (cp_sum_of_sample_mean(batch, 0, 1, per_token=True) if per_token
                   else make_sum_of_sample_mean(batch["response_lengths"], batch["loss_masks"]))
        logs.append(hooks.policy_loss(args, batch, logits, reducer, backend=TorchBackend())[1])
        for old, behaviour, mask in zip(batch["log_probs"], batch["rollout_log_probs"], batch["loss_masks"],
                                        strict=True):
            weights, _, stats = truncated_importance_weights(old, behaviour, [0], 0, policy, mask)
            per_sample.append(stats)
            trained = mask.bool()
            ratio = torch.exp(old - behaviour)[trained]
            ratios.append(ratio)
            clipped.append((weights[trained] != ratio).float())
    tokens = sum(r.numel() for r in ratios)
    reduced = slime_reduce(logs, tokens if per_token else len(per_sample))
    if per_token:
        assert reduced["tis"] == pytest.approx(float(torch.cat(ratios).mean()), rel=1e-5)
        assert reduced["tis_clipfrac"] == pytest.approx(float(torch.cat(clipped).mean()), rel=1e-5)
    else:
        assert reduced["tis"] == pytest.approx(sum(s["tis_mean"] for s in per_sample) / len(per_sample), rel=1e-5)
        assert reduced["tis_clipfrac"] == pytest.approx(
            sum(s["tis_clipfrac"] for s in per_sample) / len(per_sample), rel=1e-5)
        assert reduced["tis_abs"] == pytest.approx(sum(s["tis_abs"] for s in per_sample) / len(per_sample), rel=1e-5)


def test_topk_frac_is_the_share_of_samples_with_teacher_rows(tmp_path) -> None:
    args = config_args(tmp_path, openclaw_teacher_topk=2, openclaw_teacher_topk_dir=str(tmp_path / "topk"))
    batch, logits = make_batch(shapes=SHAPES[:3])
    batch["advantages"] = [torch.zeros_like(a) for a in batch["advantages"]]
    response = batch["response_lengths"][1]
    rows = TopKRows(ids=torch.tensor([[1, 2]] * response), log_probs=torch.tensor([[-0.5, -1.5]] * response))
    stage = TopKStage()
    stage.replace(0, {token_digest(batch["unconcat_tokens"][1]): rows})
    reducer = make_sum_of_sample_mean(batch["response_lengths"], batch["loss_masks"])
    _, metrics = hooks.policy_loss(args, batch, logits, reducer, backend=TorchBackend(), stage=stage)
    assert slime_reduce([metrics], 3)["topk_frac"] == pytest.approx(1 / 3)  # one of the step's three samples
