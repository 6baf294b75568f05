"""The local trainer's objective: journal samples -> tensors -> one accumulated gradient.

The objective is the slime path's (``slime/hooks.py``), built from the same functions of
``slime_openclaw.losses``; per sample ``i`` with response tokens ``t``:

    A_t     = shape_advantages(reward, teacher_lp, old_lp)       # w_rl*r + w_opd*(teacher-old)
    loss_i  = masked_mean(ppo_clip_loss(lp, old_lp, A).loss * w, mask)
              [+ w_opd * masked_mean(topk_reverse_kl(logits, teacher top-K), mask)]
              [+ kl_coef * masked_mean(approx_kl(lp, ref_lp, kl_type), mask)]
    loss    = mean_i loss_i

with ``lp = log_softmax(logits / T)`` at the response tokens (the engine's convention,
``engine/sampling.log_probs``) and ``old_lp`` the **rollout log-probs**: the trainer does
exactly one update per batch, so the PPO ratio ``exp(lp - rollout_lp)`` is the importance
ratio between the trainer and the policy that generated the tokens, and its clip bounds
it (slime's ``--use-rollout-logprobs``). ``ref_lp`` are the log-probs of a frozen reference
(the base policy) at the same temperature, only when ``kl_coef > 0`` (slime's
``--use-kl-loss``). ``w`` comes from ``truncated_importance_weights``
with ``train = old = rollout``: 1 for a fresh sample, 0 for one past the staleness bound
(action ``drop``: the trainer acknowledges such samples without a forward pass). The
slime hook sums sample means over a micro-batch; here they are averaged over the batch.

Methods: ``binary`` ignores teachers (OPD term exactly 0); ``opd`` ignores rewards and
needs teacher log-probs; ``combine`` uses both, the OPD term exactly 0 where the teacher
is None (the loss then equals binary's bit for bit); ``opd_topk`` adds the top-K reverse KL
(advantage OPD weight 0, as the hook) and needs top-K rows.

Nothing here touches the journal, the optimizer or the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from slime_openclaw.engine.sampling import log_probs as convention_log_probs
from slime_openclaw.local.training.trainer_config import TrainerConfig
from slime_openclaw.losses import (
    approx_kl,
    masked_mean,
    ppo_clip_loss,
    shape_advantages,
    topk_reverse_kl,
    truncated_importance_weights,
)
from slime_openclaw.types import TrainingSample


@dataclass(frozen=True)
class TrainItem:
    """One sample as tensors, ready for the forward pass."""

    sample: TrainingSample
    tokens: torch.Tensor
    """Prompt + response ids, [L]."""
    response: torch.Tensor
    """Response ids, [R]."""
    mask: torch.Tensor
    rollout: torch.Tensor
    """Behaviour log-probs, the ``old_lp`` of the objective."""
    reward: float
    """The reward as the method uses it (0 for ``opd``)."""
    teacher: torch.Tensor | None
    """Teacher log-probs as the method uses them (None: OPD term exactly 0)."""
    topk: tuple[torch.Tensor, torch.Tensor] | None
    """``[R, K]`` teacher ids and log-probs (``opd_topk`` only)."""
    weights: torch.Tensor
    """Truncated importance weights (1, or 0 past the staleness bound)."""
    staleness: float
    dropped: bool
    """Past the staleness bound with action ``drop``: not trained."""


def prepare(sample: TrainingSample, config: TrainerConfig, weight_version: int) -> TrainItem:
    """Tensors and the staleness decision for a usable sample at the trainer's version."""
    method = config.method
    rollout = torch.tensor(sample.rollout_log_probs, dtype=torch.float32)
    mask = torch.tensor(sample.loss_mask, dtype=torch.float32)
    # A sample newer than the trainer (checkpoints lost since) counts as fresh.
    current = max(weight_version, max(sample.weight_versions))
    weights, _keep, tis = truncated_importance_weights(
        rollout, rollout, sample.weight_versions, current, config.staleness, mask
    )
    teacher = None
    if method in ("opd", "combine") and sample.teacher_log_probs is not None:
        teacher = torch.tensor(sample.teacher_log_probs, dtype=torch.float32)
    return TrainItem(
        sample=sample,
        tokens=torch.tensor(sample.tokens, dtype=torch.long),
        response=torch.tensor(sample.response_ids, dtype=torch.long),
        mask=mask,
        rollout=rollout,
        reward=0.0 if method == "opd" else float(sample.reward),
        teacher=teacher,
        topk=_topk_tensors(sample) if method == "opd_topk" else None,
        weights=weights,
        staleness=tis["staleness"],
        dropped=bool(tis["dropped"]),
    )


def response_log_probs(model: Any, item: TrainItem, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_probs [R], logits [R, V])`` of the response tokens under ``model`` (with graph)."""
    n_response = int(item.response.numel())
    out = model(input_ids=item.tokens[None], logits_to_keep=n_response + 1, use_cache=False)
    logits = out.logits[0, :n_response]  # row j predicts response token j
    lp = convention_log_probs(logits, temperature).gather(-1, item.response[:, None]).squeeze(-1)
    return lp, logits


def sample_loss(
    model: Any, item: TrainItem, advantages: torch.Tensor, config: TrainerConfig, reference: Any = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """One sample's loss (with graph) and its detached parts; see the module doc."""
    lp, logits = response_log_probs(model, item, config.temperature)
    ppo = ppo_clip_loss(lp, item.rollout, advantages.detach(), config.eps_clip, config.eps_clip_high)
    pg_loss = masked_mean(ppo.loss * item.weights, item.mask)
    loss = pg_loss
    parts = {
        "pg_loss": float(pg_loss.detach()),
        "pg_clipfrac": float(masked_mean(ppo.clipped, item.mask)),
        "ppo_kl": float(masked_mean(item.rollout - lp.detach(), item.mask)),
    }
    if item.topk is not None:
        ids, teacher = item.topk
        kl = masked_mean(topk_reverse_kl(logits.float(), teacher, ids, config.temperature), item.mask)
        loss = loss + config.w_opd * kl
        parts["topk_reverse_kl"] = float(kl.detach())
    if reference is not None and config.kl_coef > 0:
        with torch.no_grad():
            ref_lp, _ = response_log_probs(reference, item, config.temperature)
        kl_loss = masked_mean(approx_kl(lp, ref_lp, config.kl_type), item.mask)
        loss = loss + config.kl_coef * kl_loss
        parts["kl_loss"] = float(kl_loss.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts


def batch_gradients(
    model: Any, items: list[TrainItem], config: TrainerConfig, *, backward: bool = True, reference: Any = None
) -> tuple[float, dict[str, float]]:
    """Accumulate ``d mean_i loss_i`` into ``model``'s ``.grad``, one sample graph at a time.

    Returns the batch loss and statistics: ``adv_*`` from ``shape_advantages``, the mean
    over samples of each loss part, ``samples`` and ``staleness_max``. Raises
    ``FloatingPointError`` on a non-finite loss (the caller must not step). With
    ``backward=False`` only the loss and statistics are computed (no graph, no gradient).
    ``reference`` is the frozen model of the KL penalty (None: no penalty).
    """
    advantages, adv_stats = shape_advantages(
        [i.reward for i in items], [i.teacher for i in items], [i.rollout for i in items],
        [i.mask for i in items], config.advantage_config(),
    )
    n = len(items)
    totals: dict[str, float] = {}
    for item, advantage in zip(items, advantages, strict=True):
        with torch.set_grad_enabled(backward):
            loss, parts = sample_loss(model, item, advantage, config, reference)
        if backward:
            (loss / n).backward()
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value / n
    if not math.isfinite(totals.get("loss", 0.0)):
        raise FloatingPointError(f"non-finite loss {totals['loss']}: the update is skipped")
    stats = {f"adv_{k}": float(v) for k, v in adv_stats.items()}
    stats.update(totals)
    stats["samples"] = float(n)
    stats["staleness_max"] = max((i.staleness for i in items), default=0.0)
    return totals.get("loss", 0.0), stats


def _topk_tensors(sample: TrainingSample) -> tuple[torch.Tensor, torch.Tensor]:
    """``[R, K]`` ids and log-probs; ragged rows padded with -inf (no bin)."""
    rows_ids, rows_lps = sample.teacher_topk_ids or (), sample.teacher_topk_log_probs or ()
    width = max((len(row) for row in rows_ids), default=0)
    ids = torch.zeros(len(rows_ids), width, dtype=torch.long)
    lps = torch.full((len(rows_ids), width), float("-inf"))
    for r, (row_ids, row_lps) in enumerate(zip(rows_ids, rows_lps, strict=True)):
        ids[r, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        lps[r, : len(row_lps)] = torch.tensor(row_lps, dtype=torch.float32)
    return ids, lps
