"""topk_reverse_kl against a brute-force full-softmax reference, gradients, edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from slime_openclaw.losses import make_sum_of_sample_mean, topk_reverse_kl
from slime_openclaw.losses import topk as topk_module


def reference_topk_kl(
    logits: torch.Tensor,
    teacher_lp: torch.Tensor,
    teacher_ids: torch.Tensor,
    temperature: float,
    floor: float = 1e-6,
) -> torch.Tensor:
    """Brute force: full softmax over the vocabulary, one token at a time, K+1 explicit bins."""
    full = torch.log_softmax(logits / temperature, dim=-1)
    losses = []
    for row in range(logits.size(0)):
        keep = torch.isfinite(teacher_lp[row])
        student = full[row, teacher_ids[row][keep]]
        teacher = teacher_lp[row][keep]
        student_tail_mass = 1.0 - student.exp().sum()
        teacher_tail_mass = torch.clamp(1.0 - teacher.exp().sum(), min=floor)
        kl = (student.exp() * (student - teacher)).sum()
        if student_tail_mass > 0:
            kl = kl + student_tail_mass * (torch.log(student_tail_mass) - torch.log(teacher_tail_mass))
        losses.append(kl)
    return torch.stack(losses) if losses else logits.new_zeros(0)


def make_case(t: int, v: int, k: int, temperature: float, dtype: torch.dtype = torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(t, v, generator=gen, dtype=dtype) * 2
    teacher_logits = logits + torch.randn(t, v, generator=gen, dtype=dtype)
    teacher_lp, ids = torch.log_softmax(teacher_logits / temperature, dim=-1).topk(k, dim=-1)
    return logits.requires_grad_(True), teacher_lp, ids


@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_full_softmax_reference_value_and_grad(temperature: float, dtype: torch.dtype) -> None:
    logits, teacher_lp, ids = make_case(7, 40, 5, temperature, dtype)
    teacher_lp[2, 4] = float("-inf")  # padding slot
    teacher_lp[3, 1:] = float("-inf")
    upstream = torch.rand(7, dtype=dtype)

    ours = topk_reverse_kl(logits, teacher_lp, ids, temperature)
    (grad_ours,) = torch.autograd.grad((ours * upstream).sum(), logits)
    ref = reference_topk_kl(logits, teacher_lp, ids, temperature)
    (grad_ref,) = torch.autograd.grad((ref * upstream).sum(), logits)

    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert ours.dtype == dtype and ours.shape == (7,)
    torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(grad_ours, grad_ref, atol=tol, rtol=tol)
    assert (ours > -tol).all()


def test_gradcheck_float64_with_padding_and_several_row_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topk_module, "_CHUNK_ELEMENTS", 24)  # 2 rows per chunk at V=12
    logits, teacher_lp, ids = make_case(5, 12, 4, 0.8)
    teacher_lp[0, 3] = float("-inf")
    teacher_lp[4, 0] = float("nan")
    assert torch.autograd.gradcheck(lambda x: topk_reverse_kl(x, teacher_lp, ids, 0.8), (logits,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_row_chunked_value_and_gradient_equal_the_whole_tensor_pass(dtype: torch.dtype,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and backward over one row per chunk give what one chunk of all rows gives.

    The upstream gradient differs per row, so a chunk reading another chunk's rows (of the
    logits, the saved statistics or the upstream gradient) changes the result; bfloat16
    logits take the backward's cast-per-chunk branch, float64 the in-place one.
    """
    logits, teacher_lp, ids = make_case(9, 16, 3, 1.3)
    logits = logits.detach().to(dtype).requires_grad_(True)
    upstream = torch.rand(9, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype) + 0.5
    assert len(topk_module._row_chunks(9, 16)) == 1
    whole = topk_reverse_kl(logits, teacher_lp, ids, 1.3)
    (grad_whole,) = torch.autograd.grad((whole * upstream).sum(), logits)
    monkeypatch.setattr(topk_module, "_CHUNK_ELEMENTS", 16)  # one row per chunk
    assert len(topk_module._row_chunks(9, 16)) == 9
    rows = topk_reverse_kl(logits, teacher_lp, ids, 1.3)
    (grad_rows,) = torch.autograd.grad((rows * upstream).sum(), logits)
    assert grad_rows.abs().amin(dim=1).gt(0).all()  # every row got its own gradient
    torch.testing.assert_close(rows, whole)
    torch.testing.assert_close(grad_rows, grad_whole)


def test_same_distribution_at_the_same_temperature_gives_zero() -> None:
    teacher_logits = torch.randn(6, 30, dtype=torch.float64)
    temperature = 0.5
    teacher_lp, ids = torch.log_softmax(teacher_logits / temperature, -1).topk(8, -1)
    student = teacher_logits.clone().requires_grad_(True)
    loss = topk_reverse_kl(student, teacher_lp, ids, temperature)
    torch.testing.assert_close(loss, torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    (grad,) = torch.autograd.grad(loss.sum(), student)
    assert grad.abs().max() < 1e-10
    # The same logits read at the wrong temperature are a different distribution.
    assert (topk_reverse_kl(student, teacher_lp, ids, 1.0) > 1e-3).all()


def test_teacher_mass_one_is_clamped_and_finite() -> None:
    # K = V: the teacher's top-K carries all the mass (sum of exp may round above 1).
    logits = torch.randn(4, 10, dtype=torch.float32, requires_grad=True)
    teacher_lp, ids = torch.log_softmax(torch.randn(4, 10) * 3, -1).topk(10, -1)
    loss = topk_reverse_kl(logits, teacher_lp, ids)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    full = torch.log_softmax(logits.detach(), -1).gather(1, ids)
    exact = (full.exp() * (full - teacher_lp)).sum(-1)  # the exact full-vocabulary KL
    torch.testing.assert_close(loss.detach(), exact, atol=1e-4, rtol=1e-4)
    # Student equal to teacher over the whole vocabulary: zero loss, zero gradient.
    student = torch.full((4, 10), 0.0, dtype=torch.float32).scatter(1, ids, teacher_lp).requires_grad_(True)
    same = topk_reverse_kl(student, teacher_lp, ids)
    (grad_same,) = torch.autograd.grad(same.sum(), student)
    assert same.abs().max() < 1e-5 and grad_same.abs().max() < 1e-5


def test_teacher_tail_floor_bounds_the_loss() -> None:
    # The teacher claims all mass on 2 ids; the student puts half outside them.
    logits = torch.log(torch.tensor([[0.25, 0.25, 0.5]], dtype=torch.float64))
    teacher_lp = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    ids = torch.tensor([[0, 1]])
    loss = topk_reverse_kl(logits, teacher_lp, ids, min_tail_mass=1e-4)
    # Two bins 0.25 vs 0.5 each, then the tail bin 0.5 vs the floor 1e-4.
    expected = 2 * 0.25 * math.log(0.25 / 0.5) + 0.5 * math.log(0.5 / 1e-4)
    torch.testing.assert_close(loss, torch.tensor([expected], dtype=torch.float64))


def test_all_masked_teacher_rows_give_zero_loss_and_gradient() -> None:
    logits = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    teacher_lp = torch.full((3, 4), float("-inf"), dtype=torch.float64)
    ids = torch.zeros(3, 4, dtype=torch.long)  # repeated padding ids are fine when masked
    loss = topk_reverse_kl(logits, teacher_lp, ids)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.equal(loss, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(grad, torch.zeros_like(grad))


def test_empty_single_token_and_k_zero() -> None:
    empty = torch.zeros(0, 16, requires_grad=True)
    loss = topk_reverse_kl(empty, torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.long))
    assert loss.shape == (0,)
    loss.sum().backward()
    assert empty.grad is not None and empty.grad.shape == (0, 16)

    logits, teacher_lp, ids = make_case(1, 20, 3, 1.0)
    single = topk_reverse_kl(logits, teacher_lp, ids)
    torch.testing.assert_close(single, reference_topk_kl(logits, teacher_lp, ids, 1.0))
    assert torch.autograd.gradcheck(lambda x: topk_reverse_kl(x, teacher_lp, ids), (logits,))

    no_bins = topk_reverse_kl(
        logits, torch.zeros(1, 0, dtype=torch.float64), torch.zeros(1, 0, dtype=torch.long)
    )
    assert torch.equal(no_bins.detach(), torch.zeros(1, dtype=torch.float64))


def test_loss_mask_applied_by_the_caller_ignores_garbage_positions() -> None:
    logits, teacher_lp, ids = make_case(6, 25, 4, 1.0)
    mask = torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.float64)
    garbage_lp = teacher_lp.clone()
    garbage_lp[2] = float("nan")  # e.g. tool-output tokens the teacher never scored
    garbage_lp[4, :2] = float("-inf")
    reduce = make_sum_of_sample_mean([6], [mask])
    loss = reduce(topk_reverse_kl(logits, garbage_lp, ids))
    (grad,) = torch.autograd.grad(loss, logits)
    expected = (reference_topk_kl(logits, teacher_lp, ids, 1.0) * mask).sum() / 3
    (grad_expected,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, grad_expected)
    assert torch.equal(grad[[2, 4, 5]], torch.zeros(3, 25, dtype=torch.float64))


def test_packed_rows_equal_per_sample_calls() -> None:
    samples = [make_case(n, 18, 4, 0.9, seed=n) for n in (3, 1, 5)]
    packed = torch.cat([s[0].detach() for s in samples]).requires_grad_(True)
    packed_loss = topk_reverse_kl(
        packed, torch.cat([s[1] for s in samples]), torch.cat([s[2] for s in samples]), 0.9
    )
    per_sample = torch.cat([topk_reverse_kl(*s, temperature=0.9) for s in samples])
    torch.testing.assert_close(packed_loss, per_sample)


def test_bfloat16_logits_follow_the_float32_result() -> None:
    logits, teacher_lp, ids = make_case(4, 64, 6, 1.0, torch.float32)
    half = logits.detach().to(torch.bfloat16).requires_grad_(True)
    loss = topk_reverse_kl(half, teacher_lp, ids)
    (grad,) = torch.autograd.grad(loss.sum(), half)
    ref = reference_topk_kl(half.detach().float(), teacher_lp, ids, 1.0)
    assert loss.dtype == torch.bfloat16 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float(), ref, atol=2e-2, rtol=2e-2)


def test_non_contiguous_logits_slice() -> None:
    base, teacher_lp, ids = make_case(8, 30, 3, 1.0)
    view = base[1:7:2]  # every other row, as a strided view
    loss = topk_reverse_kl(view, teacher_lp[1:7:2], ids[1:7:2])
    torch.testing.assert_close(loss, reference_topk_kl(view, teacher_lp[1:7:2], ids[1:7:2], 1.0))
    (grad,) = torch.autograd.grad(loss.sum(), base)
    assert grad[0].abs().sum() == 0 and grad[1].abs().sum() > 0


def test_invalid_inputs_are_rejected() -> None:
    logits, teacher_lp, ids = make_case(2, 10, 3, 1.0)
    duplicated = ids.clone()
    duplicated[1, 2] = duplicated[1, 0]
    with pytest.raises(ValueError, match="repeat"):
        topk_reverse_kl(logits, teacher_lp, duplicated)
    with pytest.raises(ValueError, match="temperature"):
        topk_reverse_kl(logits, teacher_lp, ids, 0.0)
    with pytest.raises(ValueError, match=r"\[T, K\]"):
        topk_reverse_kl(logits, teacher_lp[:1], ids[:1])
    with pytest.raises(ValueError, match=r"\[T, V\]"):
        topk_reverse_kl(logits[0], teacher_lp, ids)
    with pytest.raises(TypeError):
        topk_reverse_kl(logits, teacher_lp, ids.double())
    with pytest.raises(ValueError, match="min_tail_mass"):
        topk_reverse_kl(logits, teacher_lp, ids, min_tail_mass=0.0)


def test_no_allocation_scales_with_t_times_v_except_the_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allocations per op stay within one row chunk or [T, K], besides the one [T, V] gradient."""
    monkeypatch.setattr(topk_module, "_CHUNK_ELEMENTS", 16 * 1024)  # 16 rows of V=1024
    t, v, k = 512, 1024, 8
    logits, teacher_lp, ids = make_case(t, v, k, 0.7, torch.float32)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        loss = topk_reverse_kl(logits, teacher_lp, ids, 0.7)
        (grad,) = torch.autograd.grad(loss.sum(), logits)
    leaves = [e for e in prof.events() if not e.cpu_children]  # a parent counts its children's bytes
    sizes = sorted((e.cpu_memory_usage for e in leaves if e.cpu_memory_usage > 0), reverse=True)
    grad_bytes = t * v * 4
    assert sizes[0] == grad_bytes  # the gradient itself, allocated once
    chunk_bytes, topk_bytes = 16 * 1024 * 4, t * k * 8
    assert sizes[1] <= max(chunk_bytes, topk_bytes), sizes[:5]
    assert grad.shape == (t, v)
