"""The embedded engine end to end: real tiny model, real aiohttp server on 127.0.0.1, real client.

Log-probs are checked against an independent forward pass of the same checkpoint under
the shared convention ``log_softmax(logits / T)`` (``T = 1`` when greedy).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch
from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import GenerateRequest, SamplingParams
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.errors import EngineError
from slime_openclaw.types import FinishReason
from tests.waiting import eventually

PROMPT = (5, 17, 250, 33, 1024, 7, 99, 412)
TOL = 1e-4


@pytest.fixture(scope="module")
def engine(tiny_model_path: Path) -> Iterator[tuple[Runtime, str]]:  # noqa: F811
    with Runtime.load(tiny_model_path, max_running=8) as runtime, ServerThread(runtime) as url:
        yield runtime, url


@pytest.fixture(scope="module")
def engine_url(engine: tuple[Runtime, str]) -> str:
    return engine[1]


@pytest.fixture(scope="module")
def reference(tiny_model_path: Path) -> Any:  # noqa: F811
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


def forward_log_probs(model: Any, tokens: list[int], temperature: float) -> torch.Tensor:
    """Row ``i`` is the convention distribution of token ``i + 1`` given ``tokens[: i + 1]``."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].float()
    return torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)


def request(max_new: int = 6, temperature: float = 0.8, seed: int | None = 3, **kw: Any) -> GenerateRequest:
    sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new, sampling_seed=seed, ignore_eos=True)
    return GenerateRequest(input_ids=PROMPT, sampling=sampling, **kw)


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.3])
async def test_output_log_probs_equal_forward_pass(engine_url: str, reference: Any, temperature: float) -> None:
    async with EngineClient(engine_url) as client:
        out = await client.generate(request(temperature=temperature))
    assert len(out.output_ids) == 6 and out.finish_reason is FinishReason.LENGTH
    assert out.prompt_tokens == len(PROMPT) and out.weight_version == 0
    tokens = list(PROMPT) + list(out.output_ids)
    logp = forward_log_probs(reference, tokens, temperature)
    for i, (token, got) in enumerate(zip(out.output_ids, out.output_log_probs, strict=True)):
        row = logp[len(PROMPT) - 1 + i]
        assert got == pytest.approx(float(row[token]), abs=TOL)
        if temperature == 0.0:
            assert token == int(torch.argmax(row))


async def test_repetition_penalty_and_min_p_are_honoured(engine_url: str, reference: Any) -> None:
    penalty = 1.7
    sampling = SamplingParams(temperature=0.9, max_new_tokens=8, sampling_seed=5, ignore_eos=True,
                              repetition_penalty=penalty, min_p=0.05, top_k=40)
    async with EngineClient(engine_url) as client:
        out = await client.generate(GenerateRequest(input_ids=PROMPT, sampling=sampling))
    tokens = list(PROMPT) + list(out.output_ids)
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor([tokens])).logits[0].float()
    for i, (token, got) in enumerate(zip(out.output_ids, out.output_log_probs, strict=True)):
        row = logits[len(PROMPT) - 1 + i].clone()
        seen = torch.tensor(sorted(set(out.output_ids[:i])), dtype=torch.long)
        if len(seen):  # SGLang's penalty: tokens generated so far, before the log-probs are taken
            row[seen] = torch.where(row[seen] > 0, row[seen] / penalty, row[seen] * penalty)
        logp = torch.log_softmax(row / 0.9, dim=-1)
        assert got == pytest.approx(float(logp[token]), abs=TOL)
        assert float(logp[token]) >= float(logp.max()) + math.log(0.05) - TOL  # min_p kept it
        assert int((logp > logp[token]).sum()) < 40  # top_k kept it


async def test_stream_deltas_concatenate_to_generate(engine_url: str) -> None:
    async with EngineClient(engine_url) as client:
        whole = await client.generate(request(max_new=7))
        deltas = [d async for d in client.stream(request(max_new=7))]
    assert len(deltas) == 7  # one chunk per token
    assert all(d.finish_reason is None for d in deltas[:-1]) and deltas[-1].finish_reason is FinishReason.LENGTH
    assert sum((d.output_ids for d in deltas), ()) == whole.output_ids
    streamed = sum((d.output_log_probs for d in deltas), ())
    assert streamed == pytest.approx(whole.output_log_probs, abs=1e-6)


async def test_unseeded_sampling_differs_between_requests(engine_url: str) -> None:
    async with EngineClient(engine_url) as client:
        outs = await asyncio.gather(*(client.generate(request(max_new=8, temperature=1.5, seed=None)) for _ in range(3)))
    assert len({o.output_ids for o in outs}) > 1


async def test_batched_decoding_equals_decoding_alone(engine_url: str) -> None:
    """Concurrent requests of different lengths share forward passes (left-padded caches)."""
    requests = [
        GenerateRequest(
            input_ids=PROMPT[: 2 + 2 * i],
            sampling=SamplingParams(temperature=0.9, max_new_tokens=6 + i, sampling_seed=i, ignore_eos=True),
        )
        for i in range(4)
    ]
    async with EngineClient(engine_url) as client:
        alone = [await client.generate(r) for r in requests]
        together = await asyncio.gather(*(client.generate(r) for r in requests))
    for a, b in zip(alone, together, strict=True):
        assert b.output_ids == a.output_ids
        assert b.output_log_probs == pytest.approx(a.output_log_probs, abs=TOL)


@pytest.mark.parametrize("start", [0, 3])
async def test_scoring_aligns_like_sglang(engine_url: str, reference: Any, start: int) -> None:
    """max_new_tokens=0 scores the input: entry 0 (token ``start``) is None, entry j >= 1 is
    log p(input[start + j] | input[: start + j]), i.e. row ``start + j - 1`` of the forward pass."""
    scored = GenerateRequest(
        input_ids=PROMPT, sampling=SamplingParams(temperature=0.7, max_new_tokens=0), logprob_start_len=start,
        top_logprobs_num=2,
    )
    async with EngineClient(engine_url) as client:
        out = await client.generate(scored)
    assert out.output_ids == () and out.finish_reason is FinishReason.LENGTH
    assert len(out.input_log_probs) == len(PROMPT) - start and out.input_log_probs[0] is None
    logp = forward_log_probs(reference, list(PROMPT), 0.7)
    for j in range(1, len(PROMPT) - start):
        expected = float(logp[start + j - 1, PROMPT[start + j]])
        assert out.input_log_probs[j] == pytest.approx(expected, abs=TOL)
    assert out.input_top_logprobs[0] is None and len(out.input_top_logprobs) == len(PROMPT) - start
    top = out.input_top_logprobs[1]
    assert top is not None
    values, ids = torch.topk(logp[start], 2)
    assert [t for _, t in top] == ids.tolist()
    assert [v for v, _ in top] == pytest.approx(values.tolist(), abs=TOL)


async def test_scoring_matches_generation_log_probs(engine_url: str) -> None:
    """Scoring prompt + response reproduces the response's behaviour log-probs (the teacher path)."""
    async with EngineClient(engine_url) as client:
        out = await client.generate(request(max_new=5))
        tokens = PROMPT + out.output_ids
        scored = await client.generate(
            GenerateRequest(input_ids=tokens, sampling=SamplingParams(temperature=0.8, max_new_tokens=0),
                            logprob_start_len=len(PROMPT) - 1)
        )
    assert scored.input_log_probs[1:] == pytest.approx(out.output_log_probs, abs=TOL)


async def test_output_top_logprobs(engine_url: str, reference: Any) -> None:
    async with EngineClient(engine_url) as client:
        out = await client.generate(request(max_new=3, temperature=0.0, top_logprobs_num=4))
    logp = forward_log_probs(reference, list(PROMPT + out.output_ids), 1.0)
    assert len(out.output_top_logprobs) == 3
    for i, top in enumerate(out.output_top_logprobs):
        values, ids = torch.topk(logp[len(PROMPT) - 1 + i], 4)
        assert [t for _, t in top] == ids.tolist()
        assert [v for v, _ in top] == pytest.approx(values.tolist(), abs=TOL)
        assert top[0][1] == out.output_ids[i]  # greedy picks the top token


async def test_stop_token_ids_and_stop_strings(engine_url: str) -> None:
    async with EngineClient(engine_url) as client:
        free = await client.generate(request(max_new=8, temperature=0.0))
        stop_at = free.output_ids[3]
        first = free.output_ids.index(stop_at)
        sampling = SamplingParams(temperature=0.0, max_new_tokens=8, stop_token_ids=(stop_at,))
        stopped = await client.generate(GenerateRequest(input_ids=PROMPT, sampling=sampling))
        assert stopped.output_ids == free.output_ids[: first + 1]  # the stop token is kept
        assert stopped.finish_reason is FinishReason.STOP
        stop_text = free.text[len(free.text) // 2 : len(free.text) // 2 + 2]
        sampling = SamplingParams(temperature=0.0, max_new_tokens=8, stop=(stop_text,), no_stop_trim=False)
        by_text = await client.generate(GenerateRequest(input_ids=PROMPT, sampling=sampling))
    assert by_text.finish_reason is FinishReason.STOP
    assert by_text.output_ids == free.output_ids[: len(by_text.output_ids)]
    assert stop_text not in by_text.text and free.text.startswith(by_text.text)


async def test_long_request_does_not_block_short_one(engine: tuple[Runtime, str]) -> None:
    runtime, engine_url = engine
    finished: list[str] = []
    async with EngineClient(engine_url) as client:

        async def run(name: str, max_new: int) -> None:
            await client.generate(request(max_new=max_new))
            finished.append(name)

        before = runtime.last_token_time
        long_task = asyncio.create_task(run("long", 150))
        await eventually(lambda: runtime.load_info()["num_running_reqs"] == 1 and runtime.last_token_time > before,
                         "the long request is decoding")
        await run("short", 3)
        assert finished == ["short"]
        await long_task
    assert finished == ["short", "long"]


async def test_abort_request_by_rid(engine_url: str) -> None:
    async with EngineClient(engine_url) as client:
        got: list[Any] = []
        async for delta in client.stream(request(max_new=500, rid="abort-me")):
            got.append(delta)
            if len(got) == 3:
                await client.abort_request("abort-me")
    assert got[-1].finish_reason is FinishReason.ABORT
    assert 3 <= sum(len(d.output_ids) for d in got) < 500


async def test_bad_requests_get_400(engine_url: str) -> None:
    bad_bodies: list[Any] = [
        {"text": "hello"},
        {"input_ids": [1, 2], "temperature": 1.0},
        {"input_ids": [1, 2], "sampling_params": {"n": 2}},
        {"input_ids": [[1, 2], [3]]},
        {"input_ids": []},
        {"input_ids": [1, 10**9]},
        {"input_ids": [1, 2], "sampling_params": {"max_new_tokens": -1}},
        {"input_ids": [1, 2], "sampling_params": {"top_p": 0}},
        {"input_ids": [1, 2], "sampling_params": {"min_p": 1.5}},
        {"input_ids": [1, 2], "sampling_params": {"repetition_penalty": 0}},
        {"input_ids": [1, 2], "logprob_start_len": 2},
        {"input_ids": [1, 2], "stream": "yes"},
    ]
    async with aiohttp.ClientSession() as session:
        for body in bad_bodies:
            async with session.post(engine_url + "/generate", json=body) as response:
                assert response.status == 400, body
                assert (await response.json())["error"]["message"]
        async with session.post(engine_url + "/generate", data=b"{not json") as response:
            assert response.status == 400
        async with session.post(engine_url + "/pause_generation", json={"mode": "sideways"}) as response:
            assert response.status == 400
    async with EngineClient(engine_url) as client:
        with pytest.raises(EngineError, match="outside the vocabulary"):
            await client.generate(GenerateRequest(input_ids=(1, 10**9)))


async def test_info_endpoints(engine_url: str) -> None:
    async with EngineClient(engine_url) as client:
        assert await client.health()
        assert await client.weight_version() == 0
        assert await client.flush_cache()
        info = await client.model_info()
    assert info["is_generation"] is True and info["weight_version"] == "0"
    async with aiohttp.ClientSession() as session, session.get(engine_url + "/health_generate") as response:
        assert response.status == 200
