"""Top-K reverse KL distillation over K+1 bins, in O(T*K) extra memory.

For each response token the teacher gives its top-K token ids and log-probs (from the
teacher at the rollout temperature, per the convention in ``engine/protocol.py``). The
student's full-vocabulary distribution ``p = softmax(student_logits / temperature)`` and
the teacher's are both folded into K+1 bins: the K teacher ids, plus one tail bin with
the remaining mass ``1 - sum_k exp(log_prob_k)``. The per-token loss is the reverse KL

    KL(p || q) = sum_k p_k (log p_k - log q_k) + p_tail (log p_tail - log q_tail).

Memory: the student is read through one gather of its logits at the teacher ids
([T, K]) and one log-sum-exp per row computed over row chunks, so the forward keeps
O(T*K) besides the logits themselves; the backward writes the [T, V] logits gradient
(which autograd needs in any case) chunk by chunk with no further [T, V] temporary. The
reference implementation cloned the full logits once per bin (K copies).

Conventions:
- Teacher entries that are not finite (-inf, NaN: padding, or positions the teacher
  did not score) are no bins; the student mass on their ids falls into the tail.
  Finite teacher ids must be distinct within a token.
- A teacher whose top-K mass reaches 1 (rounding) gets a tail mass of ``min_tail_mass``.
- The teacher is a constant: no gradient flows to ``teacher_topk_log_probs``.
- The loss is per token and unmasked; the caller reduces it with the loss mask. Rows
  are independent, so a packed [sum T_i, V] micro-batch works the same as one sample.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["topk_reverse_kl"]

_CHUNK_ELEMENTS = 1 << 22
"""Logit elements processed at once (16 MiB in float32) in the row-chunked passes."""


def topk_reverse_kl(
    student_logits: torch.Tensor,
    teacher_topk_log_probs: torch.Tensor,
    teacher_topk_ids: torch.Tensor,
    temperature: float = 1.0,
    *,
    min_tail_mass: float = 1e-6,
    check_ids: bool = True,
) -> torch.Tensor:
    """Per-token reverse KL(student || teacher) over the teacher's top-K ids plus a tail bin.

    Args:
        student_logits: [T, V] raw student logits for the response positions (the
            logit row that predicts each response token). Not divided by temperature:
            this function divides, as slime's ``get_log_probs_and_entropy`` does. Logits
            already divided (slime's ``get_responses`` with ``apply_temperature=True``)
            go with ``temperature=1.0``.
        teacher_topk_log_probs: [T, K] teacher log-probs ``log_softmax(teacher_logits /
            temperature)`` at ``teacher_topk_ids``; non-finite entries mark no bin.
        teacher_topk_ids: [T, K] integer token ids in ``[0, V)`` (any value where the
            log-prob is not finite).
        temperature: The rollout temperature (> 0) both distributions are taken at.
        min_tail_mass: Floor of the teacher's tail mass (0 < floor < 1).
        check_ids: Verify that finite-teacher ids are distinct per token (a sort of
            [T, K] and, on GPU, one device sync); turn off once the producer is trusted.

    Returns:
        [T] per-token loss in the dtype of ``student_logits`` (>= 0 up to rounding when
        the teacher's bins are a distribution); differentiable w.r.t. the logits.
    """
    _validate(student_logits, teacher_topk_log_probs, teacher_topk_ids, temperature, min_tail_mass)
    valid = torch.isfinite(teacher_topk_log_probs)
    ids = torch.where(
        valid, teacher_topk_ids.to(torch.long), torch.zeros_like(teacher_topk_ids, dtype=torch.long)
    )
    if check_ids:
        _check_distinct(ids, valid)
    teacher = teacher_topk_log_probs.detach()
    out: torch.Tensor = _TopKReverseKL.apply(
        student_logits, teacher, ids, valid, float(temperature), min_tail_mass
    )
    return out


def _validate(
    logits: torch.Tensor, teacher: torch.Tensor, ids: torch.Tensor, temperature: float, min_tail_mass: float
) -> None:
    if logits.dim() != 2:
        raise ValueError(f"student_logits must be [T, V], got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError("student_logits must be floating point")
    if teacher.dim() != 2 or teacher.shape != ids.shape or teacher.size(0) != logits.size(0):
        raise ValueError(
            f"teacher top-K log-probs {tuple(teacher.shape)} and ids {tuple(ids.shape)} must both be "
            f"[T, K] with T = {logits.size(0)}"
        )
    if ids.is_floating_point() or ids.is_complex():
        raise TypeError("teacher_topk_ids must be an integer tensor")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < min_tail_mass < 1:
        raise ValueError(f"min_tail_mass must be in (0, 1), got {min_tail_mass}")


def _check_distinct(ids: torch.Tensor, valid: torch.Tensor) -> None:
    if ids.size(1) < 2 or ids.numel() == 0:
        return
    # Invalid slots get distinct negative placeholders so only real bins can collide.
    placeholders = -1 - torch.arange(ids.size(1), device=ids.device).expand_as(ids)
    keyed = torch.where(valid, ids, placeholders).sort(dim=1).values
    if bool((keyed[:, 1:] == keyed[:, :-1]).any()):
        raise ValueError("teacher_topk_ids repeat an id within a token among finite log-probs")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_chunks(rows: int, vocab: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def _row_logsumexp(logits: torch.Tensor, inv_temperature: float, dtype: torch.dtype) -> torch.Tensor:
    """``logsumexp(logits / T, dim=-1)`` with one chunk of [rows, V] temporary at a time."""
    rows, vocab = logits.shape
    lse = torch.empty(rows, dtype=dtype, device=logits.device)
    for start, end in _row_chunks(rows, vocab):
        chunk = logits[start:end]
        if inv_temperature != 1.0 or chunk.dtype != dtype:
            scaled = chunk.to(dtype) * inv_temperature
        else:
            scaled = chunk
        peak = scaled.amax(dim=1, keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        shifted = scaled.sub_(peak) if scaled is not chunk else scaled - peak
        lse[start:end] = shifted.exp_().sum(dim=1).log_().add_(peak.squeeze(1))
    return lse


def _xlogy_safe(p: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``p * log_p`` with 0 where ``p == 0`` (even if ``log_p`` is -inf)."""
    return torch.where(p > 0, p * log_p, torch.zeros_like(p))


class _TopKReverseKL(torch.autograd.Function):
    """Forward gathers [T, K]; backward streams the analytic [T, V] gradient.

    With ``s_k = z_{id_k} - lse(z)`` (``z = logits / T``), ``p_k = exp(s_k)``, tail
    ``p_t = 1 - sum p_k`` and ``D = log p_t - log q_t``, the gradient is
    ``dL/dz = -G * softmax(z) + scatter(ids, p_k (s_k - log q_k - D))`` with
    ``G = sum_k p_k (s_k - log q_k) - (1 - p_t) D``: every term stays finite as the
    tail mass goes to 0 (``p_t log p_t -> 0``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        teacher: torch.Tensor,
        ids: torch.Tensor,
        valid: torch.Tensor,
        temperature: float,
        min_tail_mass: float,
    ) -> torch.Tensor:
        dtype = _compute_dtype(logits.dtype)
        inv_t = 1.0 / temperature
        lse = _row_logsumexp(logits, inv_t, dtype)
        s = logits.gather(1, ids).to(dtype) * inv_t - lse.unsqueeze(1)
        p = torch.where(valid, s.exp(), torch.zeros_like(s))
        t = torch.where(valid, teacher.to(dtype), torch.zeros_like(s))
        ratio_terms = _xlogy_safe(p, s) - p * t
        neg_inf = torch.full_like(s, float("-inf"))
        student_tail = (-torch.expm1(torch.logsumexp(torch.where(valid, s, neg_inf), dim=1))).clamp_min(0.0)
        teacher_top = torch.logsumexp(torch.where(valid, t, neg_inf), dim=1)
        teacher_tail_log = (-torch.expm1(teacher_top)).clamp_min(min_tail_mass).log()
        loss = (
            ratio_terms.sum(dim=1)
            + _xlogy_safe(student_tail, student_tail.log())
            - student_tail * teacher_tail_log
        )
        tiny = torch.finfo(dtype).tiny
        gap = student_tail.clamp_min(tiny).log() - teacher_tail_log  # D, finite
        bin_coef = torch.where(valid, _xlogy_safe(p, s) - p * t - p * gap.unsqueeze(1), torch.zeros_like(s))
        total = ratio_terms.sum(dim=1) - (1.0 - student_tail) * gap  # G
        ctx.save_for_backward(logits, ids, lse, bin_coef, total)
        ctx.inv_t = inv_t
        return loss.to(logits.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logits, ids, lse, bin_coef, total = ctx.saved_tensors
        inv_t: float = ctx.inv_t
        dtype = lse.dtype
        weight = grad_out.to(dtype) * inv_t
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        for start, end in _row_chunks(*logits.shape):
            rows = slice(start, end)
            w = weight[rows].unsqueeze(1)
            in_place = grad.dtype == dtype
            if in_place:  # write straight into the gradient: no [rows, V] temporary
                buf = torch.mul(logits[rows], inv_t, out=grad[rows])
            else:  # half/bfloat16 logits: compute one chunk in float32, then cast
                buf = logits[rows].to(dtype) * inv_t
            buf.sub_(lse[rows].unsqueeze(1)).exp_().mul_(-total[rows].unsqueeze(1) * w)
            buf.scatter_add_(1, ids[rows], bin_coef[rows] * w)
            if not in_place:
                grad[rows].copy_(buf)
        return grad, None, None, None, None, None
