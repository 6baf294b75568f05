"""Hostile and broken input at the HTTP level: every answer is a 4xx OpenAI error (or nothing,
for a client that left), never a 5xx; no user text in the logs; no cross-site writes;
connections that stall are closed. Raw aiohttp requests and raw sockets."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from typing import Any

import aiohttp
import pytest
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (fixtures)

from slime_openclaw.gateway.chat import ChatSettings
from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
from slime_openclaw.journal.memory import MemoryJournal
from tests.gateway_fakes import CharCodec, reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

U = [{"role": "user", "content": "hello there"}]
GOOD = {"model": "tiny", "messages": U}
SECRET = "my-secret-user-text"


def ok_engine() -> ScriptedEngine:
    return ScriptedEngine(lambda ids: reply_ids("ok"))


def _port(api: Any) -> int:
    return int(str(api.base_url).split(":")[2].split("/")[0])


async def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession(auto_decompress=False) as http, \
            http.post(url, data=data, headers={"Content-Type": "application/json", **headers}) as r:
        text = await r.text()
        return r.status, dict(r.headers), json.loads(text) if text.startswith("{") else text


async def _raw(port: int, request: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; what came back before the server closed it (or ``wait``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def _is_openai_error(payload: Any, status: int) -> bool:
    return (400 <= status < 500 and isinstance(payload, dict) and isinstance(payload.get("error"), dict)
            and isinstance(payload["error"].get("message"), str))


async def test_deeply_nested_tool_parameters_are_400_not_500(tiny_tokenizer: Any) -> None:  # noqa: F811
    deep = '{"x":' * 980 + "{}" + "}" * 980
    body = ('{"model":"tiny","messages":[{"role":"user","content":"hi"}],'
            '"tools":[{"type":"function","function":{"name":"f","parameters":' + deep + "}}]}").encode()
    async with running_gateway(ok_engine(), codec=TokenizerCodec(tiny_tokenizer)) as (api, deps):
        status, _, payload = await _post(f"{api.base_url}chat/completions", body, {})
        assert status == 400 and payload["error"]["code"] == "invalid_json", payload
        status, _, _ = await _post(f"{api.base_url}chat/completions", json.dumps(GOOD).encode(), {})
        assert status == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_content_encoding_on_a_plain_body_is_400_and_a_real_one_works(encoding: str) -> None:
    plain = json.dumps(GOOD).encode()
    packed = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
    async with running_gateway(ok_engine()) as (api, deps):
        url = f"{api.base_url}chat/completions"
        status, _, payload = await _post(url, plain, {"Content-Encoding": encoding})
        assert status == 400 and payload["error"]["code"] == "invalid_body"
        status, _, payload = await _post(url, packed, {"Content-Encoding": encoding})
        assert status == 200 and payload["choices"][0]["message"]["content"] == "ok"
    assert not [key for key in deps.metrics.requests if key[1] >= 500]


async def test_non_utf8_bearer_is_401() -> None:
    async with running_gateway(ok_engine(), api_key="sk-key") as (api, deps):
        body = json.dumps(GOOD).encode()
        answer = await _raw(_port(api), b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Authorization: Bearer \xff\xfe\x80\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        assert answer.startswith(b"HTTP/1.1 401") and b'"invalid_api_key"' in answer


async def test_client_leaving_mid_upload_is_not_a_server_error() -> None:
    async with running_gateway(ok_engine()) as (api, deps):
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n{\"model\": ")
        await writer.drain()
        for _ in range(200):  # until the handler is reading the body
            if deps.metrics.requests or "chat" in str(deps.metrics.in_flight):
                break
            await asyncio.sleep(0.01)
        writer.close()
        for _ in range(500):
            if deps.metrics.requests:
                break
            await asyncio.sleep(0.01)
        assert dict(deps.metrics.requests) == {("/v1/chat/completions", 499): 1}
        status, _, _ = await _post(f"{api.base_url}chat/completions", json.dumps(GOOD).encode(), {})
        assert status == 200


async def test_cross_site_writes_are_refused_and_nothing_is_recorded() -> None:
    journal = MemoryJournal()
    async with running_gateway(ok_engine(), journal=journal) as (api, deps):
        url = f"{api.base_url}chat/completions"
        body = json.dumps(GOOD).encode()
        status, headers, payload = await _post(url, body, {"Content-Type": "text/plain", "Origin": "http://evil.example"})
        assert status == 415 and payload["error"]["code"] == "unsupported_media_type"
        assert not any(h.lower().startswith("access-control-") for h in headers)
        status, _, payload = await _post(url, body, {"Host": "evil.example:8000"})
        assert status == 403 and payload["error"]["code"] == "host_not_allowed"
        async with aiohttp.ClientSession() as http, http.options(url, headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 405 and not any(h.lower().startswith("access-control-") for h in r.headers)
        for host in ("localhost:8000", "127.0.0.1", "[::1]:9"):
            status, _, _ = await _post(url, body, {"Host": host})
            assert status == 200, host
    assert len(list(journal.iter_turns())) == 3


async def test_allowed_hosts_extend_the_host_check() -> None:
    async with running_gateway(ok_engine(), allowed_hosts=("gateway.lan",)) as (api, _):
        url = f"{api.base_url}chat/completions"
        body = json.dumps(GOOD).encode()
        assert (await _post(url, body, {"Host": "gateway.lan:8000"}))[0] == 200
        assert (await _post(url, body, {"Host": "other.lan"}))[0] == 403


async def test_badly_framed_http_leaves_no_user_text_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_gateway(ok_engine()) as (api, _):
        body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": SECRET}]}).encode()
        answer = await _raw(_port(api), b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Transfer-Encoding: gzip\r\nContent-Type: application/json\r\n\r\n" + body)
        assert answer.split(b" ", 2)[1] == b"400" and b'"malformed_http"' in answer and SECRET.encode() not in answer
        await _post(f"{api.base_url}chat/completions", body, {"Content-Encoding": "gzip"})
    assert caplog.records, "the broken requests are still logged (as events)"
    for record in caplog.records:
        assert SECRET not in record.getMessage() and not record.exc_info, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


async def test_stalled_connections_are_closed() -> None:
    async with running_gateway(ok_engine(), idle_timeout=0.5, body_timeout=0.5) as (api, deps):
        port = _port(api)
        loop = asyncio.get_running_loop()
        start = loop.time()
        idle, partial_header, partial_body = await asyncio.gather(
            _raw(port, b""),
            _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
            _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 900\r\n\r\n{\"model\""),
        )
        assert loop.time() - start < 4.0  # all three closed by the server, well before _raw's own 5 s
        assert idle == b"" and partial_header == b""
        assert partial_body.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in partial_body


async def test_a_body_that_arrived_whole_is_read_without_a_timeout_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """The body timer is only for bodies still arriving (the slow one above still gets its 408)."""
    from slime_openclaw.gateway import admission

    waits: list[float] = []
    real_wait_for = asyncio.wait_for

    async def counting_wait_for(awaitable: Any, timeout: float) -> Any:
        waits.append(timeout)
        return await real_wait_for(awaitable, timeout)

    monkeypatch.setattr(admission.asyncio, "wait_for", counting_wait_for)
    async with running_gateway(ok_engine()) as (api, deps), aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{_port(api)}/v1/chat/completions",
                             json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}) as response:
            assert response.status == 200
        assert waits == []


class _CountingCodec(CharCodec):
    renders = 0

    def render_ids(self, *args: Any, **kwargs: Any) -> list[int]:
        self.renders += 1
        return super().render_ids(*args, **kwargs)


async def test_large_requests_are_bounded_before_any_tokenizing() -> None:
    codec = _CountingCodec()
    engine = ok_engine()
    settings = ChatSettings(max_context_tokens=20_000)
    async with running_gateway(engine, codec=codec, chat=settings) as (api, deps):
        url = f"{api.base_url}chat/completions"
        over = json.dumps({**GOOD, "messages": [{"role": "user", "content": "y" * 30_000}]}).encode()
        status, _, payload = await _post(url, over, {})
        assert status == 400 and payload["error"]["code"] == "context_length_exceeded"
        assert "at least 30000" in payload["error"]["message"] and codec.renders == 0 and not engine.requests
        limit = (1 << 20) + 32 * 20_000  # the body limit follows the context
        huge = json.dumps({**GOOD, "messages": [{"role": "user", "content": "z" * (limit + 10)}]}).encode()
        status, _, payload = await _post(url, huge, {})
        assert status == 413 and payload["error"]["code"] == "request_too_large" and codec.renders == 0
        fits = json.dumps({**GOOD, "messages": [{"role": "user", "content": "w" * 19_000}]}).encode()
        status, _, payload = await _post(url, fits, {})  # over OFFLOAD_BYTES: served from a thread
        assert status == 200 and payload["choices"][0]["message"]["content"] == "ok" and codec.renders == 1
