"""truncated_importance_weights: TIS weights, staleness bound and its two actions."""

from __future__ import annotations

import math

import pytest
import torch

from slime_openclaw.losses import StalenessPolicy, truncated_importance_weights


def test_weights_are_clamped_ratios_and_detached() -> None:
    train = torch.tensor([-1.0, -0.5, -2.0, -0.1], dtype=torch.float64, requires_grad=True)
    rollout = torch.tensor([-2.0, -0.5, -0.5, -0.2], dtype=torch.float64)
    policy = StalenessPolicy(max_staleness=2, tis_cap=2.0, tis_floor=0.5)
    weights, keep, stats = truncated_importance_weights(train, rollout, [7, 7, 8, 8], 8, policy)
    ratios = [math.exp(t - r) for t, r in zip(train.tolist(), rollout.tolist(), strict=True)]
    assert weights.tolist() == pytest.approx([min(max(x, 0.5), 2.0) for x in ratios])
    assert not weights.requires_grad and keep.tolist() == [1.0] * 4
    assert stats["staleness"] == 1 and stats["dropped"] == 0 and stats["stale"] == 0
    assert stats["tis_clipfrac"] == pytest.approx(2 / 4)
    assert stats["tis_mean"] == pytest.approx(sum(ratios) / 4)
    assert stats["tis_abs"] == pytest.approx(sum(abs(x - 1) for x in ratios) / 4)


@pytest.mark.parametrize(("action", "kept"), [("drop", False), ("truncate", True)])
def test_past_the_bound_drop_or_truncate(action: str, kept: bool) -> None:
    train, rollout = torch.tensor([-0.1, -3.0]), torch.tensor([-1.5, -1.0])
    policy = StalenessPolicy(max_staleness=1, action=action)  # type: ignore[arg-type]
    weights, keep, stats = truncated_importance_weights(train, rollout, ["3", "5"], 5, policy)
    assert stats["staleness"] == 2 and stats["stale"] == 1.0
    if kept:
        assert keep.tolist() == [1.0, 1.0] and weights.tolist() == pytest.approx([2.0, math.exp(-2.0)])
    else:
        assert keep.tolist() == [0.0, 0.0] and weights.tolist() == [0.0, 0.0] and stats["dropped"] == 1.0


def test_bound_is_inclusive_and_none_means_unbounded() -> None:
    x = torch.zeros(3)
    _, keep, _ = truncated_importance_weights(x, x, [2], 4, StalenessPolicy(max_staleness=2))
    assert keep.tolist() == [1.0] * 3
    _, keep, stats = truncated_importance_weights(x, x, [0], 1000, StalenessPolicy(max_staleness=None))
    assert keep.tolist() == [1.0] * 3 and stats["stale"] == 0.0


def test_per_token_versions_respect_the_loss_mask() -> None:
    x = torch.zeros(4)
    mask = torch.tensor([0, 1, 1, 0])  # the old version sits on an untrained (tool output) token
    _, keep, stats = truncated_importance_weights(
        x, x, torch.tensor([1, 9, 9, 9]), 10, StalenessPolicy(max_staleness=2), mask
    )
    assert stats["staleness"] == 1 and keep.tolist() == [1.0] * 4 and stats["tokens"] == 2
    _, keep, _ = truncated_importance_weights(x, x, [1, 9, 9, 9], 10, StalenessPolicy(max_staleness=2))
    assert keep.tolist() == [0.0] * 4


def test_masked_infinite_ratio_does_not_poison_statistics() -> None:
    train, rollout = torch.tensor([-0.5, -1.0]), torch.tensor([-0.5, float("-inf")])
    weights, _, stats = truncated_importance_weights(
        train, rollout, [3], 3, StalenessPolicy(), torch.tensor([1, 0])
    )
    assert weights.tolist() == [1.0, 2.0] and stats["tis_mean"] == 1.0 and stats["tis_clipfrac"] == 0.0


def test_empty_single_and_all_masked_samples() -> None:
    empty = torch.zeros(0)
    weights, keep, stats = truncated_importance_weights(empty, empty, [], 5, StalenessPolicy())
    assert weights.shape == (0,) and keep.shape == (0,) and stats["tokens"] == 0 and stats["staleness"] == 0
    weights, _, stats = truncated_importance_weights(
        torch.tensor([0.0]), torch.tensor([-5.0]), [5], 5, StalenessPolicy()
    )
    assert weights.tolist() == [2.0] and stats["tis_clipfrac"] == 1.0
    _, _, stats = truncated_importance_weights(
        torch.zeros(2), torch.zeros(2), [5, 5], 5, StalenessPolicy(), torch.zeros(2)
    )
    assert stats["tokens"] == 0 and stats["tis_mean"] == 0.0


def test_errors_and_policy_validation() -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="unknown"):
        truncated_importance_weights(x, x, [], 3, StalenessPolicy())
    with pytest.raises(ValueError, match="newer"):
        truncated_importance_weights(x, x, [4], 3, StalenessPolicy())
    with pytest.raises(ValueError, match="1-D"):
        truncated_importance_weights(x, torch.zeros(3), [1], 3, StalenessPolicy())
    for bad in (
        {"max_staleness": -1},
        {"max_staleness": True},
        {"action": "skip"},
        {"tis_cap": 0.0},
        {"tis_floor": 3.0},
        {"tis_cap": float("nan")},
    ):
        with pytest.raises(ValueError):
            StalenessPolicy(**bad)  # type: ignore[arg-type]
