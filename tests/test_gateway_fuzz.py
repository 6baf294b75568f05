"""Property-based fuzzing of ``POST /v1/chat/completions`` (hypothesis).

Random and mutated bodies (valid requests with fields replaced, removed or retyped, random
JSON, raw bytes, truncations) and headers (content type, encodings, keys, session headers,
hosts) go to a real gateway with the tiny model's tokenizer and chat template. Every answer
must be 2xx or a 4xx OpenAI-style error JSON, never a 5xx, and the gateway must answer
``GET /v1/models`` after each example.

Bounded for ``make test`` (default 100 examples, seconds); a longer run:
``OPENCLAW_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_gateway_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_model import tiny_model_path  # noqa: F401  (fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slime_openclaw.gateway.app import GatewayDeps, GatewaySettings, make_runner
from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
from slime_openclaw.journal.memory import MemoryJournal
from tests.scripted_engine import ScriptedEngine

FUZZ_EXAMPLES = int(os.environ.get("OPENCLAW_FUZZ_EXAMPLES", "100"))
BODY_TIMEOUT_S = 2.0
"""A truncated deflate stream leaves aiohttp's decoder waiting for more: such a body is
answered 408 once the body timeout passes."""
KEY = "sk-fuzz"
FIELDS = ["model", "messages", "tools", "tool_choice", "temperature", "top_p", "top_k", "min_p",
          "repetition_penalty", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options",
          "logprobs", "top_logprobs", "n", "logit_bias", "response_format", "seed", "presence_penalty", "user",
          "metadata", "audio", "modalities", "reasoning_effort", "chat_template_kwargs", "store", "verbosity",
          "prediction", "frobnicate"]
VALID: dict[str, Any] = {
    "model": "tiny",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "42"}, {"role": "user", "content": "and?"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "max_tokens": 4,
}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                      st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)
message = st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"])},
                                optional={"content": json_value, "tool_calls": json_value, "tool_call_id": json_value,
                                          "name": json_value, "reasoning_content": json_value})


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "message", "stream"]))
        if action == "set":
            body[draw(st.sampled_from(FIELDS))] = draw(json_value)
        elif action == "drop":
            body.pop(draw(st.sampled_from(sorted(body))), None) if body else None
        elif action == "message" and isinstance(body.get("messages"), list):
            body["messages"].insert(draw(st.integers(0, len(body["messages"]))), draw(message))
        else:
            body["stream"] = True
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    raw = json.dumps(body).encode()
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]


bodies = st.one_of(mutated(), json_value.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200))
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)
headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                     "application/x-www-form-urlencoded", "multipart/form-data"]),
    "Content-Encoding": st.sampled_from(["identity", "gzip", "deflate"]),
    "Authorization": st.one_of(st.just(f"Bearer {KEY}"), header_text),
    "X-Session-Id": header_text, "X-Turn-Type": st.one_of(st.sampled_from(["main", "side"]), header_text),
    "X-Session-Done": header_text, "X-OpenClaw-Train": header_text,
    "Host": st.sampled_from(["127.0.0.1", "localhost:1", "evil.example", ""]),
})


@pytest.fixture(scope="module")
def gateway_port(tiny_model_path: Path) -> Iterator[int]:  # noqa: F811
    codec = TokenizerCodec.from_dir(tiny_model_path)
    answer = codec.tokenizer.encode("ok <tool_call>", add_special_tokens=False) + [codec.stop_token_ids[0]]
    deps = GatewayDeps(ScriptedEngine(lambda ids: answer, log_requests=False), MemoryJournal(), codec,
                       GatewaySettings(served_model_name="tiny", api_key=KEY, body_timeout=BODY_TIMEOUT_S))
    loop = asyncio.new_event_loop()
    runner = make_runner(deps)
    loop.run_until_complete(runner.setup())
    from aiohttp import web

    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        # as asyncio.run ends: a connection handler still lingering over an unread body is
        # cancelled and run to its end, not destroyed pending with the loop
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()
    assert not [key for key in deps.metrics.requests if key[1] >= 500], dict(deps.metrics.requests)


def _send(port: int, method: str, path: str, body: bytes | None, extra: dict[str, str]) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=BODY_TIMEOUT_S + 10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {"Host": "127.0.0.1", "Authorization": f"Bearer {KEY}",
                            "Content-Type": "application/json", **extra}.items():
            connection.putheader(name, value.encode("latin-1"))
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        connection.close()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, extra=headers)
def test_every_answer_is_2xx_or_a_4xx_openai_error(gateway_port: int, body: bytes, extra: dict[str, str]) -> None:
    status, content_type, payload = _send(gateway_port, "POST", "/v1/chat/completions", body, extra)
    assert status < 500, (status, payload[:300])
    if status >= 400:
        error = json.loads(payload)["error"]
        assert isinstance(error["message"], str) and error["type"] and "Traceback" not in error["message"]
    else:
        assert content_type.startswith(("application/json", "text/event-stream")), content_type
    assert _send(gateway_port, "GET", "/v1/models", None, {})[0] == 200
