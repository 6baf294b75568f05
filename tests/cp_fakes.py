"""Context parallelism on one CPU process: slime's zigzag split, for tests without slime.

slime (``slime/backends/megatron_utils/cp_utils.py``) splits each packed sample into
``2 * cp_size`` chunks of ``ceil(total / (2 * cp_size))`` tokens; rank ``r`` holds chunks
``r`` and ``2 * cp_size - 1 - r``. A CP-local per-token response tensor is the response
positions (logit rows ``prompt - 1 .. total - 2``) that fall into those two chunks, in
order. ``zigzag_local`` is that cut, ``CPBackend`` the loss hook's backend on rank ``r``
and ``cp_sum_of_sample_mean`` slime's CP reducer (each rank's part of a sample divided by
the sample's full mask sum, so the ranks' values add up to the non-CP value). The
slime-marked test checks ``zigzag_local`` against slime's own ``slice_log_prob_with_cp``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from slime_openclaw.slime.logprobs import TorchBackend


def local_rows(total: int, response: int, rank: int, size: int) -> list[int]:
    """Indices into the response (0 .. response-1) that rank ``rank`` of ``size`` holds."""
    chunk = (total + 2 * size - 1) // (2 * size)
    prompt = total - response
    rows = []
    for index in (rank, 2 * size - 1 - rank):
        lo = max(index * chunk, prompt - 1)
        hi = min((index + 1) * chunk, total - 1)
        rows.extend(range(lo - (prompt - 1), hi - (prompt - 1)))
    return rows


def zigzag_local(values: torch.Tensor, total: int, response: int, rank: int, size: int) -> torch.Tensor:
    """Rank ``rank``'s part of a full-response per-token tensor."""
    assert values.shape[0] == response
    return values[torch.tensor(local_rows(total, response, rank, size), dtype=torch.long)]


class CPBackend(TorchBackend):
    """The loss hook's backend on one CP rank: CP-local log-probs (with gradient) and masks."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = rank, size

    def log_probs(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        full = super().log_probs(logits, args, batch)
        return self.cut(full, batch)

    def local(self, values: torch.Tensor, total_length: int, response_length: int) -> torch.Tensor:
        return zigzag_local(values, int(total_length), int(response_length), self.rank, self.size)

    def cut(self, per_sample: Sequence[torch.Tensor], batch: dict[str, Any]) -> list[torch.Tensor]:
        """Each sample's full-response tensor, cut to this rank."""
        return [
            self.local(x, t, r)
            for x, t, r in zip(per_sample, batch["total_lengths"], batch["response_lengths"], strict=True)
        ]


def cp_sum_of_sample_mean(
    batch: dict[str, Any], rank: int, size: int, *, per_token: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """slime's ``get_sum_of_sample_mean`` for CP rank ``rank`` (``sample_denoms`` = own mask sums)."""
    backend = CPBackend(rank, size)
    full_masks = list(batch["loss_masks"])
    masks = backend.cut(full_masks, batch)
    lengths = [m.numel() for m in masks]

    def reduce(x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for part, mask, full in zip(x.split(lengths), masks, full_masks, strict=True):
            value = (part * mask.to(x.dtype)).sum()
            total = total + (value if per_token else value / torch.clamp_min(full.sum(), 1))
        return total

    return reduce
