"""PPO clipped surrogate with asymmetric clip, per token.

Works on any tensors of one shape (one sample's 1-D response, or slime's packed
micro-batch); the loss mask is applied by the caller's reducer (``masked_mean`` or
slime's ``sum_of_sample_mean``). Same arithmetic as slime's ``compute_policy_loss``
without dual-clip; no KL term, no entropy bonus, no importance-weight correction
(see ``offpolicy.truncated_importance_weights``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["PPOClipOutput", "ppo_clip_loss"]


class PPOClipOutput(NamedTuple):
    """Per-token outputs of :func:`ppo_clip_loss` (all the shape of the inputs)."""

    loss: torch.Tensor
    """``-min(rho * A, clip(rho, 1 - eps_clip, 1 + eps_clip_high) * A)``."""
    clipped: torch.Tensor
    """1.0 where the clipped branch is the active one (it changed the loss), else 0.0;
    its masked mean is the clipped fraction."""
    ratio: torch.Tensor
    """``rho = exp(log_probs - old_log_probs)``, detached, for logging."""


def ppo_clip_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    eps_clip: float = 0.2,
    eps_clip_high: float = 0.28,
) -> PPOClipOutput:
    """Per-token PPO clipped surrogate loss.

    Args:
        log_probs: Current policy log-probs of the response tokens (with grad).
        old_log_probs: Log-probs of the same tokens under the policy that produced the
            advantages (no grad).
        advantages: Per-token advantages (no grad), e.g. from ``combined_advantages``.
        eps_clip: Lower clip: the ratio is clipped below at ``1 - eps_clip``.
        eps_clip_high: Upper clip: the ratio is clipped above at ``1 + eps_clip_high``.

    Returns:
        ``PPOClipOutput(loss, clipped, ratio)``; reduce ``loss`` and ``clipped`` with
        the loss mask.
    """
    if not (log_probs.shape == old_log_probs.shape == advantages.shape):
        raise ValueError(
            "log_probs, old_log_probs and advantages must have one shape, got "
            f"{tuple(log_probs.shape)}, {tuple(old_log_probs.shape)}, {tuple(advantages.shape)}"
        )
    if not (0.0 <= eps_clip < 1.0) or not (eps_clip_high >= 0.0 and math.isfinite(eps_clip_high)):
        raise ValueError(
            f"need 0 <= eps_clip < 1 and finite eps_clip_high >= 0, got {eps_clip}, {eps_clip_high}"
        )
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = -ratio * advantages
    clipped_loss = -ratio.clamp(1.0 - eps_clip, 1.0 + eps_clip_high) * advantages
    loss = torch.maximum(unclipped, clipped_loss)
    clipped = (clipped_loss > unclipped).to(log_probs.dtype)
    return PPOClipOutput(loss=loss, clipped=clipped, ratio=ratio.detach())
