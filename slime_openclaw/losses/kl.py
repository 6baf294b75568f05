"""KL-to-reference penalty per token, as slime's ``--use-kl-loss`` computes it.

``approx_kl(log_probs, ref_log_probs, kind)`` is the estimator of
``KL(policy || reference)`` at the sampled tokens (Schulman's k1/k2/k3; ``low_var_kl`` is
k3: ``exp(ref - lp) - 1 - (ref - lp)``, non-negative and unbiased), the arithmetic of
slime's ``compute_approx_kl``. The local trainer adds ``kl_coef * masked_mean(kl, mask)``
per sample; the slime hook uses slime's own function. Pure tensor code.
"""

from __future__ import annotations

import torch

__all__ = ["KL_TYPES", "approx_kl"]

KL_TYPES = ("k1", "k2", "k3", "low_var_kl")


def approx_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, kind: str = "low_var_kl") -> torch.Tensor:
    """Per-token KL estimate of the policy (``log_probs``) from the reference; same shape."""
    log_ratio = log_probs.float() - ref_log_probs.float()
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return log_ratio**2 / 2.0
    if kind in ("k3", "low_var_kl"):
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl type must be one of {KL_TYPES}, got {kind!r}")
