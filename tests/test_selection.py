"""Sample selection (selection.py): one decision for the slime path and the embedded trainer.

The same journal goes through slime's rollout function and the local trainer and gets the
same decisions; a slime restart (weight versions back at 0) trains the new job's samples
and skips the earlier job's, whose versions do not compare.
"""

from __future__ import annotations

from pathlib import Path

from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)
from test_slime_glue import add_ready, live

from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.training.trainer import LocalTrainer
from slime_openclaw.local.training.trainer_config import TrainerConfig
from slime_openclaw.losses import StalenessPolicy
from slime_openclaw.selection import EARLIER_JOB, SelectionRules, select
from slime_openclaw.types import Method


def fill(journal: SqliteJournal) -> None:
    """Fresh and stale samples, with and without a teacher, at trainer version 9."""
    add_ready(journal, "fresh-teacher", reward_value=0.0, teacher=True, version=9, method=Method.OPD)
    add_ready(journal, "fresh-none", reward_value=0.0, teacher=False, version=8, method=Method.OPD)
    add_ready(journal, "edge-teacher", reward_value=0.0, teacher=True, version=5, method=Method.OPD)
    add_ready(journal, "stale-teacher", reward_value=0.0, teacher=True, version=4, method=Method.OPD)
    add_ready(journal, "bad", reward_value=0.0, teacher=True, n=0, version=9, method=Method.OPD)


def decisions(kept, skipped) -> tuple[set[str], set[str]]:
    return {s.session_id for s in kept}, {s.session_id for s in skipped}


def test_slime_path_and_local_trainer_decide_alike(tmp_path: Path, tiny_model_path: Path) -> None:  # noqa: F811
    with SqliteJournal(tmp_path / "slime.sqlite") as a, SqliteJournal(tmp_path / "local.sqlite") as b:
        fill(a)
        fill(b)
        rollout = live(tmp_path, a, 8, openclaw_method="opd", openclaw_max_staleness=4)
        slime_keep, slime_skip, _ = rollout._select(a.drain(8, "slime"), [])
        config = TrainerConfig(checkpoint_dir=str(tmp_path / "ck"), method="opd",
                               staleness=StalenessPolicy(max_staleness=4))
        trainer = LocalTrainer(tiny_model_path, b, None, config)
        trainer.weight_version = 9
        local_keep, local_skip, _ = trainer._select(b.drain(8, "local"))
    expected = ({"fresh-teacher", "edge-teacher"}, {"fresh-none", "stale-teacher", "bad"})
    assert decisions(slime_keep, slime_skip) == expected
    assert decisions([item.sample for item in local_keep], local_skip) == expected
    assert rollout.rules == SelectionRules.for_method("opd", max_staleness=4, topk=False)


def test_restart_trains_the_new_jobs_samples_and_skips_the_old_ones(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        add_ready(journal, "old-job", reward_value=1.0, teacher=False, version=57, created_at=900.0)
        for i in range(2):
            add_ready(journal, f"new-{i}", reward_value=1.0, teacher=False, version=0, created_at=1005.0)
        rollout = live(tmp_path, journal, 2)
        restarted = type(rollout)(rollout.config, journal, rollout.sample_cls, 2, clock=rollout.clock,
                                  sleep=rollout.sleep, job_started_at=1000.0)
        step = restarted.train_step(0)
        assert sorted(g[0].session_id for g in step.groups) == ["new-0", "new-1"]
        assert step.metrics["openclaw/skipped"] == 1.0 and step.metrics["openclaw/staleness_max"] == 0.0
        assert journal.stats().samples_by_state.get("ready", 0) == 0  # the old one is settled, not left behind


def test_a_sample_newer_than_the_trainer_counts_as_fresh_and_topk_defers_twins(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        add_ready(journal, "a", reward_value=1.0, teacher=True, version=12, topk=True)
        add_ready(journal, "b", reward_value=1.0, teacher=True, version=12, topk=True)  # same tokens as a
        drained = journal.drain(4, "x")
    rules = SelectionRules.for_method("opd_topk", max_staleness=0, topk=True, job_started_at=100.0)
    decided = select(drained, rules, trainer_version=3, recorded_at=lambda s: 150.0)
    assert [s.session_id for s in decided.keep] == ["a"] and [s.session_id for s in decided.defer] == ["b"]
    earlier = select(drained, rules, trainer_version=3, recorded_at=lambda s: 50.0)
    assert [reason for _, reason in earlier.skip] == [EARLIER_JOB, EARLIER_JOB]
