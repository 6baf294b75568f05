"""slime glue without slime: journal -> Samples, the no-teacher marker, hooks' math, top-K channel.

A duck-typed ``Sample`` stands in for ``slime.utils.types.Sample`` (tests marked ``slime``
use the real one); the journal is the real SQLite journal.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import inspect
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.losses import make_sum_of_sample_mean, ppo_clip_loss
from slime_openclaw.slime import hooks, reward, topk_channel
from slime_openclaw.slime.logprobs import TorchBackend
from slime_openclaw.slime.rollout import LiveRollout
from slime_openclaw.types import (
    FinishReason,
    Method,
    NextState,
    NextStateKind,
    TrainingSample,
    Turn,
    TurnType,
)


@dataclass
class FakeSample:
    """The fields of slime's Sample the glue sets (same names and types)."""

    class Status(enum.Enum):
        COMPLETED = "completed"
        TRUNCATED = "truncated"

    group_index: int | None = None
    index: int | None = None
    rollout_id: int | None = None
    tokens: list[int] = field(default_factory=list)
    response_length: int = 0
    reward: float | None = None
    loss_mask: list[int] | None = None
    rollout_log_probs: list[float] | None = None
    teacher_log_probs: list[float] | None = None
    weight_versions: list[str] = field(default_factory=list)
    status: Any = None
    session_id: str | None = None
    metadata: dict = field(default_factory=dict)


def config_args(tmp_path, method: str = "combine", **extra: Any) -> argparse.Namespace:
    values = {
        "openclaw_method": method,
        "openclaw_judge_endpoints": ["slime:judge"],
        "openclaw_journal_path": str(tmp_path / "journal.sqlite"),
        "openclaw_drain_poll_s": 0.0,
        **extra,
    }
    return argparse.Namespace(custom_config_path=None, rollout_temperature=1.0, eps_clip=0.2, eps_clip_high=0.28,
                              disable_rewards_normalization=True, **values)


def add_ready(journal: SqliteJournal, session: str, *, reward_value: float, teacher: bool, n: int = 3,
              version: int = 1, topk: bool = False, method: Method = Method.COMBINE, created_at: float = 1000.0) -> None:
    prompt, response = (11, 12, 13), tuple(20 + i for i in range(n))
    lps = tuple(-0.5 - 0.1 * i for i in range(n))
    turn = Turn(
        session_id=session, turn_index=0, turn_type=TurnType.MAIN, messages=(), tools=(), prompt_ids=prompt,
        response_ids=response, response_log_probs=lps, weight_versions=(version,) * n,
        finish_reason=FinishReason.LENGTH if session.endswith("long") else FinishReason.STOP,
        response_message={"role": "assistant", "content": ""}, created_at=created_at,
    )
    journal.record_turn(turn)
    journal.attach_next_state(turn.key, NextState(kind=NextStateKind.USER, messages=({"role": "user", "content": "x"},)))
    assert journal.claim_observed(10)
    sample = TrainingSample(
        session_id=session, turn_index=0, method=method, prompt_ids=prompt, response_ids=response,
        loss_mask=(1,) * n, rollout_log_probs=lps, weight_versions=(version,) * n, reward=reward_value,
        teacher_log_probs=tuple(x + 0.25 for x in lps) if teacher else None,
        teacher_topk_ids=tuple((20 + i, 7) for i in range(n)) if topk else None,
        teacher_topk_log_probs=tuple((-0.3, -2.0) for _ in range(n)) if topk else None,
    )
    journal.record_signals(turn.key, None, None, [sample])


def live(tmp_path, journal, batch: int, **extra: Any) -> LiveRollout:
    from slime_openclaw.config import OpenClawConfig

    config = OpenClawConfig.from_args(config_args(tmp_path, **extra))
    return LiveRollout(config, journal, FakeSample, batch, clock=lambda: 1010.0, sleep=lambda s: None)


def test_combine_step_lays_samples_and_marks_missing_teacher(tmp_path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        add_ready(journal, "s-hint", reward_value=1.0, teacher=True)
        add_ready(journal, "s-plain-long", reward_value=-1.0, teacher=False)
        rollout = live(tmp_path, journal, 2)
        result = rollout.train_step(5)
        (a,), (b,) = result.groups
        assert a.tokens == [11, 12, 13, 20, 21, 22] and a.response_length == 3
        assert a.index == a.rollout_id == a.group_index == 10 and b.index == 11
        assert a.reward == 1.0 and b.reward == -1.0
        assert a.teacher_log_probs == [pytest.approx(x + 0.25) for x in a.rollout_log_probs]
        assert b.teacher_log_probs == b.rollout_log_probs  # the no-teacher marker
        assert b.status is FakeSample.Status.TRUNCATED and a.status is FakeSample.Status.COMPLETED
        assert a.weight_versions == ["1", "1", "1"]
        assert result.metrics["openclaw/hint_accept_rate"] == 0.5
        assert result.metrics["openclaw/judge_score_mean"] == 0.0
        assert result.metrics["openclaw/sample_age_mean_s"] == 10.0
        data, _ = rollout.evaluate()
        assert data["openclaw_live"]["rewards"] == [1.0, -1.0]


def test_samples_are_acknowledged_two_steps_later(tmp_path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        for i in range(3):
            add_ready(journal, f"s{i}", reward_value=1.0, teacher=False)
        rollout = live(tmp_path, journal, 1, openclaw_method="binary", openclaw_rl_weight=0.5)
        first = rollout.train_step(0)
        assert first.groups[0][0].reward == 0.5 and first.groups[0][0].teacher_log_probs is None
        rollout.train_step(1)
        assert journal.stats().samples_by_state.get("consumed", 0) == 0
        rollout.train_step(2)
        assert journal.stats().samples_by_state.get("consumed", 0) == 1
        rollout.close()  # gives leased, untrained samples back and closes the journal it owns
    with SqliteJournal(tmp_path / "journal.sqlite") as reopened:
        assert reopened.stats().samples_by_state.get("ready", 0) == 2


def test_opd_skips_samples_without_teacher_and_drops_stale(tmp_path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        add_ready(journal, "new", reward_value=0.0, teacher=True, version=9, method=Method.OPD)
        add_ready(journal, "plain", reward_value=1.0, teacher=False)
        add_ready(journal, "old", reward_value=0.0, teacher=True, version=1, method=Method.OPD)
        add_ready(journal, "new2", reward_value=0.0, teacher=True, version=9, method=Method.OPD)
        rollout = live(tmp_path, journal, 2, openclaw_method="opd", openclaw_max_staleness=4)
        result = rollout.train_step(0)
        assert [g[0].session_id for g in result.groups] == ["new", "new2"]
        assert result.metrics["openclaw/skipped"] == 2
        assert result.groups[0][0].reward == 0.0
        assert journal.stats().samples_by_state.get("consumed", 0) == 2


def test_topk_rows_reach_the_loss_through_file_and_stage(tmp_path) -> None:
    topk_dir = tmp_path / "topk"
    extra = {"openclaw_teacher_topk": 2, "openclaw_teacher_topk_dir": str(topk_dir)}
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        add_ready(journal, "a", reward_value=1.0, teacher=True, topk=True)
        add_ready(journal, "dup", reward_value=1.0, teacher=True, topk=True)  # same tokens as "a"
        rollout = live(tmp_path, journal, 1, **extra)
        (sample,), = rollout.train_step(3).groups
        assert journal.stats().samples_by_state.get("ready", 0) == 1  # the duplicate was deferred
    assert topk_channel.step_file(topk_dir, 3).exists()
    args = config_args(tmp_path, **extra)
    stage = topk_channel.TopKStage()
    tokens = torch.tensor(sample.tokens)
    rollout_data = {"sample_indices": [sample.index], "tokens": [tokens], "response_lengths": [3]}
    hooks.stage_topk(args, 3, rollout_data, stage)
    assert float(rollout_data["openclaw_topk_frac"]) == 1.0  # a share: slime averages it over ranks
    rows = stage.lookup(tokens)
    assert rows is not None and rows.ids.tolist() == [[20, 7], [21, 7], [22, 7]]
    batch, logits = packed_batch([sample], vocab=32)
    batch["advantages"] = [torch.zeros(3)]
    loss, metrics = hooks.policy_loss(args, batch, logits, make_sum_of_sample_mean([3], batch["loss_masks"]),
                                      backend=TorchBackend(), stage=stage)
    assert metrics["topk_frac"] == 1 and metrics["topk_reverse_kl"] > 0
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def packed_batch(samples: list[FakeSample], vocab: int = 16) -> tuple[dict[str, Any], torch.Tensor]:
    torch.manual_seed(0)
    tokens = [torch.tensor(s.tokens) for s in samples]
    total = sum(len(t) for t in tokens)
    logits = torch.randn(1, total, vocab, requires_grad=True)
    batch = {
        "unconcat_tokens": tokens,
        "total_lengths": [len(t) for t in tokens],
        "response_lengths": [s.response_length for s in samples],
        "loss_masks": [torch.tensor(s.loss_mask, dtype=torch.int) for s in samples],
        "rollout_log_probs": [torch.tensor(s.rollout_log_probs) for s in samples],
    }
    return batch, logits


def test_combined_advantage_zeroes_opd_term_exactly_on_marker(tmp_path) -> None:
    args = config_args(tmp_path, openclaw_rl_weight=0.5, openclaw_opd_weight=2.0)
    old = [torch.tensor([-1.0, -2.0]), torch.tensor([-0.5, -0.7])]
    behaviour = [torch.tensor([-1.1, -2.1]), torch.tensor([-0.4, -0.8])]
    teacher = [torch.tensor([-0.6, -2.5]), behaviour[1].clone()]
    data = {"log_probs": old, "rollout_log_probs": behaviour, "teacher_log_probs": teacher, "rewards": [1.0, -1.0],
            "loss_masks": [torch.ones(2, dtype=torch.int)] * 2, "response_lengths": [2, 2], "total_lengths": [4, 4]}
    hooks.combined_advantage(args, data)
    expected0 = 0.5 * 1.0 + 2.0 * (teacher[0] - old[0])
    assert torch.allclose(data["advantages"][0], expected0)
    assert torch.equal(data["advantages"][1], torch.full((2,), -0.5))  # exactly w_rl * r
    assert data["returns"] is data["advantages"]
    assert float(data["openclaw_teacher_frac"]) == 0.5


def test_policy_loss_matches_losses_package_and_slime_reduction(tmp_path) -> None:
    args = config_args(tmp_path, openclaw_tis_clip=0.0)
    samples = [FakeSample(tokens=[1, 2, 3, 4, 5], response_length=3, loss_mask=[1, 1, 0], rollout_log_probs=[-1.0] * 3),
               FakeSample(tokens=[6, 7, 8], response_length=2, loss_mask=[1, 1], rollout_log_probs=[-1.0] * 2)]
    batch, logits = packed_batch(samples)
    with torch.no_grad():
        current = TorchBackend().log_probs(logits, args, batch)
    batch["log_probs"] = [c - 0.1 for c in current]
    batch["advantages"] = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5, 0.5])]
    reducer = make_sum_of_sample_mean([3, 2], batch["loss_masks"])
    loss, metrics = hooks.policy_loss(args, batch, logits, reducer, backend=TorchBackend())
    # reference: log-softmax by hand, PPO from the losses package
    flat = torch.log_softmax(logits[0].detach(), -1)
    ref_lp = torch.cat([flat[1:4].gather(-1, torch.tensor([[3], [4], [5]])).squeeze(-1),
                        flat[5:7].gather(-1, torch.tensor([[7], [8]])).squeeze(-1)])
    expected = reducer(ppo_clip_loss(ref_lp, torch.cat(batch["log_probs"]), torch.cat(batch["advantages"])).loss)
    assert torch.allclose(loss.detach(), expected, atol=1e-6)
    assert set(metrics) >= {"loss", "pg_loss", "pg_clipfrac", "ppo_kl"}
    loss.backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0


def test_policy_loss_applies_truncated_importance_weights(tmp_path) -> None:
    args = config_args(tmp_path, openclaw_tis_clip=1.5)
    samples = [FakeSample(tokens=[1, 2, 3], response_length=2, loss_mask=[1, 1], rollout_log_probs=[-5.0, -0.01])]
    batch, logits = packed_batch(samples)
    with torch.no_grad():
        batch["log_probs"] = TorchBackend().log_probs(logits, args, batch)
    batch["advantages"] = [torch.ones(2)]
    reducer = make_sum_of_sample_mean([2], batch["loss_masks"])
    loss, metrics = hooks.policy_loss(args, batch, logits, reducer, backend=TorchBackend())
    ratio = torch.exp(batch["log_probs"][0] - torch.tensor([-5.0, -0.01]))
    expected = reducer(-1.0 * ratio.clamp(0, 1.5))  # rho = 1 at the old policy: loss_t = -A_t * w_t
    assert torch.allclose(loss.detach(), expected, atol=1e-6)
    assert 0 < float(metrics["tis_clipfrac"]) <= 1


def test_reward_hook_single_and_list() -> None:
    ours = FakeSample(reward=0.0, metadata={"openclaw": {"judge_reward": -1.0}})
    theirs = FakeSample(reward=0.25)
    assert asyncio.run(reward.reward(None, ours)) == -1.0
    assert asyncio.run(reward.reward(None, [ours, theirs, FakeSample()])) == [-1.0, 0.25, 0.0]
    assert asyncio.run(reward.group_reward(None, [theirs])) == [0.25]


def test_the_slime_entry_points_import_without_slime() -> None:
    """slime loads our rollout, reward and hooks by path; importing them must not need slime (the
    embedded path and this suite run without it) and the rollout keeps slime's signature."""
    from slime_openclaw.slime.rollout import generate_rollout

    assert tuple(inspect.signature(generate_rollout).parameters) == ("args", "rollout_id", "data_source", "evaluation")
    code = ("import sys; import slime_openclaw.slime.rollout, slime_openclaw.slime.reward, slime_openclaw.slime.hooks; "
            "print(sorted(m for m in sys.modules if m == 'slime' or m.startswith('slime.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
