"""EngineClient against SGLang's own wire behaviour and against failures.

A real aiohttp server on 127.0.0.1 replays what SGLang sends by default (cumulative
``output_ids`` and log-probs in every stream chunk, ``weight_version: "default"``), so the
client's cumulative-stream handling is exercised without SGLang installed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from slime_openclaw.engine.client import EngineClient, parse_finish_reason, parse_weight_version
from slime_openclaw.engine.protocol import GenerateRequest, SamplingParams
from slime_openclaw.engine.server import start_site
from slime_openclaw.errors import EngineError
from slime_openclaw.types import FinishReason

TOKENS = [101, 102, 103, 104, 105]
LOGPROBS = [-0.5, -1.0, -1.5, -2.0, -2.5]


def sglang_chunk(n: int, *, finished: bool) -> dict[str, Any]:
    """An SGLang default-mode chunk after ``n`` tokens: cumulative ids and log-probs."""
    meta = {
        "id": "r1",
        "finish_reason": {"type": "length", "length": n} if finished else None,
        "prompt_tokens": 3,
        "weight_version": "default",
        "completion_tokens": n,
        "cached_tokens": 0,
        "output_token_logprobs": [[lp, t, None] for lp, t in zip(LOGPROBS[:n], TOKENS[:n], strict=True)],
        "input_token_logprobs": [[None, 7, None]],
    }
    return {"text": None if not finished else "abcde", "output_ids": TOKENS[:n], "meta_info": meta}


async def fake_generate(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    mode = body["sampling_params"].get("stop", [""])[0] if body["sampling_params"].get("stop") else ""
    if mode == "reject":
        return web.json_response({"error": {"message": "input is too long"}}, status=400)
    if not body["stream"]:
        return web.json_response(sglang_chunk(5, finished=True))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for n in (1, 3, 3, 5):  # uneven steps, one repeated chunk without new tokens
        if mode == "error" and n == 3:
            await response.write(b'data: {"error": {"message": "scheduler crashed"}}\n\n')
            break
        if mode == "truncate" and n == 5:
            break
        await response.write(b"data: " + json.dumps(sglang_chunk(n, finished=n == 5)).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


async def fake_weight_version(request: web.Request) -> web.Response:
    return web.json_response({"weight_version": "12"})


@pytest.fixture
async def fake_sglang() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/generate", fake_generate)
    app.router.add_get("/get_weight_version", fake_weight_version)
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def req(stop: str = "") -> GenerateRequest:
    return GenerateRequest(input_ids=(1, 2, 3), sampling=SamplingParams(max_new_tokens=5, stop=(stop,) if stop else ()))


async def test_cumulative_stream_yields_only_new_tokens(fake_sglang: str) -> None:
    async with EngineClient(fake_sglang) as client:
        deltas = [d async for d in client.stream(req())]
        whole = await client.generate(req())
        assert await client.weight_version() == 12
    assert [d.output_ids for d in deltas] == [(101,), (102, 103), (104, 105)]
    assert sum((d.output_log_probs for d in deltas), ()) == tuple(LOGPROBS)
    assert deltas[-1].finish_reason is FinishReason.LENGTH and deltas[0].weight_version == 0
    assert whole.output_ids == tuple(TOKENS) and whole.output_log_probs == tuple(LOGPROBS)
    assert whole.input_log_probs == (None,) and whole.text == "abcde"


async def test_engine_errors_become_engine_error(fake_sglang: str) -> None:
    async with EngineClient(fake_sglang) as client:
        with pytest.raises(EngineError, match="input is too long"):
            await client.generate(req("reject"))
        with pytest.raises(EngineError, match="input is too long"):
            [d async for d in client.stream(req("reject"))]
        with pytest.raises(EngineError, match="scheduler crashed"):
            [d async for d in client.stream(req("error"))]
        with pytest.raises(EngineError, match="without a finish_reason"):
            [d async for d in client.stream(req("truncate"))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_engine_fails_fast_without_naming_its_address() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with EngineClient(url, connect_timeout=2.0) as client:
        started = time.monotonic()
        with pytest.raises(EngineError, match="cannot reach engine") as caught:
            await client.generate(req())
        assert str(port) not in caught.value.message
        with pytest.raises(EngineError, match="cannot reach engine"):
            [d async for d in client.stream(req())]
        assert not await client.health()
        assert time.monotonic() - started < 3.0


def test_wire_value_parsing() -> None:
    assert parse_weight_version("default") == 0 and parse_weight_version("12") == 12 and parse_weight_version(3) == 3
    with pytest.raises(EngineError):
        parse_weight_version("v1")
    assert parse_finish_reason({"type": "stop", "matched": 2}) is FinishReason.STOP
    assert parse_finish_reason({"type": "abort", "message": "x"}) is FinishReason.ABORT
    assert parse_finish_reason(None) is None


def incremental_chunk(ids: list[int], total: int, version: str, finished: bool = False) -> bytes:
    meta = {"finish_reason": {"type": "stop"} if finished else None, "weight_version": version, "prompt_tokens": 3,
            "completion_tokens": total, "output_token_logprobs": [[-0.1 * t, t, None] for t in ids]}
    return json.dumps({"output_ids": ids, "meta_info": meta}).encode()


def test_merged_deltas_keep_weight_versions_apart() -> None:
    from slime_openclaw.engine.client import _DeltaReader

    payloads = [incremental_chunk([1], 1, "4"), incremental_chunk([2, 3], 3, "4"), incremental_chunk([4], 4, "5"),
                incremental_chunk([5], 5, "5", finished=True)]
    merged = list(_DeltaReader(3).deltas(payloads, merge=True))
    assert [(d.output_ids, d.weight_version, d.finish_reason) for d in merged] == [
        ((1, 2, 3), 4, None), ((4, 5), 5, FinishReason.STOP)]
    assert merged[0].output_log_probs == tuple(-0.1 * t for t in (1, 2, 3))
    plain = list(_DeltaReader(3).deltas(payloads, merge=False))
    assert [d.output_ids for d in plain] == [(1,), (2, 3), (4,), (5,)]
    broken = [payloads[0], b'{"error": {"message": "scheduler crashed"}}', payloads[1]]
    given = []
    with pytest.raises(EngineError, match="scheduler crashed"):
        for delta in _DeltaReader(3).deltas(broken, merge=True):
            given.append(delta.output_ids)
    assert given == [(1,)]  # what came before the error is still given


async def test_merging_client_gives_the_same_tokens(fake_sglang: str) -> None:
    async with EngineClient(fake_sglang, merge_chunks=True) as client:
        deltas = [d async for d in client.stream(req())]
    assert sum((d.output_ids for d in deltas), ()) == tuple(TOKENS)
    assert sum((d.output_log_probs for d in deltas), ()) == tuple(LOGPROBS)
    assert 1 <= len(deltas) <= 3 and deltas[-1].finish_reason is FinishReason.LENGTH


@pytest.mark.parametrize("reads", [
    [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"],  # one whole event per read (fast path)
    [b'data: {"a":1}\n\ndata: {"b":2}\n\n', b"data: [DONE]\n\n"],  # two in one read
    [b'data: {"a"', b':1}\n\ndata: {"b":2}\n', b"\ndata: [DONE]\n\n"],  # events cut across reads
    [b'data: {"a":1}\r\n\r\n', b': keep-alive\n\n', b'data:{"b":2}\n\n'],  # CRLF, comments, no space, no [DONE]
])
def test_sse_payloads_are_the_same_however_the_reads_fall(reads: list[bytes]) -> None:
    from slime_openclaw.engine.client import SseEvents

    events = SseEvents()
    payloads = [p for read in [*reads, b""] for p in events.feed(read)]  # b"": the body's end
    assert [json.loads(p) for p in payloads] == [{"a": 1}, {"b": 2}]
    assert events.done and events.feed(b'data: {"c":3}\n\n') == []  # nothing after the end
