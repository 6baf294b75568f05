"""masked_mean and make_sum_of_sample_mean follow slime's sum_of_sample_mean semantics."""

from __future__ import annotations

import pytest
import torch

from slime_openclaw.losses import make_sum_of_sample_mean, masked_mean, masked_sum


def slime_reference(values: list[float], lengths: list[int], masks: list[list[float]]) -> float:
    """Written from slime's definition: sum over samples of sum(x*m) / max(sum(m), 1)."""
    total, start = 0.0, 0
    for n, mask in zip(lengths, masks, strict=True):
        chunk = values[start : start + n]
        total += sum(x * m for x, m in zip(chunk, mask, strict=True)) / max(sum(mask), 1)
        start += n
    return total


def test_matches_slime_definition_with_empty_and_all_masked_samples() -> None:
    lengths = [4, 0, 1, 3, 2]
    masks = [[1, 0, 1, 1], [], [1], [0, 0, 0], [0.5, 1]]
    values = torch.randn(sum(lengths), dtype=torch.float64)
    reduce = make_sum_of_sample_mean(lengths, [torch.tensor(m, dtype=torch.float64) for m in masks])
    assert reduce(values).item() == pytest.approx(slime_reference(values.tolist(), lengths, masks))


def test_no_samples_and_gradient_flow() -> None:
    assert make_sum_of_sample_mean([], [])(torch.zeros(0)).item() == 0.0
    values = torch.ones(3, requires_grad=True)
    make_sum_of_sample_mean([3], [torch.tensor([1, 0, 1])])(values).backward()
    assert values.grad is not None and values.grad.tolist() == [0.5, 0.0, 0.5]


def test_masked_helpers() -> None:
    x = torch.tensor([1.0, 2.0, 3.0])
    assert masked_sum(x, torch.tensor([1, 0, 1])).item() == 4.0
    assert masked_mean(x, torch.tensor([1, 0, 1])).item() == 2.0
    assert masked_mean(x, torch.zeros(3)).item() == 0.0
    with pytest.raises(ValueError):
        masked_mean(x, torch.ones(2))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="loss masks"):
        make_sum_of_sample_mean([2], [])
    with pytest.raises(ValueError, match="loss mask of shape"):
        make_sum_of_sample_mean([2], [torch.ones(3)])
    with pytest.raises(ValueError, match="packed"):
        make_sum_of_sample_mean([2], [torch.ones(2)])(torch.ones(3))
