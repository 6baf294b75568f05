"""ppo_clip_loss against an element-wise reference, gradients, masked reductions."""

from __future__ import annotations

import math

import pytest
import torch

from slime_openclaw.losses import make_sum_of_sample_mean, masked_mean, ppo_clip_loss


def reference_ppo(log_probs: list[float], old: list[float], adv: list[float], lo: float, hi: float):
    """One token at a time: -min(rho A, clip(rho) A) and whether the clip decided it."""
    losses, clipped = [], []
    for lp, o, a in zip(log_probs, old, adv, strict=True):
        rho = math.exp(lp - o)
        plain, clip = rho * a, min(max(rho, 1 - lo), 1 + hi) * a
        losses.append(-min(plain, clip))
        clipped.append(1.0 if clip < plain else 0.0)
    return losses, clipped


@pytest.mark.parametrize(("lo", "hi"), [(0.2, 0.28), (0.1, 0.1), (0.0, 0.5)])
def test_matches_elementwise_reference(lo: float, hi: float) -> None:
    gen = torch.Generator().manual_seed(1)
    log_probs = torch.randn(200, generator=gen, dtype=torch.float64) * 0.4 - 1
    old = log_probs + torch.randn(200, generator=gen, dtype=torch.float64) * 0.3
    adv = torch.randn(200, generator=gen, dtype=torch.float64)
    out = ppo_clip_loss(log_probs, old, adv, lo, hi)
    ref_loss, ref_clipped = reference_ppo(log_probs.tolist(), old.tolist(), adv.tolist(), lo, hi)
    torch.testing.assert_close(out.loss, torch.tensor(ref_loss, dtype=torch.float64))
    assert out.clipped.tolist() == ref_clipped
    assert 0 < sum(ref_clipped) < 200  # both branches exercised
    torch.testing.assert_close(out.ratio, (log_probs - old).exp())


def test_asymmetric_clip_bounds() -> None:
    old = torch.zeros(4, dtype=torch.float64)
    log_probs = torch.log(torch.tensor([2.0, 2.0, 0.5, 0.5], dtype=torch.float64))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    out = ppo_clip_loss(log_probs, old, adv)
    # A>0, rho=2 -> capped at 1.28; A<0, rho=2 -> unclipped 2; A>0, rho=.5 -> .5; A<0, rho=.5 -> capped at .8
    torch.testing.assert_close(out.loss, torch.tensor([-1.28, 2.0, -0.5, 0.8], dtype=torch.float64))
    assert out.clipped.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(2)
    old = torch.randn(12, generator=gen, dtype=torch.float64)
    # ratios spread inside and outside the clip range, away from its edges
    offsets = torch.tensor(
        [-0.6, -0.4, -0.1, 0.0, 0.05, 0.1, 0.15, 0.4, 0.6, -0.05, 0.3, -0.3], dtype=torch.float64
    )
    log_probs = (old + offsets).requires_grad_(True)
    adv = torch.randn(12, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda lp: ppo_clip_loss(lp, old, adv).loss, (log_probs,))
    # zero gradient exactly where the clip is active
    out = ppo_clip_loss(log_probs, old, adv)
    (grad,) = torch.autograd.grad(out.loss.sum(), log_probs)
    assert torch.equal(grad[out.clipped == 1], torch.zeros_like(grad[out.clipped == 1]))
    assert (grad[out.clipped == 0] != 0).all()


def test_empty_single_and_all_masked_samples() -> None:
    empty = torch.zeros(0, requires_grad=True)
    out = ppo_clip_loss(empty, torch.zeros(0), torch.zeros(0))
    assert out.loss.shape == (0,) and out.clipped.shape == (0,)
    assert masked_mean(out.loss, torch.zeros(0)).item() == 0.0

    single = torch.tensor([-0.5], requires_grad=True)
    loss = masked_mean(ppo_clip_loss(single, torch.tensor([-0.7]), torch.tensor([2.0])).loss, torch.ones(1))
    loss.backward()
    assert single.grad is not None
    torch.testing.assert_close(loss.detach(), torch.tensor(-2.0 * min(math.exp(0.2), 1.28)))

    masked = torch.randn(5, requires_grad=True)
    mask = torch.zeros(5)
    value = masked_mean(ppo_clip_loss(masked, masked.detach() + 0.1, torch.ones(5)).loss, mask)
    value.backward()
    assert value.item() == 0.0 and torch.equal(masked.grad, torch.zeros(5))


def test_packed_batch_reduced_like_slime() -> None:
    lengths = [3, 0, 4]
    masks = [torch.tensor([1.0, 0.0, 1.0]), torch.zeros(0), torch.tensor([1.0, 1.0, 1.0, 0.0])]
    log_probs = torch.randn(7, dtype=torch.float64, requires_grad=True)
    old, adv = log_probs.detach() + 0.1, torch.randn(7, dtype=torch.float64)
    out = ppo_clip_loss(log_probs, old, adv)
    reduce = make_sum_of_sample_mean(lengths, masks)
    loss = out.loss.detach()
    expected = (loss[0] + loss[2]) / 2 + (loss[3] + loss[4] + loss[5]) / 3
    torch.testing.assert_close(reduce(out.loss), expected)


def test_invalid_arguments() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="one shape"):
        ppo_clip_loss(x, torch.zeros(2), x)
    with pytest.raises(ValueError, match="eps_clip"):
        ppo_clip_loss(x, x, x, eps_clip=1.0)
    with pytest.raises(ValueError, match="eps_clip"):
        ppo_clip_loss(x, x, x, eps_clip_high=-0.1)
