"""Token advantages for binary RL, OPD and their combination, with optional shaping.

``combined_advantages`` is the method's definition for one sample:
``A_t = w_rl * r + w_opd * (teacher_lp_t - old_lp_t)``; binary RL is the case without a
teacher (OPD term exactly zero), OPD the case ``r = 0``. ``shape_advantages`` applies a
recipe's :class:`AdvantageConfig` to a batch (slime's ``rollout_data`` lists) and returns
statistics of each term over trained tokens, because an unbounded OPD term (teacher gaps
of several nats beside +-1 rewards) is how mixed advantages blow up.

Shaping order, per token (``c`` = ``opd_clip``, ``s`` = ``opd_scale``)::

    opd_t   = s * clamp(teacher_lp_t - old_lp_t, -c, c)      # c in nats of the gap
    total_t = w_rl * r + w_opd * opd_t
    total   = (total - mean) / (std + 1e-8)                  # only with normalize=True

Statistics are taken over tokens with a non-zero loss mask; the OPD ones only over
samples that have a teacher. Nothing here computes rewards or teacher log-probs, and
nothing is detached: pass constant (no-grad) inputs, as slime does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["AdvantageConfig", "combined_advantages", "opd_term", "shape_advantages"]

_TERMS = ("rl", "opd", "total")


@dataclass(frozen=True)
class AdvantageConfig:
    """How a recipe turns rewards and teacher log-probs into token advantages."""

    w_rl: float = 1.0
    """Weight of the evaluative (reward) term."""
    w_opd: float = 1.0
    """Weight of the directive (teacher - old log-prob) term."""
    opd_clip: float | None = None
    """If set (``c > 0``), the teacher-student gap is clamped to ``[-c, c]`` nats."""
    opd_scale: float = 1.0
    """Factor on the (clamped) gap, to bring nats to the scale of the rewards."""
    normalize: bool = False
    """Whiten the total advantage over the batch's trained tokens (mean 0, std 1).
    Off by default: the reference broadcasts the raw reward."""

    def __post_init__(self) -> None:
        for name in ("w_rl", "w_opd", "opd_scale"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"AdvantageConfig.{name} must be finite")
        if self.opd_scale < 0:
            raise ValueError("AdvantageConfig.opd_scale must be >= 0")
        if self.opd_clip is not None and not (self.opd_clip > 0 and math.isfinite(self.opd_clip)):
            raise ValueError("AdvantageConfig.opd_clip must be None or a finite c > 0")


def opd_term(
    teacher_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    clip: float | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Per-token OPD term ``scale * clamp(teacher_log_probs - old_log_probs, -clip, clip)``."""
    if teacher_log_probs.shape != old_log_probs.shape:
        raise ValueError(
            f"teacher_log_probs {tuple(teacher_log_probs.shape)} and old_log_probs "
            f"{tuple(old_log_probs.shape)} differ in shape"
        )
    gap = teacher_log_probs.to(old_log_probs.dtype) - old_log_probs
    if clip is not None:
        gap = gap.clamp(-clip, clip)
    return gap * scale if scale != 1.0 else gap


def combined_advantages(
    reward: float | torch.Tensor,
    teacher_log_probs: torch.Tensor | None,
    old_log_probs: torch.Tensor,
    w_rl: float = 1.0,
    w_opd: float = 1.0,
) -> torch.Tensor:
    """Per-token advantages ``w_rl * reward + w_opd * (teacher_log_probs - old_log_probs)``.

    Args:
        reward: The sample's scalar reward (float or 0-d tensor), or a per-token tensor
            of ``old_log_probs``'s shape. 0 when the sample has no evaluative signal.
        teacher_log_probs: Teacher log-probs on the exact response tokens, or None when
            the sample has no directive signal: the OPD term is then exactly zero.
        old_log_probs: Log-probs of the response tokens under the policy being updated.
        w_rl: Weight of the reward term.
        w_opd: Weight of the OPD term.

    Returns:
        A tensor of ``old_log_probs``'s shape, dtype and device.
    """
    rl = _reward_tokens(reward, old_log_probs) * w_rl
    if teacher_log_probs is None:
        return rl
    return rl + w_opd * opd_term(teacher_log_probs, old_log_probs)


def shape_advantages(
    rewards: Sequence[float | torch.Tensor],
    teacher_log_probs: Sequence[torch.Tensor | None],
    old_log_probs: Sequence[torch.Tensor],
    loss_masks: Sequence[torch.Tensor],
    config: AdvantageConfig,
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Advantages for a batch of samples under ``config``, with term statistics.

    Args:
        rewards: One reward per sample (0 for no evaluative signal).
        teacher_log_probs: One tensor per sample, or None for no directive signal.
        old_log_probs: One 1-D tensor of response log-probs per sample.
        loss_masks: One 1-D mask per sample (non-zero = trained).
        config: The recipe's shaping settings.

    Returns:
        ``(advantages, stats)``: one tensor per sample like ``old_log_probs``, and floats
        ``{term}_{mean,std,min,max}`` for ``rl``, ``opd`` (raw gap) , ``opd_shaped`` and
        ``total`` (before normalization), plus ``opd_clip_frac``, ``tokens`` and
        ``opd_tokens``. Statistics of an empty term are 0.
    """
    n = len(old_log_probs)
    if not (len(rewards) == len(teacher_log_probs) == len(loss_masks) == n):
        raise ValueError("rewards, teacher_log_probs, old_log_probs and loss_masks differ in length")
    rl_parts, opd_parts, totals, masks, teacher_masks = [], [], [], [], []
    raw_gaps: list[torch.Tensor] = []
    for reward, teacher, old, mask in zip(rewards, teacher_log_probs, old_log_probs, loss_masks, strict=True):
        if mask.shape != old.shape:
            raise ValueError(f"loss mask {tuple(mask.shape)} does not match log-probs {tuple(old.shape)}")
        rl = _reward_tokens(reward, old) * config.w_rl
        trained = mask.to(old.device) != 0
        if teacher is None:
            opd = torch.zeros_like(old)
            teacher_masks.append(torch.zeros_like(trained))
        else:
            opd = opd_term(teacher, old, config.opd_clip, config.opd_scale)
            raw_gaps.append((teacher.to(old.dtype) - old)[trained])
            teacher_masks.append(trained)
        rl_parts.append(rl)
        opd_parts.append(opd)
        totals.append(rl + config.w_opd * opd)
        masks.append(trained)
    stats = _batch_stats(rl_parts, opd_parts, totals, masks, teacher_masks, raw_gaps, config)
    if config.normalize:
        totals = _whiten(totals, masks)
    return totals, stats


def _reward_tokens(reward: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(reward, torch.Tensor):
        if reward.dim() == 0:
            return torch.full_like(like, 0.0).add_(reward.to(like.device, like.dtype))
        if reward.shape != like.shape:
            raise ValueError(f"per-token reward {tuple(reward.shape)} does not match {tuple(like.shape)}")
        return reward.to(like.device, like.dtype)
    return torch.full_like(like, float(reward))


def _cat(parts: Sequence[torch.Tensor], select: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    chosen = [p[m] for p, m in zip(parts, select, strict=True)]
    return torch.cat(chosen) if chosen else like.new_zeros(0)


def _batch_stats(
    rl_parts: list[torch.Tensor],
    opd_parts: list[torch.Tensor],
    totals: list[torch.Tensor],
    masks: list[torch.Tensor],
    teacher_masks: list[torch.Tensor],
    raw_gaps: list[torch.Tensor],
    config: AdvantageConfig,
) -> dict[str, float]:
    like = torch.zeros(0, dtype=torch.float64)
    if rl_parts:
        like = rl_parts[0].new_zeros(0)
    series = {
        "rl": _cat(rl_parts, masks, like),
        "opd": torch.cat(raw_gaps) if raw_gaps else like,
        "opd_shaped": _cat(opd_parts, teacher_masks, like),
        "total": _cat(totals, masks, like),
    }
    values: list[torch.Tensor] = []
    names: list[str] = []
    for term, x in series.items():
        for stat, value in _describe(x.detach().to(torch.float64)).items():
            names.append(f"{term}_{stat}")
            values.append(value)
    gaps = series["opd"]
    clip_frac = gaps.new_zeros((), dtype=torch.float64)
    if config.opd_clip is not None and gaps.numel():
        clip_frac = (gaps.abs() > config.opd_clip).to(torch.float64).mean()
    names.append("opd_clip_frac")
    values.append(clip_frac)
    floats = torch.stack(values).tolist()  # one device sync for all statistics
    stats = dict(zip(names, floats, strict=True))
    stats["tokens"] = float(series["total"].numel())
    stats["opd_tokens"] = float(gaps.numel())
    return stats


def _describe(x: torch.Tensor) -> dict[str, torch.Tensor]:
    if x.numel() == 0:
        zero = x.new_zeros(())
        return {"mean": zero, "std": zero, "min": zero, "max": zero}
    return {"mean": x.mean(), "std": x.std(unbiased=False), "min": x.min(), "max": x.max()}


def _whiten(totals: list[torch.Tensor], masks: list[torch.Tensor]) -> list[torch.Tensor]:
    trained = torch.cat([t[m] for t, m in zip(totals, masks, strict=True)]) if totals else None
    if trained is None or trained.numel() == 0:
        return totals
    mean = trained.mean()
    std = trained.std(unbiased=False)
    return [(t - mean) / (std + 1e-8) for t in totals]
