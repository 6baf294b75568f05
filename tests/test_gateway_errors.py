"""Bad input, auth, overload and engine failures: the right status and OpenAI error body, and the
gateway keeps serving. Raw aiohttp requests (the openai client would refuse to send most of these)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp
import pytest

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.journal.memory import MemoryJournal
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine
from tests.waiting import eventually

GOOD = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
U = [{"role": "user", "content": "hi"}]

BAD_REQUESTS = [
    # (name, body bytes, status, code or None, param or None)
    ("not json", b"{nope", 400, "invalid_json", None),
    ("json array", b"[1, 2]", 400, "invalid_json", None),
    ("no model", {"messages": U}, 400, None, "model"),
    ("unknown model", {**GOOD, "model": "gpt-17"}, 404, "model_not_found", "model"),
    ("messages not a list", {**GOOD, "messages": "hi"}, 400, None, "messages"),
    ("empty messages", {**GOOD, "messages": []}, 400, None, "messages"),
    ("unknown role", {**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, 400, None, "messages[0].role"),
    ("content wrong type", {**GOOD, "messages": [{"role": "user", "content": 5}]}, 400, None, "messages[0].content"),
    ("image part", {**GOOD, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     400, None, "messages[0].content[0]"),
    ("tool without id", {**GOOD, "messages": [*U, {"role": "tool", "content": "r"}]}, 400, None, "messages[1].tool_call_id"),
    ("temperature string", {**GOOD, "temperature": "hot"}, 400, None, "temperature"),
    ("temperature range", {**GOOD, "temperature": 3}, 400, None, "temperature"),
    ("top_p zero", {**GOOD, "top_p": 0}, 400, None, "top_p"),
    ("max_tokens zero", {**GOOD, "max_tokens": 0}, 400, None, "max_tokens"),
    ("max_tokens disagree", {**GOOD, "max_tokens": 3, "max_completion_tokens": 4}, 400, None, "max_tokens"),
    ("stream not bool", {**GOOD, "stream": "yes"}, 400, None, "stream"),
    ("n=2", {**GOOD, "n": 2}, 400, None, "n"),
    ("logit_bias", {**GOOD, "logit_bias": {"1": 5}}, 400, None, "logit_bias"),
    ("top_logprobs", {**GOOD, "logprobs": True, "top_logprobs": 3}, 400, None, "top_logprobs"),
    ("penalty", {**GOOD, "presence_penalty": 0.5}, 400, None, "presence_penalty"),
    ("seed not an integer", {**GOOD, "seed": "7"}, 400, None, "seed"),
    ("json mode", {**GOOD, "response_format": {"type": "json_object"}}, 400, None, "response_format"),
    ("tool_choice required", {**GOOD, "tool_choice": "required"}, 400, None, "tool_choice"),
    ("unknown field", {**GOOD, "frobnicate": 1}, 400, "unknown_parameter", "frobnicate"),
    ("tools not list", {**GOOD, "tools": {"a": 1}}, 400, None, "tools"),
    ("stop too many", {**GOOD, "stop": ["a", "b", "c", "d", "e"]}, 400, None, "stop"),
    ("oversized body", {**GOOD, "messages": [{"role": "user", "content": "x" * 300_000}]}, 413, "request_too_large", None),
]


async def _post(session: aiohttp.ClientSession, url: str, body: object, headers: dict | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url, data=data, headers={"Content-Type": "application/json", **(headers or {})}) as r:
        return r.status, dict(r.headers), await r.json()


async def test_bad_input_table_and_server_keeps_serving() -> None:
    journal = MemoryJournal()
    async with running_gateway(ScriptedEngine(lambda ids: reply_ids("ok")), journal=journal,
                               max_body_bytes=200_000) as (api, _), aiohttp.ClientSession() as http:
        url = f"{api.base_url}chat/completions"
        for name, body, status, code, param in BAD_REQUESTS:
            got_status, _, payload = await _post(http, url, body)
            error = payload.get("error")
            assert got_status == status, (name, payload)
            assert set(error) >= {"message", "type", "code"} and isinstance(error["message"], str), name
            assert "Traceback" not in error["message"], name
            if code is not None:
                assert error["code"] == code, (name, error)
            if param is not None:
                assert error["param"] == param, (name, error)
            status_ok, _, good = await _post(http, url, GOOD)
            assert status_ok == 200 and good["choices"][0]["message"]["content"] == "ok", name
        async with http.get(f"{api.base_url}nowhere") as r:
            assert r.status == 404 and "error" in await r.json()
        async with http.get(f"{api.base_url}chat/completions") as r:
            assert r.status == 405 and "error" in await r.json()
    assert len(list(journal.iter_turns())) == len(BAD_REQUESTS)  # only the good requests were recorded


async def test_api_key_is_required_when_set_but_not_for_healthz() -> None:
    async with running_gateway(ScriptedEngine(lambda ids: reply_ids("ok")), api_key="k3y") as (api, _), \
            aiohttp.ClientSession() as http:
        url = f"{api.base_url}chat/completions"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k3y"}):
            status, _, payload = await _post(http, url, GOOD, headers)
            assert status == 401 and payload["error"]["type"] == "authentication_error"
        async with http.get(f"{api.base_url}models") as r:
            assert r.status == 401
        async with http.get(str(api.base_url).replace("/v1/", "/healthz")) as r:
            assert r.status == 200
        out = await api.chat.completions.create(model="tiny", messages=U)  # the client sends the key
        assert out.choices[0].message.content == "ok"
        models = await api.models.list()
        assert [m.id for m in models.data] == ["tiny"]


async def test_overload_gives_429_with_retry_after() -> None:
    slow = ScriptedEngine(lambda ids: reply_ids("slow answer"), chunk_size=1, delay=0.05)
    async with running_gateway(slow, max_concurrency=1, retry_after=2) as (api, deps), \
            aiohttp.ClientSession() as http:
        url = f"{api.base_url}chat/completions"
        first = asyncio.create_task(_post(http, url, GOOD))
        await eventually(lambda: deps.metrics.in_flight == 1 or first.done(), "the first request in flight")
        status, headers, payload = await _post(http, url, GOOD)
        assert status == 429 and headers["Retry-After"] == "2" and payload["error"]["code"] == "overloaded"
        assert (await first)[0] == 200
        assert (await _post(http, url, GOOD))[0] == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_engine_gives_502_quickly_then_metrics() -> None:
    engine = EngineClient(f"http://127.0.0.1:{_free_port()}", connect_timeout=1.0)
    try:
        async with running_gateway(engine) as (api, _), aiohttp.ClientSession() as http:
            url = f"{api.base_url}chat/completions"
            for body in (GOOD, {**GOOD, "stream": True}):
                start = time.monotonic()
                status, _, payload = await _post(http, url, body)
                assert status == 502 and payload["error"]["type"] == "engine_error"
                assert payload["error"]["code"] == "engine_unavailable"
                assert "127.0.0.1" not in payload["error"]["message"] and "http" not in payload["error"]["message"]
                assert time.monotonic() - start < 1.5
            async with http.get(str(api.base_url).replace("/v1/", "/healthz")) as r:
                assert r.status == 503
            async with http.get(str(api.base_url).replace("/v1/", "/metrics")) as r:
                text = await r.text()
            assert 'openclaw_gateway_requests_total{endpoint="/v1/chat/completions",status="502"} 2' in text
            assert "# TYPE openclaw_gateway_request_seconds histogram" in text
    finally:
        await engine.aclose()


@pytest.mark.parametrize("header,value", [("X-Turn-Type", "maybe"), ("X-Session-Done", "perhaps")])
async def test_bad_session_headers_are_400(header: str, value: str) -> None:
    async with running_gateway(ScriptedEngine(lambda ids: reply_ids("ok"))) as (api, _), \
            aiohttp.ClientSession() as http:
        status, _, payload = await _post(http, f"{api.base_url}chat/completions", GOOD, {header: value})
        assert status == 400 and payload["error"]["param"] == header
