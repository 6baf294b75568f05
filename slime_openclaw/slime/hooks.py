"""Trainer-side hooks slime loads by dotted path: advantage, loss and rollout-data postprocess.

Used only where slime's built-ins cannot express a method exactly (see the recipes):

- ``combined_advantage`` (``--custom-advantage-function-path``): ``A_t = w_rl * r +
  w_opd * shape(teacher_lp_t - old_lp_t)``, with the OPD term exactly zero on samples
  without a hint (the no-teacher marker of ``samples.py``), and zero in top-K mode (the
  directive signal is then the top-K term of the loss). Shaping is ``losses.AdvantageConfig``;
  slime's own ``--normalize-advantages`` whitens afterwards if asked.
- ``policy_loss`` (``--loss-type custom_loss --custom-loss-function-path``): PPO clip
  on those advantages with the truncated importance weight ``exp(old - rollout)``
  capped at ``openclaw_tis_clip``, slime's KL-to-reference loss when ``--use-kl-loss``,
  plus ``w_opd`` times the top-K reverse KL on samples with top-K rows.
- ``topk_postprocess`` (``--rollout-data-postprocess-path``): stages top-K rows for the
  loss (see ``topk_channel.py``).

slime is imported lazily, and only for its KL estimator and CP slicing; log-probs come
from a ``LogProbBackend`` (slime's ``get_log_probs_and_entropy`` in a slime trainer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.losses import (
    AdvantageConfig,
    StalenessPolicy,
    ppo_clip_loss,
    shape_advantages,
    topk_reverse_kl,
    truncated_importance_weights,
)
from slime_openclaw.slime.logprobs import LogProbBackend, default_backend
from slime_openclaw.slime.topk_channel import STAGE, TopKRows, TopKStage, read_step, token_digest

_CONFIGS: dict[tuple, OpenClawConfig] = {}


def config_for(args: Any) -> OpenClawConfig:
    """The config carried by ``args``, parsed once per distinct set of ``openclaw_*`` values."""
    items = tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k.startswith("openclaw_"))
    )
    config = _CONFIGS.get(items)
    if config is None:
        config = _CONFIGS[items] = OpenClawConfig.from_args(args)
    return config


def advantage_config(config: OpenClawConfig) -> AdvantageConfig:
    """The shaping of the combined advantage for this config."""
    return AdvantageConfig(
        w_rl=config.rl_weight,
        w_opd=0.0 if config.teacher.topk else config.opd_weight,
        opd_clip=config.opd_clip,
        opd_scale=config.opd_scale,
    )


def teacher_rows(rollout_data: dict[str, Any]) -> list[torch.Tensor | None]:
    """Per-sample teacher log-probs, None where the row is the no-teacher marker."""
    teacher = rollout_data.get("teacher_log_probs")
    n = len(rollout_data["response_lengths"])
    if teacher is None:
        return [None] * n
    behaviour = rollout_data.get("rollout_log_probs")
    if behaviour is None:
        raise ConfigError("teacher_log_probs without rollout_log_probs: the no-teacher marker cannot be read")
    return [None if torch.equal(t, b.to(t.device, t.dtype)) else t for t, b in zip(teacher, behaviour, strict=True)]


def local_masks(
    data: dict[str, Any], like: list[torch.Tensor], cut: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """This rank's loss masks, each as long as its sample's tensor in ``like``.

    slime keeps ``loss_masks`` full-response while log-probs, advantages and rollout
    log-probs are context-parallel-local; ``cut`` (slime's ``slice_log_prob_with_cp`` by
    default) gives a mask this rank's part. A mask already as long as ``like`` is left
    alone: the whole response is on this rank, and its CP slice would be itself."""
    masks = list(data["loss_masks"])
    if all(m.numel() == x.numel() for m, x in zip(masks, like, strict=True)):
        return masks
    if cut is None:
        from slime.backends.megatron_utils.cp_utils import slice_log_prob_with_cp

        cut = slice_log_prob_with_cp
    totals, responses = data["total_lengths"], data["response_lengths"]
    return [
        m if m.numel() == x.numel() else cut(m, int(total), int(response))
        for m, x, total, response in zip(masks, like, totals, responses, strict=True)
    ]


def combined_advantage(args: Any, rollout_data: dict[str, Any]) -> None:
    """slime custom advantage: sets ``advantages`` and ``returns`` (see the module doc)."""
    config = config_for(args)
    old = rollout_data.get("rollout_log_probs") if getattr(args, "use_rollout_logprobs", False) else None
    old = old if old is not None else rollout_data.get("log_probs")
    if old is None:
        raise ConfigError("combined advantage needs old log-probs: use --loss-type custom_loss (slime recomputes them)")
    old = [x.float() for x in old]
    teachers = teacher_rows(rollout_data)
    rewards = [float(r) for r in rollout_data["rewards"]]
    masks = local_masks(rollout_data, old)
    advantages, stats = shape_advantages(rewards, teachers, old, masks, advantage_config(config))
    rollout_data["advantages"] = advantages
    rollout_data["returns"] = advantages
    device = old[0].device if old else "cpu"
    for key in ("rl_mean", "opd_mean", "opd_max", "opd_min", "opd_clip_frac", "total_mean", "total_std"):
        rollout_data[f"openclaw_adv_{key}"] = torch.tensor(stats[key], device=device)
    rollout_data["openclaw_teacher_frac"] = torch.tensor(
        sum(t is not None for t in teachers) / max(len(teachers), 1), device=device
    )


def topk_postprocess(args: Any, rollout_id: int, rollout_data: dict[str, Any]) -> None:
    """slime rollout-data postprocess: stage this rank's top-K rows for the loss hook.

    Exactly slime's signature (its plugin contract compares it); ``stage_topk`` takes the stage."""
    stage_topk(args, rollout_id, rollout_data, STAGE)


def stage_topk(args: Any, rollout_id: int, rollout_data: dict[str, Any], stage: TopKStage) -> None:
    """Stage the top-K rows of ``rollout_data``'s samples in ``stage`` (``topk_postprocess``'s work)."""
    config = config_for(args)
    if not config.teacher.topk:
        return
    indices = [int(i) for i in rollout_data["sample_indices"]]
    rows = read_step(config.teacher.topk_dir, rollout_id, indices)
    staged: dict[str, TopKRows] = {}
    for j, index in enumerate(indices):
        found = rows.get(index)
        if found is None:
            continue
        tokens = rollout_data["tokens"][j]
        response = int(rollout_data["response_lengths"][j])
        if found.ids.shape[0] != response:
            raise ConfigError(f"top-K rows of sample {index}: {found.ids.shape[0]} rows for {response} tokens")
        staged[token_digest(tokens)] = found
    stage.replace(rollout_id, staged)
    # slime logs a scalar of rollout_data as this rank's value averaged over the DP x CP ranks:
    # a share (not a per-rank count) is then the step's share of samples with top-K rows
    rollout_data["openclaw_topk_frac"] = torch.tensor(len(staged) / max(len(indices), 1))


def _tis_terms(
    config: OpenClawConfig, old: list[torch.Tensor], batch: dict[str, Any], masks: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Per-token ``(weights, ratio, clipped)`` of the truncated importance weight, or None when off.

    ``ratio`` is ``exp(old - rollout)`` on trained tokens and 1 elsewhere (a masked token's
    ratio may be inf; the reducer multiplies by the mask and inf * 0 is NaN)."""
    behaviour = batch.get("rollout_log_probs")
    if not config.tis_clip or behaviour is None or not old:
        return None
    policy = StalenessPolicy(max_staleness=None, tis_cap=config.tis_clip)
    weights, ratios, clipped = [], [], []
    for o, b, m in zip(old, behaviour, masks, strict=True):
        b = b.to(o.device, o.dtype)
        w, _keep, _stats = truncated_importance_weights(o.detach(), b, [0], 0, policy, m)
        trained = m.to(o.device) != 0
        ratio = torch.where(trained, torch.exp(o.detach() - b.detach()), torch.ones_like(w))
        weights.append(w)
        ratios.append(ratio)
        clipped.append((trained & (w != ratio)).to(w.dtype))
    return torch.cat(weights), torch.cat(ratios), torch.cat(clipped)


def _topk_term(
    config: OpenClawConfig, args: Any, batch: dict[str, Any], logits: torch.Tensor, backend: LogProbBackend,
    stage: TopKStage, like: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-token top-K reverse KL and a per-token 1/0 "this sample has top-K rows", or None."""
    if not config.teacher.topk or not len(stage):
        return None
    rows = [stage.lookup(tokens) for tokens in batch["unconcat_tokens"]]
    if all(r is None for r in rows):
        return None
    temperature = float(getattr(args, "rollout_temperature", 1.0))
    parts, present = [], []
    for found, student in zip(rows, backend.response_logits(logits, args, batch), strict=True):
        present.append(like.new_full((student.shape[0],), float(found is not None)).detach())
        if found is None:
            parts.append(like.new_zeros(student.shape[0]))
            continue
        lps = found.log_probs.to(student.device)
        ids = found.ids.to(student.device)
        parts.append(topk_reverse_kl(student.float(), lps, ids, temperature).to(like.dtype))
    return torch.cat(parts), torch.cat(present)


def policy_loss(
    args: Any,
    batch: dict[str, Any],
    logits: torch.Tensor,
    sum_of_sample_mean: Callable[[torch.Tensor], torch.Tensor],
    *,
    backend: LogProbBackend | None = None,
    stage: TopKStage = STAGE,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """slime custom loss ``fn(args, batch, logits, sum_of_sample_mean) -> (loss, metrics)``.

    Every metric is ``sum_of_sample_mean`` of a per-token value, as slime's own loss
    reports: slime sums a metric over micro-batches and DP x CP ranks and divides by the
    step's sample count (or, with ``--calculate-per-token-loss``, its token count), so
    the logged value is a per-sample (per-token) mean. ``tis``, ``tis_clipfrac`` and
    ``tis_abs`` are slime's ``--use-tis`` metrics (ratio, clipped share, ``|ratio - 1|``);
    ``topk_frac`` is the share of samples (tokens) with teacher top-K rows."""
    config = config_for(args)
    if getattr(args, "entropy_coef", 0.0):
        raise ConfigError("the openclaw loss has no entropy bonus: set --entropy-coef 0")
    backend = backend or default_backend()
    log_probs = backend.log_probs(logits, args, batch)
    old = batch["rollout_log_probs"] if getattr(args, "use_rollout_logprobs", False) else batch.get("log_probs")
    if not old:
        old = [lp.detach() for lp in log_probs]
    masks = local_masks(batch, log_probs, backend.local)  # CP: slime's masks are full-response
    lp_cat = torch.cat(log_probs) if log_probs else logits.new_zeros(0)
    old_cat = torch.cat([o.to(lp_cat.device, lp_cat.dtype) for o in old]) if old else lp_cat.detach()
    adv_cat = torch.cat([a.to(lp_cat.device, lp_cat.dtype) for a in batch["advantages"]]) if old else lp_cat.detach()
    eps_clip = float(getattr(args, "eps_clip", 0.2))
    eps_high = getattr(args, "eps_clip_high", None)
    ppo = ppo_clip_loss(lp_cat, old_cat.detach(), adv_cat.detach(), eps_clip, float(eps_high or eps_clip))
    per_token = ppo.loss
    tis = _tis_terms(config, old, batch, masks)
    if tis is not None:
        per_token = per_token * tis[0].to(per_token.device, per_token.dtype)
    pg_loss = sum_of_sample_mean(per_token)
    loss = pg_loss
    metrics: dict[str, torch.Tensor] = {
        "pg_loss": pg_loss.detach(),
        "pg_clipfrac": sum_of_sample_mean(ppo.clipped).detach(),
        "ppo_kl": sum_of_sample_mean(old_cat.detach() - lp_cat.detach()),
    }
    if tis is not None:
        ratio = tis[1].to(lp_cat.device, lp_cat.dtype)
        metrics["tis"] = sum_of_sample_mean(ratio).detach()
        metrics["tis_clipfrac"] = sum_of_sample_mean(tis[2].to(lp_cat.device, lp_cat.dtype)).detach()
        metrics["tis_abs"] = sum_of_sample_mean((ratio - 1).abs()).detach()
    topk = _topk_term(config, args, batch, logits, backend, stage, lp_cat)
    if topk is not None:
        topk_loss = sum_of_sample_mean(topk[0])
        loss = loss + config.opd_weight * topk_loss
        metrics["topk_reverse_kl"] = topk_loss.detach()
        metrics["topk_frac"] = sum_of_sample_mean(topk[1]).detach()
    if getattr(args, "use_kl_loss", False):
        from slime.utils.ppo_utils import compute_approx_kl

        ref = torch.cat(batch["ref_log_probs"]).to(lp_cat.device)
        kl_loss = sum_of_sample_mean(compute_approx_kl(lp_cat, ref, kl_loss_type=args.kl_loss_type))
        loss = loss + args.kl_loss_coef * kl_loss
        metrics["kl_loss"] = kl_loss.detach()
    if lp_cat.numel() == 0 or not any(int(m.sum()) for m in masks):
        loss = loss + 0 * logits.sum()
    metrics["loss"] = loss.detach()
    return loss, metrics
