"""combined_advantages and shape_advantages: formula, exact zero terms, shaping, statistics."""

from __future__ import annotations

import statistics

import pytest
import torch

from slime_openclaw.losses import AdvantageConfig, combined_advantages, opd_term, shape_advantages


def test_combined_matches_formula_per_token() -> None:
    teacher = torch.tensor([-0.5, -3.0, -0.1], dtype=torch.float64)
    old = torch.tensor([-1.0, -0.2, -0.1], dtype=torch.float64)
    got = combined_advantages(1.0, teacher, old, w_rl=0.5, w_opd=2.0)
    expected = [0.5 * 1.0 + 2.0 * (t - o) for t, o in zip(teacher.tolist(), old.tolist(), strict=True)]
    assert got.tolist() == pytest.approx(expected)
    assert got.dtype == old.dtype and got.shape == old.shape


def test_no_teacher_is_pure_binary_rl_and_zero_reward_is_pure_opd() -> None:
    old = torch.randn(6)
    rl_only = combined_advantages(-1.0, None, old, w_rl=1.0, w_opd=5.0)
    assert torch.equal(rl_only, torch.full((6,), -1.0))  # OPD term exactly zero
    teacher = torch.randn(6)
    opd_only = combined_advantages(0.0, teacher, old, w_opd=1.5)
    assert torch.equal(opd_only, 1.5 * (teacher - old))
    assert torch.equal(combined_advantages(torch.tensor(0.0), teacher, old), teacher - old)


def test_per_token_reward_empty_and_single_token() -> None:
    old = torch.tensor([-0.3, -0.4])
    assert combined_advantages(torch.tensor([1.0, 0.0]), None, old).tolist() == [1.0, 0.0]
    assert combined_advantages(1.0, torch.zeros(0), torch.zeros(0)).shape == (0,)
    assert combined_advantages(1.0, torch.tensor([-0.5]), torch.tensor([-1.0])).tolist() == [1.5]
    with pytest.raises(ValueError):
        combined_advantages(torch.ones(3), None, old)
    with pytest.raises(ValueError):
        combined_advantages(0.0, torch.zeros(3), old)


def test_gradcheck_float64() -> None:
    teacher = torch.randn(5, dtype=torch.float64, requires_grad=True)
    old = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, o: combined_advantages(0.3, t, o, 2.0, 0.7), (teacher, old))
    assert torch.autograd.gradcheck(lambda t, o: opd_term(t, o, clip=0.5, scale=0.5), (teacher, old))


def test_opd_term_clips_in_nats_then_scales() -> None:
    teacher = torch.tensor([0.0, -10.0, -1.0])
    old = torch.tensor([-5.0, 0.0, -1.5])
    assert opd_term(teacher, old, clip=1.0, scale=0.5).tolist() == [0.5, -0.5, 0.25]


def reference_stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def test_shape_advantages_statistics_over_trained_tokens() -> None:
    rewards = [1.0, 0.0, -1.0]
    olds = [torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-0.1, -4.0]), torch.tensor([-0.3])]
    teachers = [torch.tensor([-0.5, -9.0, -0.5]), torch.tensor([-2.1, -0.5]), None]
    masks = [torch.tensor([1, 1, 0]), torch.tensor([1, 1]), torch.tensor([1])]
    config = AdvantageConfig(w_rl=1.0, w_opd=1.0, opd_clip=2.0, opd_scale=0.5)
    advantages, stats = shape_advantages(rewards, teachers, olds, masks, config)

    # token by token, trained tokens only
    rl = [1.0, 1.0, 0.0, 0.0, -1.0]
    gaps = [0.5, -7.0, -2.0, 3.5]
    shaped = [0.5 * max(-2.0, min(2.0, g)) for g in gaps]
    total = [1.0 + shaped[0], 1.0 + shaped[1], shaped[2], shaped[3], -1.0]
    for name, series in (("rl", rl), ("opd", gaps), ("opd_shaped", shaped), ("total", total)):
        for stat, value in reference_stats(series).items():
            assert stats[f"{name}_{stat}"] == pytest.approx(value), f"{name}_{stat}"
    assert stats["opd_clip_frac"] == pytest.approx(2 / 4)
    assert stats["tokens"] == 5 and stats["opd_tokens"] == 4
    # the untrained token still gets its (shaped) advantage
    assert advantages[0].tolist() == pytest.approx([1.25, 0.0, 1.0])
    assert advantages[2].tolist() == [-1.0]


def test_clip_bounds_mixed_advantages() -> None:
    gen = torch.Generator().manual_seed(3)
    olds = [torch.randn(50, generator=gen) * 5 - 6 for _ in range(4)]
    teachers = [torch.randn(50, generator=gen) * 5 for _ in range(4)]
    masks = [torch.ones(50) for _ in range(4)]
    raw, raw_stats = shape_advantages([1.0, -1.0, 1.0, 0.0], teachers, olds, masks, AdvantageConfig())
    assert raw_stats["total_max"] > 5  # multi-nat gaps dwarf the +-1 rewards
    config = AdvantageConfig(opd_clip=1.0)
    bounded, stats = shape_advantages([1.0, -1.0, 1.0, 0.0], teachers, olds, masks, config)
    assert max(a.abs().max().item() for a in bounded) <= 2.0 + 1e-6
    assert stats["opd_max"] == raw_stats["opd_max"]  # the raw gap stays visible in the logs
    assert stats["opd_shaped_max"] <= 1.0 and stats["opd_clip_frac"] > 0.5


def test_normalize_whitens_trained_tokens() -> None:
    olds = [torch.zeros(4), torch.zeros(3)]
    masks = [torch.tensor([1, 1, 1, 0]), torch.tensor([1, 1, 1])]
    advantages, stats = shape_advantages(
        [2.0, -1.0], [None, None], olds, masks, AdvantageConfig(normalize=True)
    )
    trained = torch.cat([advantages[0][:3], advantages[1]])
    assert abs(trained.mean().item()) < 1e-6
    assert trained.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert stats["total_mean"] == pytest.approx(0.5)  # statistics are taken before whitening


def test_empty_batch_and_all_masked_samples_give_zero_statistics() -> None:
    advantages, stats = shape_advantages([], [], [], [], AdvantageConfig(normalize=True))
    assert advantages == [] and all(v == 0.0 for v in stats.values())
    advantages, stats = shape_advantages(
        [1.0, 0.0],
        [torch.zeros(2), None],
        [torch.zeros(2), torch.zeros(0)],
        [torch.zeros(2), torch.zeros(0)],
        AdvantageConfig(normalize=True, opd_clip=1.0),
    )
    assert advantages[0].tolist() == [1.0, 1.0] and advantages[1].shape == (0,)
    assert stats["tokens"] == 0 and stats["rl_std"] == 0.0 and stats["opd_clip_frac"] == 0.0


def test_config_validation_and_length_mismatch() -> None:
    for bad in ({"opd_clip": 0.0}, {"opd_clip": float("inf")}, {"opd_scale": -1.0}, {"w_rl": float("nan")}):
        with pytest.raises(ValueError):
            AdvantageConfig(**bad)
    with pytest.raises(ValueError, match="length"):
        shape_advantages([1.0], [], [torch.zeros(1)], [torch.ones(1)], AdvantageConfig())
    with pytest.raises(ValueError, match="loss mask"):
        shape_advantages([1.0], [None], [torch.zeros(2)], [torch.ones(1)], AdvantageConfig())
