"""Pause/continue, abort and weight updates of the embedded engine, over its real HTTP API.

Each test gets its own runtime (loading the tiny checkpoint again takes ~50 ms), because
these tests change the engine's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)
from safetensors.torch import load_file, save_file

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import GenerateDelta, GenerateRequest, SamplingParams
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.errors import EngineError
from slime_openclaw.types import FinishReason
from tests.waiting import eventually

PROMPT = (11, 22, 33, 44, 55)


@pytest.fixture
def engine(tiny_model_path: Path) -> Iterator[tuple[Runtime, str]]:  # noqa: F811
    with Runtime.load(tiny_model_path, max_running=4) as runtime, ServerThread(runtime) as url:
        yield runtime, url


def request(max_new: int, *, seed: int = 1, rid: str | None = None) -> GenerateRequest:
    sampling = SamplingParams(temperature=0.9, max_new_tokens=max_new, sampling_seed=seed, ignore_eos=True)
    return GenerateRequest(input_ids=PROMPT, sampling=sampling, rid=rid)


async def collect_after(client: EngineClient, req: GenerateRequest, n: int, on_n: Any) -> list[GenerateDelta]:
    """Stream ``req``; after ``n`` deltas await ``on_n()`` (while the stream stays open)."""
    deltas: list[GenerateDelta] = []
    async for delta in client.stream(req):
        deltas.append(delta)
        if len(deltas) == n:
            await on_n()
    return deltas


async def test_pause_abort_ends_in_flight_and_holds_new_requests(engine: tuple[Runtime, str]) -> None:
    runtime, url = engine
    async with EngineClient(url) as client:
        deltas = await collect_after(client, request(400), 3, lambda: client.pause_generation("abort"))
        assert deltas[-1].finish_reason is FinishReason.ABORT
        assert 3 <= sum(len(d.output_ids) for d in deltas) < 400  # the tokens so far came back
        waiting = asyncio.create_task(client.generate(request(4)))
        await eventually(lambda: runtime.load_info()["num_waiting_reqs"] == 1, "the new request held by the engine")
        assert not waiting.done()  # a request arriving while paused waits, it does not fail
        await client.continue_generation()
        out = await asyncio.wait_for(waiting, 10)
    assert out.finish_reason is FinishReason.LENGTH and len(out.output_ids) == 4


@pytest.mark.parametrize("mode", ["in_place", "retract"])
async def test_pause_holds_and_continue_completes(engine: tuple[Runtime, str], mode: str) -> None:
    runtime, url = engine
    async with EngineClient(url) as client:
        baseline = await client.generate(request(20))
        held: list[int] = []

        async def pause_then_continue() -> None:
            await client.pause_generation(mode)
            held.append(runtime.load_info()["num_running_reqs"])
            await asyncio.sleep(0.3)
            await client.continue_generation()

        deltas = await collect_after(client, request(20), 4, pause_then_continue)
    assert held == [1]
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert sum((d.output_ids for d in deltas), ()) == baseline.output_ids  # same seed, same tokens
    assert sum((d.output_log_probs for d in deltas), ()) == pytest.approx(baseline.output_log_probs, abs=1e-4)


async def test_in_place_pause_freezes_progress(engine: tuple[Runtime, str]) -> None:
    _, url = engine
    async with EngineClient(url) as client:
        seen: list[GenerateDelta] = []

        async def consume() -> None:
            async for delta in client.stream(request(60)):
                seen.append(delta)

        task = asyncio.create_task(consume())
        await eventually(lambda: len(seen) >= 2 or task.done(), "two deltas streamed")
        await client.pause_generation("in_place")
        frozen = len(seen)
        await asyncio.sleep(0.4)
        assert len(seen) <= frozen + 1  # at most one chunk already on the wire
        await client.continue_generation()
        await asyncio.wait_for(task, 20)
    assert seen[-1].finish_reason is FinishReason.LENGTH and sum(len(d.output_ids) for d in seen) == 60


def perturbed_checkpoint(source: Path, dest: Path) -> Path:
    """A copy of the checkpoint's weights with every tensor scaled: same names and shapes."""
    dest.mkdir()
    state = {name: tensor * 1.5 for name, tensor in load_file(str(source / "model.safetensors")).items()}
    save_file(state, str(dest / "model.safetensors"))
    return dest


async def test_update_weights_from_disk(engine: tuple[Runtime, str], tiny_model_path: Path, tmp_path: Path) -> None:  # noqa: F811
    _, url = engine
    greedy = GenerateRequest(input_ids=PROMPT, sampling=SamplingParams(temperature=0.0, max_new_tokens=6))
    new_dir = perturbed_checkpoint(tiny_model_path, tmp_path / "new")
    async with EngineClient(url) as client:
        before = await client.generate(greedy)
        message = await client.update_weights_from_disk(str(new_dir), weight_version=7)
        assert "7" in message and await client.weight_version() == 7
        after = await client.generate(greedy)
        assert after.weight_version == 7
        assert after.output_log_probs != pytest.approx(before.output_log_probs, abs=1e-3)
        await client.update_weights_from_disk(str(tiny_model_path))  # no version given: incremented
        assert await client.weight_version() == 8
        restored = await client.generate(greedy)
        assert restored.output_ids == before.output_ids
        assert restored.output_log_probs == pytest.approx(before.output_log_probs, abs=1e-5)
        with pytest.raises(EngineError, match="no .safetensors"):
            await client.update_weights_from_disk(str(tmp_path))
    assert await EngineClient(url).weight_version() == 8


async def test_in_process_update_labels_tokens_with_versions(engine: tuple[Runtime, str]) -> None:
    runtime, url = engine
    original = {name: t.clone() for name, t in runtime.model.state_dict().items()}

    async def update_while_held() -> None:
        await client.pause_generation("in_place")
        new_state = {name: t * 1.5 for name, t in original.items()}
        version = await asyncio.to_thread(runtime.update_weights, new_state)
        assert version == 1
        await client.continue_generation()

    async with EngineClient(url) as client:
        # long enough that the engine cannot finish it before the third delta is read (8 tokens
        # could all be generated while a loaded machine kept the reader waiting)
        deltas = await collect_after(client, request(200), 3, update_while_held)
    versions = [d.weight_version for d in deltas]
    assert versions[:3] == [0, 0, 0] and versions[-1] == 1 and sorted(versions) == versions
    with pytest.raises(ValueError, match="unknown parameter"):
        runtime.update_weights({"not.a.param": torch.zeros(1)})
    assert runtime.weight_version == 1
    assert torch.equal(runtime.model.state_dict()["model.norm.weight"], original["model.norm.weight"] * 1.5)


async def test_client_leaving_a_stream_aborts_its_request(engine: tuple[Runtime, str]) -> None:
    runtime, url = engine
    async with EngineClient(url) as client:
        stream = client.stream(request(3000))
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(40):  # well before 3000 tokens could finish
            if runtime.load_info()["num_running_reqs"] == 0:
                break
            await asyncio.sleep(0.05)
    assert runtime.load_info() == {"num_running_reqs": 0, "num_waiting_reqs": 0}
