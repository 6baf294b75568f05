"""The embedded loop of ``slime-openclaw demo``: engine, live service, trainer and users in one run.

``run_demo(settings, on_progress)`` prepares the tiny policy (cached), starts the embedded
engine as a child process (serving the newest complete checkpoint of the work directory,
else the prepared policy), runs the live service (gateway + signal workers: rule judges,
correction hints, the policy engine as teacher) and the local trainer in one event loop,
and drives the simulated users through the gateway: a "before" evaluation round (train
off, fixed seeds), training rounds with an evaluation round after each (the learning
curve), then, with the trainer stopped, the "after" evaluation. Everything is stopped in
``finally`` blocks; the engine child by its pid.

Resume: the journal (``journal.sqlite``), the checkpoints (``checkpoints/``) and the demo's
own progress (``progress.json``, written atomically after every interaction) live in the
work directory, so a demo killed at any point continues where it stopped: the trainer
resumes from its last complete checkpoint, the engine serves it, the interaction count and
the curve continue. Sessions of a restarted run get a new prefix so no session id repeats.

This module orchestrates; it does not format or print (report.py, command.py); the journal's
figures and the clean-up after a stopped run are run_journal.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.journal.base import JournalStore
from slime_openclaw.local.demo.run_journal import end_dead_run, journal_figures, release_leases, settle
from slime_openclaw.local.personal.personas import Persona, default_personas
from slime_openclaw.local.personal.pretrain import PretrainRecipe, prepare_policy
from slime_openclaw.local.personal.users import InteractionRecord, UserSettings, run_users
from slime_openclaw.local.training.methods import METHODS

if TYPE_CHECKING:
    from slime_openclaw.local.training.trainer import LocalTrainer, TrainerConfig
    from slime_openclaw.local.training.weight_sync import EngineAdmin

PROGRESS_FILE = "progress.json"
JOURNAL_FILE = "journal.sqlite"
CHECKPOINTS = "checkpoints"
METHOD_CHOICES = METHODS
TOPK = 8
"""Teacher top-K of ``opd_topk``."""
SETTLE_TIMEOUT_S = 30.0
"""How long the end of the run waits for the signal workers to judge the last turns."""


@dataclass(frozen=True)
class DemoSettings:
    """What one demo run does (the CLI's flags)."""

    workdir: Path
    method: str = "combine"
    interactions: int = 180
    """Training interactions (simulated sessions recorded and trained on)."""
    users: int = 4
    """Simulated users talking to the gateway at the same time."""
    seed: int = 0
    eval_per_persona: int = 16
    """Evaluation sessions per persona in each evaluation round."""
    eval_every: int = 30
    """Training interactions between evaluation rounds (the curve's resolution)."""
    batch_size: int = 8
    lr: float = 2e-4
    max_tokens: int = 48
    recipe: PretrainRecipe = PretrainRecipe()
    policy_dir: Path | None = None
    """Serve and train this prepared policy instead of the cached one."""
    prepare_threads: int = 2


@dataclass
class DemoState:
    """The demo's persisted progress (``progress.json``)."""

    method: str
    seed: int
    interactions_done: int = 0
    restarts: int = 0
    score_before: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    """Evaluation points: interactions, train_steps, weight_version, score, per persona."""
    train_scores: list[float] = field(default_factory=list)
    """First-response score of each training interaction, in completion order."""
    requests_served: int = 0
    requests_failed: int = 0
    elapsed_s: float = 0.0
    """Seconds spent in earlier (killed or finished) runs of this work directory."""
    finished: bool = False
    """The "after" evaluation ran: the run is complete."""

    @classmethod
    def load(cls, path: Path, method: str, seed: int) -> DemoState:
        """The saved progress, or a fresh one; refuses a work directory of another method/seed."""
        if not path.is_file():
            return cls(method=method, seed=seed)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("method") != method or data.get("seed") != seed:
            from slime_openclaw.errors import ConfigError

            raise ConfigError(f"{path.parent} holds a {data.get('method')} run with seed {data.get('seed')}; "
                              "pass --fresh or another --workdir")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, fsync, rename)."""
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(dataclasses.asdict(self), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


@dataclass
class Live:
    """What the progress display reads while the demo runs."""

    phase: str = "starting"
    total: int = 0
    state: DemoState | None = None
    train_steps: int = 0
    weight_version: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def current_score(self) -> float | None:
        """Mean first-response score of the last 30 training interactions."""
        scores = self.state.train_scores[-30:] if self.state else []
        return sum(scores) / len(scores) if scores else None


ProgressCallback = Callable[[Live], None]


def openclaw_config(settings: DemoSettings) -> OpenClawConfig:
    """The run's ``openclaw_*`` config: the method, the journal, rule judges, the policy as teacher."""
    values: dict[str, Any] = {
        "openclaw_method": "opd" if settings.method == "opd_topk" else settings.method,
        "openclaw_journal_path": str(settings.workdir / JOURNAL_FILE),
        "openclaw_gateway_session_ttl_s": 120.0,
    }
    if settings.method == "opd_topk":
        values.update(openclaw_teacher_topk=TOPK, openclaw_teacher_topk_dir=str(settings.workdir / "topk"))
    return OpenClawConfig.from_mapping(values)


def eval_personas() -> tuple[Persona, ...]:
    """The personas for evaluation: one reply each (the first reply is what is scored)."""
    return tuple(dataclasses.replace(p, max_attempts=1) for p in default_personas())  # type: ignore[type-var]


def latest_checkpoint_dir(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``."""
    from slime_openclaw.local.training.checkpoint import complete_checkpoints

    found = complete_checkpoints(root)
    return found[-1][1] if found else None


async def evaluate(url: str, settings: DemoSettings, round_name: str) -> tuple[float, dict[str, float], int, int]:
    """One evaluation round (train off, fixed seeds): mean score, per persona, requests ok/failed."""
    from slime_openclaw.local.personal.users import mean_scores

    personas = eval_personas()
    user = UserSettings(train=False, max_tokens=settings.max_tokens, session_prefix=f"eval-{round_name}")
    records = await run_users(url, personas, settings.eval_per_persona * len(personas), seed=settings.seed + 7919,
                              concurrency=settings.users, settings=user)
    per_persona = mean_scores(records)
    scored = [r.first_score for r in records if r.replies]
    mean = sum(scored) / len(scored) if scored else 0.0
    return mean, per_persona, sum(r.requests_ok for r in records), sum(r.requests_failed for r in records)


class _Runner:
    """One run of the demo over a work directory (see the module docstring)."""

    def __init__(self, settings: DemoSettings, on_progress: ProgressCallback | None) -> None:
        self.settings = settings
        self.on_progress = on_progress or (lambda _live: None)
        self.progress_path = settings.workdir / PROGRESS_FILE
        self.state = DemoState.load(self.progress_path, settings.method, settings.seed)
        self.live = Live(total=settings.interactions, state=self.state)
        self.trainer: LocalTrainer | None = None

    def _tick(self, phase: str | None = None) -> None:
        if phase is not None:
            self.live.phase = phase
        if self.trainer is not None:
            self.live.train_steps, self.live.weight_version = self.trainer.step_count, self.trainer.weight_version
        self.on_progress(self.live)

    def _on_interaction(self, record: InteractionRecord) -> None:
        self.state.interactions_done += 1
        self.state.requests_served += record.requests_ok
        self.state.requests_failed += record.requests_failed
        if record.replies:
            self.state.train_scores.append(record.first_score)
        self.state.save(self.progress_path)
        self._tick()

    async def _eval_point(self, url: str, name: str) -> float:
        self._tick(f"evaluating ({name})")
        score, per_persona, ok, failed = await evaluate(url, self.settings, f"r{self.state.restarts}-{name}")
        self.state.requests_served += ok
        self.state.requests_failed += failed
        self._tick()
        self.state.curve.append({"interactions": self.state.interactions_done, "train_steps": self.live.train_steps,
                                 "weight_version": self.live.weight_version, "score": score,
                                 "per_persona": per_persona, "label": name})
        self.state.save(self.progress_path)
        return score

    async def run(self, policy: Path) -> dict[str, Any]:
        from slime_openclaw.engine.child import embedded_engine
        from slime_openclaw.journal.location import open_journal
        from slime_openclaw.live import live_service
        from slime_openclaw.local.training.trainer import TrainerConfig

        s = self.settings
        restarted = self.progress_path.exists()
        self.state.restarts += restarted
        self.state.save(self.progress_path)  # the session prefix of this run must never repeat
        config = openclaw_config(s)
        ckpt_root = s.workdir / CHECKPOINTS
        journal = open_journal(settings=config.journal)
        if restarted:  # the stopped process's sessions and claims: ended now, not after their TTLs
            end_dead_run(journal)
        stop = asyncio.Event()
        trainer_task: asyncio.Task[int] | None = None
        warming: asyncio.Future[None] | None = None
        try:
            trainer_config = TrainerConfig.from_openclaw(
                config, str(ckpt_root), batch_size=s.batch_size, lr=s.lr, wait_s=5.0, threads=1)
            serve_dir = latest_checkpoint_dir(ckpt_root) or policy
            self._tick("starting the engine")
            executor = asyncio.get_running_loop().run_in_executor
            warming = executor(None, _import_trainer)  # overlaps the engine's start-up
            with embedded_engine(serve_dir, max_running=16) as engine_url:  # blocks while the trainer's imports load
                async with EngineClient(engine_url) as engine, \
                        live_service(config, engine_url=engine_url, tokenizer_dir=policy, journal=journal,
                                     port=0, poll_interval_s=0.1) as service:
                    await warming
                    self.trainer = await executor(None, load_trainer, policy, journal, engine, trainer_config)
                    if restarted:
                        release_leases(journal, trainer_config.consumer)
                    trainer_task = asyncio.create_task(self.trainer.run(stop))
                    if self.state.score_before is None:
                        self.state.score_before = await self._eval_point(service.url, "before")
                    await self._train(service.url)
                    self._tick("settling")
                    await settle(journal, SETTLE_TIMEOUT_S)
                    stop.set()
                    await trainer_task
                    await self.trainer.sync_engine()
                    after = await self._eval_point(service.url, "after")
                    self.state.finished = True
                    served_version = await engine.weight_version()
            self._tick("done")
            return self._summary(after, served_version, journal)
        finally:
            stop.set()
            if trainer_task is not None and not trainer_task.done():
                trainer_task.cancel()
            if trainer_task is not None:
                await asyncio.gather(trainer_task, return_exceptions=True)
            if warming is not None:  # an engine that failed to start leaves the imports running
                await asyncio.gather(warming, return_exceptions=True)
            self.state.elapsed_s += time.monotonic() - self.live.started
            self.state.save(self.progress_path)
            journal.close()

    async def _train(self, url: str) -> None:
        s = self.settings
        user = UserSettings(train=True, max_tokens=s.max_tokens, session_prefix=f"sim-r{self.state.restarts}")
        done = self.state.interactions_done
        if s.eval_every > 0 and 0 < done < s.interactions and done % s.eval_every == 0 \
                and not any(p["interactions"] == done for p in self.state.curve):
            await self._eval_point(url, f"i{done}")  # the round a stopped run did not finish
        while self.state.interactions_done < s.interactions:
            done = self.state.interactions_done
            to_eval = s.eval_every - done % s.eval_every if s.eval_every > 0 else s.interactions - done
            count = min(to_eval, s.interactions - done)
            self._tick("training")
            await run_users(url, default_personas(), count, seed=s.seed, concurrency=s.users,
                            on_interaction=self._on_interaction, settings=user, start_index=done)
            if self.state.interactions_done < s.interactions and s.eval_every > 0 \
                    and self.state.interactions_done % s.eval_every == 0:
                await self._eval_point(url, f"i{self.state.interactions_done}")

    def _summary(self, after: float, served_version: int, journal: JournalStore) -> dict[str, Any]:
        figures = journal_figures(journal)
        summary: dict[str, Any] = {
            "method": self.settings.method,
            "score_before": self.state.score_before,
            "score_after": after,
            "interactions": self.state.interactions_done,
            "train_steps": self.trainer.step_count if self.trainer is not None else 0,
            "weight_version": served_version,
            "requests_served": self.state.requests_served,
            "requests_failed": self.state.requests_failed,
            **figures,
            "seed": self.settings.seed,
            "restarts": self.state.restarts,
            "elapsed_s": round(self.state.elapsed_s + time.monotonic() - self.live.started, 1),
            "curve": self.state.curve,
        }
        return summary


def _import_trainer() -> None:
    """Import the trainer's heavy dependencies (torch, transformers) ahead of its construction."""
    from transformers import AutoModelForCausalLM  # noqa: F401

    from slime_openclaw.local.training import trainer  # noqa: F401


def load_trainer(policy: Path, journal: JournalStore, engine: EngineAdmin | None, config: TrainerConfig
                 ) -> LocalTrainer:
    """The local trainer of ``policy`` pushing into ``engine``, at its newest checkpoint (blocking)."""
    from slime_openclaw.local.training.trainer import LocalTrainer

    trainer = LocalTrainer(policy, journal, engine, config)
    trainer.resume()
    return trainer


def prepare(settings: DemoSettings, progress: Callable[[int, float], None] | None = None) -> Path:
    """The policy to serve and train: ``settings.policy_dir`` or the cached prepared one."""
    if settings.policy_dir is not None:
        return settings.policy_dir
    return prepare_policy(seed=0, recipe=settings.recipe, threads=settings.prepare_threads, progress=progress)


async def run_demo(settings: DemoSettings, policy: Path, on_progress: ProgressCallback | None = None
                   ) -> dict[str, Any]:
    """Run (or continue) the demo in ``settings.workdir``; returns the summary (see demo.py)."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    return await _Runner(settings, on_progress).run(policy)


def seeds_list(text: str) -> Sequence[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (benchmark and CLI helper)."""
    return [int(part) for part in text.split(",") if part.strip()]

