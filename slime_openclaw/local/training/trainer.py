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

With ``kl_coef > 0`` a frozen copy of the base policy is the reference of slime's
KL-to-reference loss (``--use-kl-loss``). Not here: the optimizer math of slime/Megatron
(no micro-batching), several updates per batch, or GPU placement: float32 on the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slime_openclaw.errors import EngineError, JournalError
from slime_openclaw.journal.base import Journal
from slime_openclaw.local.training import checkpoint as ckpt
from slime_openclaw.local.training.trainer_config import METHODS, TrainerConfig
from slime_openclaw.local.training.trainer_objective import (
    TrainItem,
    batch_gradients,
    prepare,
)
from slime_openclaw.local.training.weight_sync import EngineAdmin, push_checkpoint
from slime_openclaw.selection import SelectionRules, select
from slime_openclaw.types import TrainingSample

log = logging.getLogger(__name__)


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
        self.reference = self._reference() if config.kl_coef > 0 else None
        self._push_pending = False
        self._unacked: list[str] = []
        self._lock = asyncio.Lock()

    # -- state -------------------------------------------------------------------------
    def _build(self, path: Path, optimizer_state: dict[str, Any] | None) -> tuple[Any, torch.optim.Optimizer]:
        model = _load_policy(path)
        c = self.config
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        return model, optimizer

    def _reference(self) -> Any:
        """The frozen base policy of the KL penalty (loaded once; never trained or saved)."""
        return _load_policy(self.model_dir).requires_grad_(False)

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

        Brings the engine to the trainer's weights first (and un-pauses it: a trainer
        killed between pause and continue leaves it paused); a failed step is logged and
        retried after ``poll_s``, until ``max_consecutive_failures`` in a row (then raises).
        """
        done = failures = 0
        if self.engine is not None and self.config.push in ("in_place", "retract"):
            with contextlib.suppress(EngineError):  # a trainer that died mid-push left it paused
                await self.engine.continue_generation()
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
                keep, skip, defer = self._select(drained, items)
                if skip:
                    self.journal.ack([s.sample_id for s in skip])
                    skipped += len(skip)
                if defer:
                    self.journal.nack([s.sample_id for s in defer])
                items += keep
                if len(items) >= c.batch_size or (stop is not None and stop.is_set()):
                    break
                if skip and not defer:
                    continue  # skipped samples are not "none arrived": drain on (each skip is acknowledged)
                if loop.time() >= deadline:
                    break
                if not drained or defer:
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

    def rules(self) -> SelectionRules:
        """This trainer's selection rules (``selection.py``; the slime path applies the same ones).
        Its weight version resumes from its checkpoints: every start is one lineage."""
        c = self.config
        bound = c.staleness.max_staleness if c.staleness.action == "drop" else None
        return SelectionRules.for_method(c.method, max_staleness=bound, topk=c.method == "opd_topk",
                                         vocab_size=int(self.model.config.vocab_size))

    def _select(
        self, samples: Sequence[TrainingSample], taken: Sequence[TrainItem] = ()
    ) -> tuple[list[TrainItem], list[TrainingSample], list[TrainingSample]]:
        decided = select(samples, self.rules(), trainer_version=self.weight_version,
                         taken=[item.sample for item in taken])
        for sample, reason in decided.skip:
            log.info("skipping sample %s: %s", sample.sample_id, reason)
        keep = [prepare(sample, self.config, self.weight_version) for sample in decided.keep]
        return keep, [s for s, _ in decided.skip], decided.defer

    # -- training (worker thread) ------------------------------------------------------
    def _train_and_save(self, items: list[TrainItem]) -> tuple[float, dict[str, float]]:
        torch.set_num_threads(self.config.threads)  # this thread only (OpenMP setting)
        started = time.monotonic()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            loss, stats = batch_gradients(self.model, items, self.config, reference=self.reference)
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


def _load_policy(path: Path) -> Any:
    """The policy at ``path``, float32, in eval mode (no dropout: its log-probs must be the engine's)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


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
