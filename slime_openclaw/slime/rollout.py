"""The rollout function slime calls (``--rollout-function-path``): live traffic in, Samples out.

``generate_rollout(args, rollout_id, data_source, evaluation=False)`` has exactly the
signature of slime's default. It runs in slime's RolloutManager process. On the first
call it opens the journal and starts the live services (gateway in front of slime's
SGLang router, signal workers; ``services.py``) in that process; each training call then
waits until ``rollout_batch_size`` READY samples are in the journal, leases them, lays them
onto slime ``Sample`` objects (``samples.py``), leaves top-K rows for the trainer
(``topk_channel.py``), and returns ``RolloutFnTrainOutput`` with metrics. Evaluation calls
report the judge scores of the last step's samples (nothing is consumed).

Delivery is at least once: a step's samples are acknowledged when the step two later is
requested, because slime trains step ``k`` while generating ``k + 1`` and has finished
training ``k`` before it asks for ``k + 2``. After a crash the journal hands unacknowledged
samples out again when their lease expires (``openclaw_journal_drain_lease_s``).

``data_source`` is unused: the data are the live sessions. Run slime with
``--disable-rollout-global-dataset`` and ``--n-samples-per-prompt 1``; with
``--data-source-path slime_openclaw.slime.rollout.LiveDataSource`` the services start when
slime builds its RolloutManager instead of at the first rollout call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError, JournalError
from slime_openclaw.journal.base import JournalStats, TurnRecord
from slime_openclaw.selection import SelectionRules, select
from slime_openclaw.slime import guards, topk_channel
from slime_openclaw.slime.samples import (
    SampleLayout,
    TurnFacts,
    rollout_metrics,
    to_slime_sample,
)
from slime_openclaw.slime.services import TrainLimits
from slime_openclaw.types import Method, TrainingSample

log = logging.getLogger(__name__)

CONSUMER = "slime-rollout"
ACK_LAG_STEPS = 2


class SampleJournal(Protocol):
    """The slice of the journal the rollout function uses."""

    def drain(self, n: int, consumer: str = "") -> list[TrainingSample]: ...

    def ack(self, sample_ids: Sequence[str]) -> None: ...

    def nack(self, sample_ids: Sequence[str]) -> None: ...

    def get(self, turn_key: str) -> TurnRecord | None: ...

    def stats(self) -> JournalStats: ...


class Services(Protocol):
    """Live services owned by the rollout process (gateway, signal workers)."""

    def close(self) -> None: ...

    def metrics(self) -> dict[str, float]: ...


@dataclass
class StepResult:
    """One training step's samples (slime ``Sample`` objects, one per group) and metrics."""

    groups: list[list[Any]]
    metrics: dict[str, float]


@dataclass
class LiveRollout:
    """The state of the rollout function across calls in one RolloutManager process."""

    config: OpenClawConfig
    journal: SampleJournal
    sample_cls: Any
    batch_size: int
    services: Services | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    job_started_at: float = 0.0
    """When this slime job started: turns recorded before it are an earlier job's (0: no split)."""
    limits: TrainLimits = field(default_factory=lambda: TrainLimits())
    """slime's length limits: a longer sample is skipped, never handed to slime."""
    layout: SampleLayout = field(init=False)
    rules: SelectionRules = field(init=False)
    _facts_by_id: dict[str, TurnFacts] = field(default_factory=dict, init=False)
    _pending: dict[int, list[str]] = field(default_factory=dict, init=False)
    _last_groups: list[list[Any]] = field(default_factory=list, init=False)
    _version: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.layout = SampleLayout.from_config(self.config)
        self.rules = selection_rules(self.config, job_started_at=self.job_started_at,
                                     max_tokens=self.limits.max_context_tokens,
                                     max_response_tokens=self.limits.max_response_tokens)
        if self.batch_size < 1:
            raise ConfigError(f"rollout_batch_size must be >= 1, got {self.batch_size}")

    def train_step(self, rollout_id: int) -> StepResult:
        """Wait for, lease and convert ``batch_size`` samples for step ``rollout_id``."""
        self._ack_trained(rollout_id)
        started = self.clock()
        kept: list[TrainingSample] = []
        skipped = 0
        deadline = started + self.config.drain_timeout_s if self.config.drain_timeout_s > 0 else None
        while len(kept) < self.batch_size:
            drained = self.journal.drain(self.batch_size - len(kept), CONSUMER)
            keep, skip, defer = self._select(drained, kept)
            kept += keep
            skipped += len(skip)
            if skip:
                self.journal.ack([s.sample_id for s in skip])
            if defer:
                self.journal.nack([s.sample_id for s in defer])
            if len(kept) >= self.batch_size:
                break
            if deadline is not None and self.clock() >= deadline:
                self.journal.nack([s.sample_id for s in kept])
                raise JournalError(
                    f"rollout {rollout_id}: {len(kept)}/{self.batch_size} samples ready after "
                    f"{self.config.drain_timeout_s:.0f}s (openclaw_drain_timeout_s)"
                )
            if not drained or defer:
                self.sleep(self.config.drain_poll_s)
        return self._finish(rollout_id, kept, started, skipped)

    def _select(
        self, drained: list[TrainingSample], kept: list[TrainingSample]
    ) -> tuple[list[TrainingSample], list[TrainingSample], list[TrainingSample]]:
        """slime's side of ``selection.select``; the trainer's version is the newest one this
        job's samples were generated with (slime pushes weights before each generation)."""
        for sample in drained:
            self._facts_by_id[sample.sample_id] = self._facts(sample)
        this_job = [s for s in drained if s.weight_versions and self._recorded_at(s) >= self.rules.job_started_at]
        newest = max((max(s.weight_versions) for s in this_job), default=None)
        if newest is not None:
            self._version = newest if self._version is None else max(self._version, newest)
        decided = select(drained, self.rules, trainer_version=self._version, recorded_at=self._recorded_at, taken=kept)
        for sample, reason in decided.skip:
            log.info("openclaw: skipping sample %s: %s", sample.sample_id, reason)
            self._facts_by_id.pop(sample.sample_id, None)
        return decided.keep, [s for s, _ in decided.skip], decided.defer

    def _recorded_at(self, sample: TrainingSample) -> float:
        facts = self._facts_by_id.get(sample.sample_id)
        return (facts or self._facts(sample)).created_at

    def _finish(self, rollout_id: int, kept: list[TrainingSample], started: float, skipped: int) -> StepResult:
        facts = [self._facts_by_id.get(s.sample_id) or self._facts(s) for s in kept]
        self._facts_by_id.clear()
        groups = []
        topk_rows: dict[int, tuple[Any, Any]] = {}
        for position, (sample, fact) in enumerate(zip(kept, facts, strict=True)):
            index = rollout_id * self.batch_size + position
            groups.append([to_slime_sample(self.sample_cls, sample, index=index, layout=self.layout, facts=fact)])
            if self.config.teacher.topk and sample.teacher_topk_ids is not None:
                topk_rows[index] = (sample.teacher_topk_ids, sample.teacher_topk_log_probs)
        if self.config.teacher.topk:
            topk_channel.write_step(self.config.teacher.topk_dir, rollout_id, topk_rows)
            topk_channel.prune(self.config.teacher.topk_dir, rollout_id)
        self._pending[rollout_id] = [s.sample_id for s in kept]
        self._last_groups = groups
        stats = self.journal.stats()
        metrics = rollout_metrics(
            kept,
            facts,
            now=self.clock(),
            current_version=self._version,
            wait_s=self.clock() - started,
            ready_after=stats.samples_by_state.get("ready", 0),
            skipped=skipped,
        )
        if self.services is not None:
            metrics.update(self.services.metrics())
        return StepResult(groups, metrics)

    def _facts(self, sample: TrainingSample) -> TurnFacts:
        record = self.journal.get(f"{sample.session_id}:{sample.turn_index}")
        if record is None:
            return TurnFacts()
        return TurnFacts(finish_reason=record.turn.finish_reason, created_at=record.turn.created_at)

    def _ack_trained(self, rollout_id: int) -> None:
        for step in sorted(self._pending):
            if step <= rollout_id - ACK_LAG_STEPS:
                self.journal.ack(self._pending.pop(step))

    def evaluate(self) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
        """Eval data (judge scores of the last step's samples) and journal metrics."""
        stats = self.journal.stats()
        metrics = {f"openclaw/journal_samples_{k}": float(v) for k, v in stats.samples_by_state.items()}
        metrics["openclaw/judge_lag_s"] = float(stats.judge_lag_seconds)
        samples = [group[0] for group in self._last_groups]
        if not samples:
            return {}, metrics
        rewards = [float(s.metadata["openclaw"]["judge_reward"]) for s in samples]
        truncated = [s.status == self.sample_cls.Status.TRUNCATED for s in samples]
        return {"openclaw_live": {"rewards": rewards, "truncated": truncated, "samples": samples}}, metrics

    def close(self) -> None:
        """Give leased, untrained samples back and stop the services."""
        pending = [sid for ids in self._pending.values() for sid in ids]
        self._pending.clear()
        if pending:
            self.journal.nack(pending)
        if self.services is not None:
            self.services.close()
        closer = getattr(self.journal, "close", None)
        if closer is not None:
            closer()


def selection_rules(config: OpenClawConfig, **extra: object) -> SelectionRules:
    """The selection rules of a run's config (the embedded trainer derives the same ones)."""
    method = "opd_topk" if config.method is Method.OPD and config.teacher.topk else config.method.value
    return SelectionRules.for_method(method, max_staleness=config.max_staleness, topk=bool(config.teacher.topk), **extra)


_LOCK = threading.Lock()
_RUNTIME: LiveRollout | None = None


def _start_runtime(args: Any) -> LiveRollout:
    guards.check(vars(args))  # flags added by hand get the checks launch runs, before anything opens
    from slime.utils.types import Sample

    from slime_openclaw.slime.services import open_journal, start_services

    started = time.time()  # before the gateway serves this job's first turn
    config = OpenClawConfig.from_args(args)
    journal = open_journal(config)
    limits = TrainLimits.from_args(args)
    services = start_services(config, args, journal, limits)
    return LiveRollout(config, journal, Sample, int(args.rollout_batch_size), services=services,
                       job_started_at=started, limits=limits)


def runtime(args: Any) -> LiveRollout:
    """This process's ``LiveRollout``, created (and its services started) on first use."""
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None:
            _RUNTIME = _start_runtime(args)
        return _RUNTIME


def shutdown() -> None:
    """Stop this process's runtime, if any (tests, and interpreter exit)."""
    global _RUNTIME
    with _LOCK:
        current, _RUNTIME = _RUNTIME, None
    if current is not None:
        current.close()


DATA_SOURCE = "slime_openclaw.slime.rollout.LiveDataSource"


class LiveDataSource:
    """slime's data source (``--data-source-path``) on the live path: starts the gateway early.

    slime builds its data source in ``RolloutManager.__init__``, right after it started the
    SGLang routers and long before the first rollout call (engines still loading, the
    actor's first weight push): constructing this one starts the runtime (journal, gateway,
    signal workers) then, so clients can reach the gateway, and its address file exists,
    from the moment the RolloutManager is up. It holds no data: the samples are the
    journal's, which is also what survives a restart (``save``/``load`` have nothing to
    add), and it has no prompts (``get_samples`` gives none); with any other rollout function
    it refuses to start.
    """

    def __init__(self, args: Any) -> None:
        self.args = args
        rollout_fn = getattr(args, "rollout_function_path", None)
        if rollout_fn is not None and rollout_fn != guards.PERSONAL_ROLLOUT:
            raise ConfigError(f"--data-source-path {DATA_SOURCE} has no prompts for --rollout-function-path "
                              f"{rollout_fn}; use it with {guards.PERSONAL_ROLLOUT} only")
        if rollout_fn is not None:  # slime's RolloutManager (arguments without it: a contract check)
            runtime(args)

    def get_samples(self, num_samples: int) -> list[list[Any]]:
        """No prompts: the live rollout function never asks (the data are the live sessions)."""
        return []

    def add_samples(self, samples: list[list[Any]]) -> None:
        raise ConfigError("the live data source takes no samples back (the journal keeps them)")

    def save(self, rollout_id: int) -> None:
        """Nothing to save: the journal is durable on its own."""

    def load(self, rollout_id: int | None = None) -> None:
        """Nothing to load: the journal is durable on its own."""

    def __len__(self) -> int:
        return 0


def generate_rollout(args, rollout_id, data_source, evaluation=False):
    """slime rollout function: a train step of live samples, or a live evaluation."""
    if args is None:  # slime's rollout contract calls so; live traffic needs the run's arguments
        raise ConfigError("the live rollout needs slime's parsed arguments (got args=None): it serves "
                          "the journal of a running job, not a data source")
    from slime.rollout.base_types import RolloutFnEvalOutput, RolloutFnTrainOutput

    live = runtime(args)
    if evaluation:
        data, metrics = live.evaluate()
        return RolloutFnEvalOutput(data=data, metrics=metrics)
    result = live.train_step(int(rollout_id))
    return RolloutFnTrainOutput(samples=result.groups, metrics=result.metrics)
