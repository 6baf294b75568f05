"""Masked reductions with slime's per-sample-mean semantics.

slime reduces a per-token loss over a micro-batch with ``sum_of_sample_mean``: the
response tokens of all samples are concatenated ("packed"), each sample's tokens are
averaged under its own loss mask (denominator ``max(mask.sum(), 1)``), and the sample
means are summed. The helpers here reproduce that reduction (the default, no context
parallelism, ``sample_denoms=None`` case) so tests and the local trainer reduce exactly
as slime does. They do not know about context parallelism or per-rollout denominators:
on the slime path the reducer slime hands the loss is used instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["make_sum_of_sample_mean", "masked_mean", "masked_sum"]


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``values * mask`` (0-d tensor; 0 for an empty or all-masked sample)."""
    _check_same_shape(values, mask)
    return (values * mask.to(values.dtype)).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over tokens where ``mask`` is non-zero, slime style.

    The denominator is ``max(mask.sum(), 1)``, so an empty or all-masked sample gives 0
    (never NaN) and contributes no gradient.
    """
    _check_same_shape(values, mask)
    weights = mask.to(values.dtype)
    return (values * weights).sum() / torch.clamp_min(weights.sum(), 1)


def make_sum_of_sample_mean(
    response_lengths: Sequence[int], loss_masks: Sequence[torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build slime's ``sum_of_sample_mean`` reducer for one packed micro-batch.

    Args:
        response_lengths: Response length of each sample, in packing order.
        loss_masks: One 1-D mask per sample, ``loss_masks[i]`` of length
            ``response_lengths[i]``.

    Returns:
        A function mapping a packed per-token tensor of length ``sum(response_lengths)``
        to ``sum_i masked_mean(x_i, loss_masks[i])`` (a 0-d tensor; 0 for no samples).
    """
    lengths = [int(n) for n in response_lengths]
    if len(lengths) != len(loss_masks):
        raise ValueError(f"{len(lengths)} response lengths but {len(loss_masks)} loss masks")
    for n, mask in zip(lengths, loss_masks, strict=True):
        if mask.dim() != 1 or mask.numel() != n:
            raise ValueError(f"loss mask of shape {tuple(mask.shape)} for a response of {n} tokens")
    total = sum(lengths)

    def sum_of_sample_mean(values: torch.Tensor) -> torch.Tensor:
        if values.dim() != 1 or values.numel() != total:
            raise ValueError(f"expected a packed 1-D tensor of {total} tokens, got {tuple(values.shape)}")
        result = values.new_zeros(())
        for chunk, mask in zip(values.split(lengths), loss_masks, strict=True):
            result = result + masked_mean(chunk, mask.to(values.device))
        return result

    return sum_of_sample_mean


def _check_same_shape(values: torch.Tensor, mask: torch.Tensor) -> None:
    if values.shape != mask.shape:
        raise ValueError(f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ in shape")
