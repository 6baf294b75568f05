"""Journal samples -> slime ``Sample`` objects, and the per-sample channel to the trainer.

What reaches the loss is fixed by slime's whitelists: per token only ``rollout_log_probs``
and ``teacher_log_probs``, per sample only the reward. This module fixes how our
``TrainingSample`` is laid onto those fields:

- ``tokens`` = prompt ids + response ids, exactly as served (never re-tokenized);
  ``response_length``, ``loss_mask``, ``rollout_log_probs`` copied token for token.
- ``reward`` = ``reward_scale * reward``; the scale is ``w_rl`` when slime's built-in
  estimator forms the advantage (binary RL: ``A_t = reward``) and 1 when our advantage
  hook applies the weights itself (combine).
- ``teacher_log_probs`` is set on *every* sample when the method has a teacher (slime
  forwards the field only if the first sample has it). A sample without a directive
  signal carries a bit-for-bit copy of its ``rollout_log_probs``: the **no-teacher
  marker**. Our advantage hook (``hooks.combined_advantage``) reads equality of the two
  rows as "no teacher" and makes the OPD term exactly zero; slime's own metric on the
  field stays meaningful (no NaN sentinel). Method ``opd`` uses slime's built-in
  ``--use-opd``, which has no such test, so there every sample must have a teacher and
  samples without one are skipped (``selection.py``; metric ``openclaw/skipped``).
- ``index`` and ``rollout_id`` are unique per sample (``rollout_step * batch + i``): each
  live turn is its own rollout and its own group (``n_samples_per_prompt = 1``);
  ``sample_indices`` in the trainer are these indices (the top-K store is keyed by them).
- ``weight_versions`` as strings (slime's type); ``metadata["openclaw"]`` holds ids and
  signal flags, never user text; ``train_metadata`` stays None (slime would drop it).

The functions take the ``Sample`` class as an argument, so everything here is tested
without slime; ``rollout.py`` passes ``slime.utils.types.Sample``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.types import FinishReason, Method, TrainingSample

METADATA_KEY = "openclaw"


@dataclass(frozen=True)
class SampleLayout:
    """How one run lays samples onto slime's fields (derived from the config)."""

    method: Method
    reward_scale: float
    """Factor applied to the judge reward before slime sees it."""
    with_teacher: bool
    """Whether every sample carries ``teacher_log_probs``."""
    require_teacher: bool
    """Skip samples without teacher log-probs (slime's built-in OPD has no marker test)."""

    @classmethod
    def from_config(cls, config: OpenClawConfig) -> SampleLayout:
        """Binary: slime's estimator, scale w_rl. OPD: slime's ``--use-opd`` (the weight is
        ``--opd-kl-coef``). Combine: our advantage hook applies both weights."""
        if config.method is Method.BINARY:
            return cls(Method.BINARY, config.rl_weight, with_teacher=False, require_teacher=False)
        if config.method is Method.OPD and not config.teacher.topk:
            return cls(Method.OPD, 0.0, with_teacher=True, require_teacher=True)
        return cls(config.method, 1.0, with_teacher=True, require_teacher=config.method is Method.OPD)


@dataclass(frozen=True)
class TurnFacts:
    """What the journal knows about a sample's source turn beyond the sample itself."""

    finish_reason: FinishReason = FinishReason.STOP
    created_at: float = 0.0


def check_sample(sample: TrainingSample) -> None:
    """Raise ``ValueError`` unless the per-token arrays of ``sample`` line up."""
    n = len(sample.response_ids)
    lengths = {
        "loss_mask": len(sample.loss_mask),
        "rollout_log_probs": len(sample.rollout_log_probs),
        "weight_versions": len(sample.weight_versions),
    }
    if sample.teacher_log_probs is not None:
        lengths["teacher_log_probs"] = len(sample.teacher_log_probs)
    bad = {k: v for k, v in lengths.items() if v != n}
    if n == 0 or bad:
        raise ValueError(f"sample {sample.sample_id}: {n} response tokens but {bad or 'no tokens'}")


def to_slime_sample(
    sample_cls: Any,
    sample: TrainingSample,
    *,
    index: int,
    layout: SampleLayout,
    facts: TurnFacts = TurnFacts(),
) -> Any:
    """One slime ``Sample`` (``sample_cls``) for one journal sample; see the module doc."""
    check_sample(sample)
    rollout_lp = [float(x) for x in sample.rollout_log_probs]
    teacher: list[float] | None = None
    if layout.with_teacher:
        if sample.teacher_log_probs is not None:
            teacher = [float(x) for x in sample.teacher_log_probs]
        else:
            teacher = list(rollout_lp)  # the no-teacher marker: an exact copy
    status = sample_cls.Status.TRUNCATED if facts.finish_reason is FinishReason.LENGTH else sample_cls.Status.COMPLETED
    return sample_cls(
        group_index=index,
        index=index,
        rollout_id=index,
        tokens=[int(t) for t in sample.tokens],
        response_length=len(sample.response_ids),
        reward=layout.reward_scale * float(sample.reward),
        loss_mask=[int(m) for m in sample.loss_mask],
        rollout_log_probs=rollout_lp,
        teacher_log_probs=teacher,
        weight_versions=[str(v) for v in sample.weight_versions],
        status=status,
        session_id=sample.session_id,
        metadata={
            METADATA_KEY: {
                "sample_id": sample.sample_id,
                "turn_index": sample.turn_index,
                "method": sample.method.value,
                "judge_reward": float(sample.reward),
                "has_teacher": sample.teacher_log_probs is not None,
                "has_topk": sample.teacher_topk_ids is not None,
            }
        },
    )


def rollout_metrics(
    samples: Sequence[TrainingSample],
    facts: Sequence[TurnFacts],
    *,
    now: float,
    current_version: int | None,
    wait_s: float,
    ready_after: int,
    skipped: int,
) -> dict[str, float]:
    """Metrics of one rollout step (logged by slime under ``rollout/``-free keys)."""
    n = max(len(samples), 1)
    judged = [s.reward for s in samples if s.method in (Method.BINARY, Method.COMBINE)]
    with_hint = sum(1 for s in samples if s.teacher_log_probs is not None)
    ages = [now - f.created_at for f in facts if f.created_at > 0]
    metrics: dict[str, float] = {
        "openclaw/samples": float(len(samples)),
        "openclaw/judge_score_mean": sum(judged) / len(judged) if judged else 0.0,
        "openclaw/judge_positive_frac": sum(1 for r in judged if r > 0) / len(judged) if judged else 0.0,
        "openclaw/hint_accept_rate": with_hint / n,
        "openclaw/topk_frac": sum(1 for s in samples if s.teacher_topk_ids is not None) / n,
        "openclaw/sample_age_mean_s": sum(ages) / len(ages) if ages else 0.0,
        "openclaw/sample_age_max_s": max(ages) if ages else 0.0,
        "openclaw/queue_wait_s": wait_s,
        "openclaw/queue_ready_after": float(ready_after),
        "openclaw/skipped": float(skipped),
    }
    versions = [min(s.weight_versions) for s in samples if s.weight_versions]
    if current_version is not None and versions:
        lags = [current_version - v for v in versions]
        metrics["openclaw/staleness_mean"] = sum(lags) / len(lags)
        metrics["openclaw/staleness_max"] = float(max(lags))
    return {k: (v if math.isfinite(v) else 0.0) for k, v in metrics.items()}
