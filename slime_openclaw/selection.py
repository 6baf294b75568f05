"""Which drained samples a training step uses: the one decision both training paths call.

slime's rollout function (``slime/rollout.py``) and the embedded trainer
(``local/training/trainer.py``) hand every batch they drain from the journal to
``select``, which sorts it into ``keep`` (train now), ``skip`` (acknowledge, never train,
with the reason) and ``defer`` (give back for a later step):

- skip a malformed sample (per-token arrays that do not line up), a token id outside the
  vocabulary (when the trainer's vocabulary size is known), a sample without the teacher
  signal its method needs (``opd``: teacher log-probs; ``opd_topk``: top-K rows);
- skip a sample longer than the trainer is configured for: prompt plus response over
  ``max_tokens`` (slime's ``--rollout-max-context-len``) or a response over
  ``max_response_tokens`` (``--rollout-max-response-len``); the gateway caps trainable turns
  at both, so only a turn recorded under other limits (or a prompt already over the
  context) gets here;
- skip a sample from an **earlier job**: its source turn was recorded before this job
  started (``job_started_at``). Weight versions restart at 0 in every slime job, so
  versions of two jobs never compare; such a sample's staleness is unknown. The embedded
  trainer resumes its version from its checkpoint, so there every job is one lineage
  (``job_started_at`` 0);
- skip a sample more than ``max_staleness`` versions behind the weight version the trainer
  is at (staleness over trained tokens; a sample newer than the trainer counts as fresh);
- defer a second sample with the same tokens in one step when top-K rows are looked up by
  token content in the trainer (``one_per_tokens``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slime_openclaw.slime.samples import check_sample
from slime_openclaw.types import TrainingSample

EARLIER_JOB = "from an earlier job (weight versions of two jobs do not compare)"


@dataclass(frozen=True)
class SelectionRules:
    """What makes a sample usable for one run (derived from its method and settings)."""

    require_teacher: bool = False
    """Teacher log-probs are the method's only signal (``opd``)."""
    require_topk: bool = False
    """Top-K rows are the method's only signal (``opd_topk``)."""
    max_staleness: int | None = 4
    """Most versions a sample may lag the trainer; None: no bound (kept and weighted)."""
    one_per_tokens: bool = False
    """At most one sample per token sequence per step (top-K rows keyed by tokens)."""
    vocab_size: int | None = None
    job_started_at: float = 0.0
    """Unix time this job started; samples of turns recorded before it are an earlier job's."""
    max_tokens: int | None = None
    """Prompt plus response at most (slime's ``--rollout-max-context-len``); None: unbounded."""
    max_response_tokens: int | None = None
    """Response at most (slime's ``--rollout-max-response-len``); None: unbounded."""

    @classmethod
    def for_method(cls, method: str, *, max_staleness: int | None, topk: bool, **extra: object) -> SelectionRules:
        """Rules for a trainer method name (``binary``, ``opd``, ``combine``, ``opd_topk``)."""
        return cls(
            require_teacher=method == "opd",
            require_topk=method == "opd_topk",
            max_staleness=max_staleness,
            one_per_tokens=topk,
            **extra,  # type: ignore[arg-type]
        )


@dataclass
class Selection:
    """The decision on one drained batch."""

    keep: list[TrainingSample] = field(default_factory=list)
    skip: list[tuple[TrainingSample, str]] = field(default_factory=list)
    defer: list[TrainingSample] = field(default_factory=list)


def staleness(sample: TrainingSample, trainer_version: int) -> int:
    """Versions the sample's oldest trained token lags ``trainer_version`` (0 when newer)."""
    versions = [v for v, m in zip(sample.weight_versions, sample.loss_mask, strict=True) if m] or list(
        sample.weight_versions
    )
    return max(0, int(trainer_version) - min(versions)) if versions else 0


def unusable_reason(sample: TrainingSample, rules: SelectionRules) -> str | None:
    """Why ``sample`` can never be trained under ``rules`` (not counting age), or None."""
    try:
        check_sample(sample)
    except ValueError as exc:
        return str(exc)
    if rules.vocab_size is not None and any(not 0 <= t < rules.vocab_size for t in sample.tokens):
        return "token id outside the vocabulary"
    total = len(sample.prompt_ids) + len(sample.response_ids)
    if rules.max_tokens is not None and total > rules.max_tokens:
        return f"{total} tokens, over the context limit {rules.max_tokens} (--rollout-max-context-len)"
    if rules.max_response_tokens is not None and len(sample.response_ids) > rules.max_response_tokens:
        return (f"{len(sample.response_ids)} response tokens, over {rules.max_response_tokens} "
                "(--rollout-max-response-len)")
    if rules.require_teacher and sample.teacher_log_probs is None:
        return "no teacher log-probs (method opd)"
    if rules.require_topk:
        rows = sample.teacher_topk_ids
        if rows is None or sample.teacher_topk_log_probs is None or len(rows) != len(sample.response_ids):
            return "no teacher top-K rows (method opd_topk)"
    return None


def select(
    samples: Sequence[TrainingSample],
    rules: SelectionRules,
    *,
    trainer_version: int | None,
    recorded_at: Callable[[TrainingSample], float] | None = None,
    taken: Sequence[TrainingSample] = (),
) -> Selection:
    """Sort ``samples`` (see the module doc). ``trainer_version`` None: staleness not yet
    known (nothing is too old); ``recorded_at``: when a sample's turn was recorded (needed
    with ``job_started_at``); ``taken``: samples already kept for this step."""
    out = Selection()
    seen = {s.tokens for s in taken} if rules.one_per_tokens else set()
    for sample in samples:
        reason = unusable_reason(sample, rules)
        if reason is None and rules.job_started_at and recorded_at and recorded_at(sample) < rules.job_started_at:
            reason = EARLIER_JOB
        if reason is None and trainer_version is not None and rules.max_staleness is not None:
            lag = staleness(sample, trainer_version)
            if lag > rules.max_staleness:
                reason = f"staleness {lag} > {rules.max_staleness}"
        if reason is not None:
            out.skip.append((sample, reason))
        elif rules.one_per_tokens and sample.tokens in seen:
            out.defer.append(sample)
        else:
            seen.add(sample.tokens)
            out.keep.append(sample)
    return out
