"""The local trainer of the embedded default: READY samples in, new weights into the engine out.

One ``LocalTrainer.step``: drain up to ``batch_size`` READY samples from the journal
(waiting up to ``wait_s``), skip (acknowledge, never train) the ones that cannot be
trained, as slime's rollout function does, run one AdamW update on the rest, write the
checkpoint, acknowledge the samples, and push the checkpoint into the engine while it
keeps serving (weight_sync.py). A step that fails before its checkpoint is durable gives
its samples back (nack) and leaves the trainer at its last checkpoint.

The objective (PPO clip on the combined advantage with the rollout log-probs as old
log-probs, plus top-K reverse KL) is trainer_objective.py; checkpoints are checkpoint.py.
A checkpoint records its sample ids and ``resume`` acknowledges them again, so a step is
trained once even when the process dies between checkpoint and ack.

Not here: the optimizer math of slime/Megatron (no micro-batching, no KL-to-reference
loss), several updates per batch, or GPU placement: the policy is float32 on the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError, EngineError, JournalError
from slime_openclaw.journal.base import Journal
from slime_openclaw.local import checkpoint as ckpt
from slime_openclaw.local.trainer_objective import TrainItem, batch_gradients, prepare, unusable_reason
from slime_openclaw.local.weight_sync import PUSH_MODES, EngineAdmin, PushMode, push_checkpoint
from slime_openclaw.losses import AdvantageConfig, StalenessPolicy
from slime_openclaw.types import Method, TrainingSample

log = logging.getLogger(__name__)
METHODS = ("binary", "opd", "opd_topk", "combine")


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of the local trainer (see the module doc for the objective)."""

    checkpoint_dir: str
    """Where checkpoints go (``step_NNNNNNNN/`` directories); resume reads the newest."""
    method: str = "combine"
    """``binary``, ``opd``, ``opd_topk`` or ``combine``."""
    batch_size: int = 8
    """Samples per step."""
    min_batch: int = 1
    """After ``wait_s`` a step runs on fewer than ``batch_size`` if at least this many arrived."""
    wait_s: float = 30.0
    """How long a step waits for ``batch_size`` samples (0: take what is READY now)."""
    poll_s: float = 0.5
    """Journal polling interval while waiting."""
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    """Max global gradient norm (0: no clipping; the norm is still reported)."""
    eps_clip: float = 0.2
    eps_clip_high: float = 0.28
    w_rl: float = 1.0
    """Weight of the reward term."""
    w_opd: float = 1.0
    """Weight of the teacher - old term (``opd_topk``: of the top-K reverse KL)."""
    opd_clip: float | None = None
    opd_scale: float = 1.0
    normalize_advantages: bool = False
    temperature: float = 1.0
    """The rollout temperature: log-probs are ``log_softmax(logits / T)``, as the engine's."""
    staleness: StalenessPolicy = field(default_factory=StalenessPolicy)
    keep_checkpoints: int = 2
    push: PushMode = "in_place"
    """Engine update: ``in_place``/``retract`` pause mode, ``swap`` (no pause), ``none``."""
    threads: int = 1
    """torch intra-op threads of the training thread (more only pays on idle cores: on a
    busy 2-core machine two threads made a step 6x slower than one)."""
    consumer: str = "local-trainer"
    """Consumer name in the journal."""
    max_consecutive_failures: int = 3
    """``run`` gives up (raises) after this many failed steps in a row."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"trainer method must be one of {list(METHODS)}, got {self.method!r}")
        if self.push not in PUSH_MODES:
            raise ConfigError(f"trainer push must be one of {list(PUSH_MODES)}, got {self.push!r}")
        if not (1 <= self.min_batch <= self.batch_size):
            raise ConfigError(f"need 1 <= min_batch <= batch_size, got {self.min_batch}, {self.batch_size}")
        positive = {"lr": self.lr, "temperature": self.temperature, "poll_s": self.poll_s}
        non_negative = {"wait_s": self.wait_s, "weight_decay": self.weight_decay, "grad_clip": self.grad_clip}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"trainer {name} must be > 0, got {value}")
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"trainer {name} must be >= 0, got {value}")
        if self.keep_checkpoints < 1 or self.threads < 1 or self.max_consecutive_failures < 1:
            raise ConfigError("keep_checkpoints, threads and max_consecutive_failures must be >= 1")
        try:
            self.advantage_config()
        except ValueError as exc:
            raise ConfigError(f"trainer advantage settings: {exc}") from exc

    def advantage_config(self) -> AdvantageConfig:
        """The advantage shaping (OPD weight 0 for ``opd_topk``: the KL term carries it)."""
        return AdvantageConfig(
            w_rl=self.w_rl,
            w_opd=0.0 if self.method == "opd_topk" else self.w_opd,
            opd_clip=self.opd_clip,
            opd_scale=self.opd_scale,
            normalize=self.normalize_advantages,
        )

    @classmethod
    def from_openclaw(cls, config: OpenClawConfig, checkpoint_dir: str, **overrides: Any) -> TrainerConfig:
        """The trainer settings implied by the run's config (weights, clip, staleness)."""
        method = config.method.value
        if config.method is Method.OPD and config.teacher.topk:
            method = "opd_topk"
        values: dict[str, Any] = {
            "checkpoint_dir": checkpoint_dir,
            "method": method,
            "w_rl": config.rl_weight,
            "w_opd": config.opd_weight,
            "opd_clip": config.opd_clip,
            "opd_scale": config.opd_scale,
            "staleness": StalenessPolicy(max_staleness=config.max_staleness, tis_cap=config.tis_clip or 2.0),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class StepResult:
    """What one training step did."""

    step: int
    """Steps completed, this one included."""
    weight_version: int
    """Version of the new weights (the engine serves it once ``pushed``)."""
    loss: float
    sample_ids: tuple[str, ...]
    """Samples trained on (acknowledged)."""
    skipped: int
    """Samples acknowledged without training (malformed, missing teacher, too stale)."""
    stats: dict[str, float]
    """``adv_*`` (shape_advantages), ``pg_loss``, ``pg_clipfrac``, ``ppo_kl`` (mean rollout -
    trainer log-prob), ``grad_norm``, ``staleness_max``, ``topk_reverse_kl``, timings."""
    checkpoint: str
    pushed: bool
    push_error: str | None = None


class LocalTrainer:
    """Trains the policy at ``model_dir`` on journal samples and pushes it into the engine."""

    def __init__(
        self, model_dir: str | Path, journal: Journal, engine_admin: EngineAdmin | None, config: TrainerConfig
    ) -> None:
        """Load the base policy (float32, CPU). Call ``resume()`` to continue from a checkpoint."""
        self.model_dir = Path(model_dir)
        self.journal = journal
        self.engine = engine_admin
        self.config = config
        self.checkpoint_root = Path(config.checkpoint_dir)
        self.step_count = 0
        self.weight_version = 0
        self.checkpoint: Path | None = None
        self.model, self.optimizer = self._build(self.model_dir, None)
        self._push_pending = False
        self._unacked: list[str] = []
        self._lock = asyncio.Lock()

    # -- state -------------------------------------------------------------------------
    def _build(self, path: Path, optimizer_state: dict[str, Any] | None) -> tuple[Any, torch.optim.Optimizer]:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()  # no dropout: the trainer's log-probs must be the engine's
        c = self.config
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        return model, optimizer

    def resume(self) -> Path | None:
        """Load the newest complete checkpoint (weights, optimizer, step, version, RNG) and
        acknowledge the samples it trained on; None (base weights kept) when there is none."""
        for _step, path in reversed(ckpt.complete_checkpoints(self.checkpoint_root)):
            try:
                state = ckpt.load_state(path)
                model, optimizer = self._build(path, state.optimizer)
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                log.warning("skipping unreadable checkpoint %s: %s", path, exc)
                continue
            self.model, self.optimizer = model, optimizer
            self.step_count, self.weight_version, self.checkpoint = state.step, state.weight_version, path
            torch.set_rng_state(state.rng)
            self._push_pending = True
            self._ack_known(state.sample_ids)
            log.info("resumed from %s (step %d, weight version %d)", path, state.step, state.weight_version)
            return path
        return None

    def _ack_known(self, sample_ids: Sequence[str]) -> None:
        """Acknowledge ids that may already be consumed or purged (replays are no-ops)."""
        try:
            self.journal.ack(list(sample_ids))
        except JournalError:  # some were purged by retention: settle the rest one by one
            for sample_id in sample_ids:
                try:
                    self.journal.ack([sample_id])
                except JournalError:
                    continue

    # -- the loop ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, max_steps: int | None = None) -> int:
        """Step until ``stop`` is set (or ``max_steps`` steps ran); returns the steps run.

        Brings the engine to the trainer's weights first; a failed step is logged and
        retried after ``poll_s``, until ``max_consecutive_failures`` in a row (then raises).
        """
        done = failures = 0
        await self.sync_engine()
        while not stop.is_set() and (max_steps is None or done < max_steps):
            try:
                result = await self.step(stop)
            except Exception:
                failures += 1
                log.exception("training step failed (%d in a row)", failures)
                if failures >= self.config.max_consecutive_failures:
                    raise
                await _sleep(self.config.poll_s, stop)
                continue
            failures = 0
            if result is None:
                if self._push_pending:
                    await self.sync_engine()
                await _sleep(self.config.poll_s, stop)
                continue
            done += 1
        return done

    async def step(self, stop: asyncio.Event | None = None) -> StepResult | None:
        """One training step; None when no (or fewer than ``min_batch``) samples arrived in time."""
        async with self._lock:
            started = time.monotonic()
            if self._unacked:
                unacked, self._unacked = self._unacked, []
                self._ack_known(unacked)
            items, skipped = await self._collect(stop)
            if not items:
                return None
            ids = [item.sample.sample_id for item in items]
            work = asyncio.ensure_future(asyncio.to_thread(self._train_and_save, items))
            try:
                await asyncio.wait([work])
            except asyncio.CancelledError:
                await _outlast_cancellation(work)  # a started step finishes and is settled
                with contextlib.suppress(Exception):
                    self._settle(ids, work)
                self._push_pending = True
                raise
            loss, stats = self._settle(ids, work)
            push_started = time.monotonic()
            push_error = await self._push()
            stats["push_s"] = time.monotonic() - push_started
            stats["step_s"] = time.monotonic() - started
            return StepResult(
                step=self.step_count, weight_version=self.weight_version, loss=loss, sample_ids=tuple(ids),
                skipped=skipped, stats=stats, checkpoint=str(self.checkpoint), pushed=push_error is None,
                push_error=push_error,
            )

    async def sync_engine(self) -> bool:
        """Push the newest checkpoint unless the engine already serves its version; True if pushed."""
        if self.config.push == "none" or self.engine is None or self.checkpoint is None:
            self._push_pending = False
            return False
        try:
            serving = await self.engine.weight_version()
        except EngineError as exc:
            log.warning("cannot read the engine's weight version: %s", exc)
            return False
        if serving == self.weight_version:
            self._push_pending = False
            return False
        return await self._push() is None

    def _settle(self, ids: list[str], work: asyncio.Future[tuple[float, dict[str, float]]]) -> tuple[float, dict[str, float]]:
        """Ack the samples of a durable step, nack those of a failed one (and re-raise)."""
        error = work.exception()
        if error is not None:
            self.journal.nack(ids)
            raise error
        try:
            self.journal.ack(ids)
        except JournalError:  # the step is durable: retried before the next step (and on resume)
            self._unacked += ids
            self._push_pending = True
            raise
        return work.result()

    async def _push(self) -> str | None:
        """Push the current checkpoint; returns the error text of a failed push (not raised)."""
        if self.config.push == "none" or self.engine is None or self.checkpoint is None:
            return None
        try:
            paused = await push_checkpoint(self.engine, str(self.checkpoint), self.weight_version, self.config.push)
        except EngineError as exc:
            self._push_pending = True
            log.warning("weight push of version %d failed (the next push retries): %s", self.weight_version, exc)
            return exc.message
        self._push_pending = False
        log.info("engine serves weight version %d (paused %.3fs)", self.weight_version, paused)
        return None

    # -- collecting samples ------------------------------------------------------------
    async def _collect(self, stop: asyncio.Event | None) -> tuple[list[TrainItem], int]:
        c = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c.wait_s
        items: list[TrainItem] = []
        skipped = 0
        try:
            while True:
                drained = self.journal.drain(c.batch_size - len(items), c.consumer)
                keep, skip = self._select(drained)
                if skip:
                    self.journal.ack([s.sample_id for s in skip])
                    skipped += len(skip)
                items += keep
                if len(items) >= c.batch_size or loop.time() >= deadline or (stop is not None and stop.is_set()):
                    break
                if not drained:
                    await _sleep(min(c.poll_s, max(deadline - loop.time(), 0.0)), stop)
        except BaseException:  # cancelled or the journal failed: give back what we hold
            if items:
                self.journal.nack([item.sample.sample_id for item in items])
            raise
        if len(items) < c.min_batch:
            if items:
                self.journal.nack([item.sample.sample_id for item in items])
            return [], skipped
        return items, skipped

    def _select(self, samples: Sequence[TrainingSample]) -> tuple[list[TrainItem], list[TrainingSample]]:
        keep: list[TrainItem] = []
        skip: list[TrainingSample] = []
        vocab = int(self.model.config.vocab_size)
        for sample in samples:
            reason = unusable_reason(sample, self.config, vocab)
            item = prepare(sample, self.config, self.weight_version) if reason is None else None
            if item is not None and item.dropped:
                reason = f"staleness {item.staleness:.0f} > {self.config.staleness.max_staleness}"
            if item is None or reason is not None:
                log.info("skipping sample %s: %s", sample.sample_id, reason)
                skip.append(sample)
            else:
                keep.append(item)
        return keep, skip

    # -- training (worker thread) ------------------------------------------------------
    def _train_and_save(self, items: list[TrainItem]) -> tuple[float, dict[str, float]]:
        torch.set_num_threads(self.config.threads)  # this thread only (OpenMP setting)
        started = time.monotonic()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            loss, stats = batch_gradients(self.model, items, self.config)
            stats["grad_norm"] = self._clip_gradients()
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
        stats["train_s"] = time.monotonic() - started
        saved = time.monotonic()
        state = ckpt.TrainerState(
            step=self.step_count + 1, weight_version=self.weight_version + 1,
            optimizer=self.optimizer.state_dict(), rng=torch.get_rng_state(),
            sample_ids=tuple(item.sample.sample_id for item in items),
        )
        try:
            path = ckpt.save_checkpoint(self.checkpoint_root, self.model, self.model_dir, state)
        except BaseException:
            self._rollback()
            raise
        self.step_count, self.weight_version, self.checkpoint = state.step, state.weight_version, path
        ckpt.prune(self.checkpoint_root, self.config.keep_checkpoints)
        stats["checkpoint_s"] = time.monotonic() - saved
        return loss, stats

    def _rollback(self) -> None:
        """Back to the last durable state after an update whose checkpoint failed."""
        if self.checkpoint is None:
            self.model, self.optimizer = self._build(self.model_dir, None)
        else:
            self.model, self.optimizer = self._build(self.checkpoint, ckpt.load_state(self.checkpoint).optimizer)

    def _clip_gradients(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        limit = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
        if not math.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm {norm}: the update is skipped")
        return norm


async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep ``seconds``, waking early when ``stop`` is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _outlast_cancellation(work: asyncio.Future[Any]) -> None:
    """Wait for ``work`` to finish even if cancelled again meanwhile."""
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            continue


__all__ = ["METHODS", "LocalTrainer", "StepResult", "TrainerConfig"]
