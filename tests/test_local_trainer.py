"""The local trainer against real parts: the tiny model, the embedded engine over HTTP on
127.0.0.1, a SQLite journal filled with samples whose tokens and rollout log-probs come
from the engine itself, and checkpoints on disk.

Each test gets its own engine runtime (its weights change). Learning rates are large so
one step moves log-probs visibly; batches and sequences are short to keep this fast.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import GenerateDelta, GenerateRequest, SamplingParams
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.errors import JournalError
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.training.checkpoint import STATE_FILE, latest_checkpoint
from slime_openclaw.local.training.trainer import LocalTrainer, TrainerConfig
from slime_openclaw.local.training.trainer_objective import batch_gradients, prepare, response_log_probs
from slime_openclaw.types import (
    FinishReason,
    Method,
    NextState,
    NextStateKind,
    TrainingSample,
    Turn,
    TurnType,
    Verdict,
)
from tests.waiting import eventually

RESPONSE_TOKENS = 6
TOPK = 4


@dataclass
class Engine:
    runtime: Runtime
    url: str


@pytest.fixture
def engine(tiny_model_path: Path) -> Iterator[Engine]:  # noqa: F811
    with Runtime.load(tiny_model_path, max_running=4) as runtime, ServerThread(runtime) as url:
        yield Engine(runtime, url)


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[EngineClient]:
    async with EngineClient(engine.url) as c:
        yield c


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SqliteJournal]:
    j = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        yield j
    finally:
        j.close()


def config(tmp_path: Path, method: str, **overrides: Any) -> TrainerConfig:
    values: dict[str, Any] = {"checkpoint_dir": str(tmp_path / "checkpoints"), "method": method, "batch_size": 4,
                              "wait_s": 0.0, "poll_s": 0.05, "lr": 1e-4}
    values.update(overrides)
    return TrainerConfig(**values)


TeacherFn = Callable[[int, tuple[float, ...]], tuple[float, ...] | None]


async def fill(client: EngineClient, journal: SqliteJournal, n: int, *, method: Method = Method.BINARY,
               reward: float = 1.0, teacher: TeacherFn | None = None, topk: bool = False,
               session: str = "s", first: int = 0, version: int | None = None) -> list[TrainingSample]:
    """Serve ``n`` prompts with the engine and record one READY sample per turn (``version``:
    the weight version recorded instead of the engine's)."""
    samples = []
    for i in range(first, first + n):
        prompt = tuple(range(30 + 7 * i, 42 + 7 * i))
        sampling = SamplingParams(temperature=1.0, max_new_tokens=RESPONSE_TOKENS, sampling_seed=i, ignore_eos=True)
        out = await client.generate(GenerateRequest(prompt, sampling, top_logprobs_num=TOPK if topk else 0))
        versions = (out.weight_version if version is None else version,) * len(out.output_ids)
        turn = Turn(session_id=session, turn_index=i, turn_type=TurnType.MAIN, messages=(), tools=(),
                    prompt_ids=prompt, response_ids=out.output_ids, response_log_probs=out.output_log_probs,
                    weight_versions=versions, finish_reason=out.finish_reason,
                    response_message={"role": "assistant", "content": ""})
        journal.record_turn(turn)
        journal.attach_next_state(turn.key, NextState(NextStateKind.USER, ({"role": "user", "content": "ok"},)))
        top_ids = top_lps = None
        if topk:  # a sharper teacher: the engine's own top-K ids, 0.7 on its first choice
            top_ids = tuple(tuple(tid for _, tid in row) for row in out.output_top_logprobs)
            top_lps = tuple((-0.357,) + (-2.5,) * (len(row) - 1) for row in top_ids)
        sample = TrainingSample(
            session_id=session, turn_index=i, method=method, prompt_ids=prompt, response_ids=out.output_ids,
            loss_mask=(1,) * len(out.output_ids), rollout_log_probs=out.output_log_probs, weight_versions=versions,
            reward=reward, teacher_log_probs=teacher(i, out.output_log_probs) if teacher else None,
            teacher_topk_ids=top_ids, teacher_topk_log_probs=top_lps,
        )
        journal.record_signals(turn.key, Verdict(score=int(reward)), None, [sample])
        samples.append(sample)
    return samples


def log_probs(trainer: LocalTrainer, sample: TrainingSample) -> torch.Tensor:
    """The trainer's current log-probs of a sample's response tokens."""
    with torch.no_grad():
        item = prepare(sample, trainer.config, trainer.weight_version)
        return response_log_probs(trainer.model, item, trainer.config.temperature)[0]


def params(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], model: Any) -> float:
    return max(float((model.state_dict()[k] - v).abs().max()) for k, v in before.items())


class PauseDuringStream:
    """The real engine client; its pause first starts a long stream and waits until the
    stream is mid-flight, so the update provably lands while a client request runs."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.deltas: list[GenerateDelta] = []
        self.stream: asyncio.Task[None] | None = None

    async def _consume(self, started: asyncio.Event) -> None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=160, sampling_seed=7, ignore_eos=True)
        async for delta in self.client.stream(GenerateRequest((5, 6, 7, 8), sampling)):
            self.deltas.append(delta)
            if sum(len(d.output_ids) for d in self.deltas) >= 2:
                started.set()

    async def pause_generation(self, mode: str = "abort") -> None:
        started = asyncio.Event()
        self.stream = asyncio.create_task(self._consume(started))
        await asyncio.wait_for(started.wait(), 30)
        await self.client.pause_generation(mode)

    async def continue_generation(self) -> None:
        await self.client.continue_generation()

    async def update_weights_from_disk(self, path: str, weight_version: int | None = None, *,
                                       abort_all_requests: bool = False) -> str:
        return await self.client.update_weights_from_disk(path, weight_version)

    async def weight_version(self) -> int:
        return await self.client.weight_version()


async def test_binary_step_trains_checkpoints_and_pushes_while_a_stream_runs(
    tmp_path: Path, tiny_model_path: Path, engine: Engine, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    samples = await fill(client, journal, 4, reward=1.0)
    admin = PauseDuringStream(client)
    trainer = LocalTrainer(tiny_model_path, journal, admin, config(tmp_path, "binary"))
    before_lp = [log_probs(trainer, s) for s in samples]
    for lp, s in zip(before_lp, samples, strict=True):  # the trainer's convention is the engine's
        assert torch.allclose(lp, torch.tensor(s.rollout_log_probs), atol=1e-4)
    before = params(trainer.model)

    result = await trainer.step()

    assert result is not None and result.pushed and result.push_error is None
    assert (result.step, result.weight_version) == (1, 1)
    assert set(result.sample_ids) == {f"s:{s.turn_index}:binary" for s in samples}  # the journal's ids
    assert journal.stats().samples_by_state == {"ready": 0, "in_flight": 0, "consumed": 4}
    assert changed(before, trainer.model) > 0
    assert abs(result.stats["ppo_kl"]) < 1e-4 and result.stats["pg_clipfrac"] == 0.0
    assert result.stats["adv_rl_mean"] == 1.0 and result.stats["grad_norm"] > 0
    # positive reward: every rewarded response became more likely
    for lp, s in zip(before_lp, samples, strict=True):
        assert float(log_probs(trainer, s).sum()) > float(lp.sum())
    # the engine serves the new version, and the stream that ran across the update finished cleanly
    assert await client.weight_version() == 1 and engine.runtime.weight_version == 1
    assert admin.stream is not None
    await asyncio.wait_for(admin.stream, 60)
    assert admin.deltas[-1].finish_reason is FinishReason.LENGTH
    assert sum(len(d.output_ids) for d in admin.deltas) == 160
    assert {d.weight_version for d in admin.deltas} == {0, 1}
    # the checkpoint is a servable HF directory, and the engine's new tokens come from it
    checkpoint = Path(result.checkpoint)
    assert latest_checkpoint(tmp_path / "checkpoints") == checkpoint
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", STATE_FILE} <= {
        p.name for p in checkpoint.iterdir()}
    out = await client.generate(GenerateRequest(samples[0].prompt_ids, SamplingParams(max_new_tokens=2)))
    assert out.weight_version == 1


async def test_opd_moves_log_probs_toward_the_teacher(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    def teacher(i: int, rollout: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(lp + (0.8 if (i + t) % 2 else -0.8) for t, lp in enumerate(rollout))

    samples = await fill(client, journal, 4, method=Method.OPD, reward=-1.0, teacher=teacher)
    await fill(client, journal, 1, method=Method.OPD, first=9)  # no teacher: skipped under opd
    trainer = LocalTrainer(tiny_model_path, journal, client, config(tmp_path, "opd", batch_size=5))
    before = [log_probs(trainer, s) for s in samples]

    result = await trainer.step()

    assert result is not None and result.skipped == 1 and len(result.sample_ids) == 4
    assert result.stats["adv_rl_mean"] == 0.0  # opd ignores the reward
    assert journal.stats().samples_by_state["consumed"] == 5
    moved = 0.0
    for s, old in zip(samples, before, strict=True):
        gap = torch.tensor(s.teacher_log_probs or ()) - old
        moved += float((gap * (log_probs(trainer, s) - old)).sum())
    assert moved > 0  # first order: the step moves log-probs along teacher - old
    assert await client.weight_version() == 1


async def test_opd_topk_reduces_the_reverse_kl(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    samples = await fill(client, journal, 4, method=Method.OPD, reward=0.0, topk=True)
    trainer = LocalTrainer(tiny_model_path, journal, client, config(tmp_path, "opd_topk"))

    def kl() -> float:
        items = [prepare(s, trainer.config, trainer.weight_version) for s in samples]
        return batch_gradients(trainer.model, items, trainer.config, backward=False)[1]["topk_reverse_kl"]

    before = kl()
    result = await trainer.step()

    assert result is not None and len(result.sample_ids) == 4
    assert result.stats["topk_reverse_kl"] == pytest.approx(before, rel=1e-5)
    assert kl() < before
    assert await client.weight_version() == 1


async def test_combine_without_teacher_is_exactly_binary(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient  # noqa: F811
) -> None:
    results, models = [], []
    for method, name in ((Method.BINARY, "binary"), (Method.COMBINE, "combine"), (Method.COMBINE, "combine")):
        root = tmp_path / f"{name}-{len(results)}"
        root.mkdir()
        j = SqliteJournal(root / "journal.sqlite")
        try:
            with_teacher = len(results) == 2
            await fill(client, j, 3, method=method, reward=-1.0,
                       teacher=(lambda i, lp: tuple(x + 0.3 for x in lp)) if with_teacher else None)
            trainer = LocalTrainer(tiny_model_path, j, None, config(root, name, push="none"))
            result = await trainer.step()
            assert result is not None and result.pushed
            results.append(result)
            models.append(params(trainer.model))
        finally:
            j.close()
    binary, combine, combine_teacher = results
    assert combine.loss == binary.loss and combine.stats["adv_opd_tokens"] == 0
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    assert combine_teacher.loss != binary.loss  # the comparison can fail
    assert not all(torch.equal(models[0][k], models[2][k]) for k in models[0])


async def test_resume_restores_state_and_consumes_nothing_twice(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    await fill(client, journal, 4, reward=1.0)
    first = LocalTrainer(tiny_model_path, journal, client, config(tmp_path, "combine", batch_size=2, keep_checkpoints=1))
    assert first.resume() is None
    assert (await first.step()) is not None and (await first.step()) is not None
    assert await client.weight_version() == 2
    checkpoints = tmp_path / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["step_00000002"]  # keep_checkpoints=1
    broken = checkpoints / "step_00000003"  # a later, incomplete checkpoint is skipped
    shutil.copytree(checkpoints / "step_00000002", broken)
    (broken / STATE_FILE).unlink()

    second = LocalTrainer(tiny_model_path, journal, client, config(tmp_path, "combine", batch_size=2))
    assert second.resume() == checkpoints / "step_00000002"
    assert (second.step_count, second.weight_version) == (2, 2)
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in first.model.state_dict().items())
    state_a, state_b = first.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert state_a.keys() == state_b.keys() and len(state_a) > 0
    assert all(torch.equal(state_a[i]["exp_avg_sq"], state_b[i]["exp_avg_sq"]) for i in state_a)
    assert await second.step() is None  # nothing is handed out again
    assert journal.stats().samples_by_state == {"ready": 0, "in_flight": 0, "consumed": 4}
    await fill(client, journal, 2, first=4)
    assert await second.run(asyncio.Event(), max_steps=1) == 1
    assert (second.step_count, second.weight_version) == (3, 3) and await client.weight_version() == 3
    assert journal.stats().samples_by_state["consumed"] == 6


async def test_restart_between_checkpoint_and_ack_trains_once_and_resyncs_engine(
    tmp_path: Path, tiny_model_path: Path, engine: Engine, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    await fill(client, journal, 2)

    class AckLost:  # the process "dies" right after its checkpoint: the ack never lands
        def __getattr__(self, name: str) -> Any:
            return getattr(journal, name)

        def ack(self, ids: Any) -> None:
            raise JournalError("killed before the ack")

    crashed = LocalTrainer(tiny_model_path, AckLost(), None, config(tmp_path, "binary", push="none"))  # type: ignore[arg-type]
    with pytest.raises(JournalError):
        await crashed.step()
    assert journal.stats().samples_by_state["in_flight"] == 2
    # a fresh engine (version 0) and trainer: resume acknowledges the trained samples, syncs the engine
    with Runtime.load(tiny_model_path, max_running=2) as runtime, ServerThread(runtime) as url:
        async with EngineClient(url) as fresh:
            restarted = LocalTrainer(tiny_model_path, journal, fresh, config(tmp_path, "binary"))
            assert restarted.resume() is not None and restarted.weight_version == 1
            assert journal.stats().samples_by_state == {"ready": 0, "in_flight": 0, "consumed": 2}
            stop = asyncio.Event()
            stop.set()
            assert await restarted.run(stop) == 0  # run syncs the engine first
            assert await fresh.weight_version() == 1


async def test_failed_step_nacks_and_keeps_the_last_state(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    await fill(client, journal, 3)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    trainer = LocalTrainer(tiny_model_path, journal, client,
                           config(tmp_path, "binary", checkpoint_dir=str(blocker / "checkpoints")))
    before = params(trainer.model)
    with pytest.raises(OSError):
        await trainer.step()
    assert journal.stats().samples_by_state == {"ready": 3, "in_flight": 0, "consumed": 0}
    assert (trainer.step_count, trainer.weight_version) == (0, 0) and changed(before, trainer.model) == 0
    assert await client.weight_version() == 0


async def test_waits_for_a_batch_then_runs_on_fewer(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    trainer = LocalTrainer(tiny_model_path, journal, client,
                           config(tmp_path, "binary", batch_size=3, min_batch=2, wait_s=2.0))
    await fill(client, journal, 1)
    assert await trainer.step() is None  # one of min_batch 2 after the wait: given back
    assert journal.stats().samples_by_state["ready"] == 1

    stepping = asyncio.create_task(trainer.step())
    await eventually(lambda: journal.stats().samples_by_state["in_flight"] == 1,
                     "the trainer holds the first sample and waits for more")
    await fill(client, journal, 1, first=1)  # a second one arrives while it waits
    result = await stepping
    assert result is not None and len(result.sample_ids) == 2


async def test_a_batch_of_skipped_samples_does_not_end_the_step(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    """Drained samples that are all skipped (here: too stale) are not "none arrived": the step
    drains on and trains the fresh ones behind them (before, it returned None and left them)."""
    trainer = LocalTrainer(tiny_model_path, journal, client, config(tmp_path, "binary", batch_size=4))
    await fill(client, journal, 4, version=0)
    await fill(client, journal, 2, first=4, version=10)
    trainer.weight_version = 10  # the first four are 10 versions behind: past max_staleness 4
    result = await trainer.step()
    assert result is not None and len(result.sample_ids) == 2 and result.skipped == 4
    assert all(not sid.startswith(("s:0:", "s:1:", "s:2:", "s:3:")) for sid in result.sample_ids)
    assert journal.stats().samples_by_state == {"ready": 0, "in_flight": 0, "consumed": 6}


async def test_no_staleness_bound_trains_every_sample_of_a_round(
    tmp_path: Path, tiny_model_path: Path, client: EngineClient, journal: SqliteJournal  # noqa: F811
) -> None:
    """agents train's setting (local/agents/loop.py): a round's later mini-batches are not dropped."""
    from slime_openclaw.losses import StalenessPolicy

    trainer = LocalTrainer(tiny_model_path, journal, client,
                           config(tmp_path, "binary", batch_size=4, staleness=StalenessPolicy(max_staleness=None)))
    await fill(client, journal, 4, version=0)
    trainer.weight_version = 10
    result = await trainer.step()
    assert result is not None and len(result.sample_ids) == 4 and result.skipped == 0
