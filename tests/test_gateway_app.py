"""The gateway over loopback with the real openai client, a scripted engine and the character codec.

These tests pin the gateway's own behaviour (streaming, sessions, next states, resume,
recording) with an engine whose answers are known; tests/test_gateway_e2e.py runs the
same paths with the embedded engine and the tiny model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.types import NextStateKind, TurnState, TurnType
from tests.gateway_fakes import encode, render_text, reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine, make_scripted_app, token_log_prob

HELLO = "Hello there, friend."


def fixed(text: str) -> ScriptedEngine:
    return ScriptedEngine(lambda ids: reply_ids(text), chunk_size=3)


async def test_non_streaming_answer_is_recorded_token_exactly() -> None:
    engine, journal = fixed(HELLO), MemoryJournal()
    async with running_gateway(engine, journal=journal) as (api, _):
        out = await api.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], temperature=0, logprobs=True)
    assert out.choices[0].message.content == HELLO
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens == len(HELLO) + 1
    [record] = list(journal.iter_turns())
    turn = record.turn
    prompt = encode(render_text([{"role": "user", "content": "hi"}]))
    assert list(turn.prompt_ids) == prompt == list(engine.requests[0].input_ids)
    assert list(turn.response_ids) == reply_ids(HELLO)
    assert list(turn.response_log_probs) == [token_log_prob(len(prompt) + i, t) for i, t in enumerate(turn.response_ids)]
    assert turn.weight_versions == (0,) * len(turn.response_ids)
    assert [c.logprob for c in out.choices[0].logprobs.content] == list(turn.response_log_probs)
    assert record.state is TurnState.SERVED and turn.turn_type is TurnType.MAIN


async def test_streaming_sends_chunks_and_usage() -> None:
    async with running_gateway(fixed(HELLO)) as (api, _):
        stream = await api.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) >= 5 and "".join(contents) == HELLO
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(HELLO) + 1


async def test_first_chunk_arrives_before_generation_ends() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids("abcdefghij"), chunk_size=1, delay=0.05)
    async with running_gateway(engine) as (api, _):
        stream = await api.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True)
        loop = asyncio.get_running_loop()
        start = loop.time()
        arrivals = [loop.time() - start async for c in stream if c.choices and c.choices[0].delta.content]
    assert arrivals[0] < arrivals[-1] - 0.2


async def test_tool_calls_stream_and_final_message() -> None:
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    engine = fixed('Let me check.[[call get_time {"tz": "UTC"}]]')
    async with running_gateway(engine) as (api, _):
        out = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "time?"}],
                                                tools=tools)
        stream = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "time?"}],
                                                   tools=tools, stream=True)
        chunks = [c async for c in stream]
    message = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check."
    assert message.tool_calls[0].function.name == "get_time"
    assert message.tool_calls[0].function.arguments == '{"tz": "UTC"}'
    pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].id == "call_0" and pieces[0].function.name == "get_time"
    assert "".join(p.function.arguments or "" for p in pieces) == '{"tz": "UTC"}'
    assert engine.requests[0].input_ids[: len("<tools>")] == tuple(encode("<tools>"))


async def test_stop_sequence_is_hidden_from_the_client_but_recorded() -> None:
    engine, journal = fixed("one two STOP three"), MemoryJournal()
    async with running_gateway(engine, journal=journal) as (api, _):
        out = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                                stop=["STOP"])
        stream = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "y"}],
                                                   stop="STOP", stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert out.choices[0].message.content == streamed == "one two "
    assert engine.requests[0].sampling.stop == ("STOP",)
    turns = [r.turn for r in journal.iter_turns()]
    assert all(list(t.response_ids) == reply_ids("one two STOP three") for t in turns)


async def test_abort_is_resumed_into_one_answer_with_weight_versions() -> None:
    text = "A fairly long answer that gets interrupted by a weight update."
    engine, journal = fixed(text), MemoryJournal()
    async with running_gateway(engine, journal=journal) as (api, deps):
        engine.abort_next(after=10)
        stream = await api.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "go"}], stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert streamed == text
    assert len(engine.requests) == 2
    first, second = engine.requests
    assert second.input_ids == first.input_ids + tuple(reply_ids(text)[:10])
    assert second.sampling.max_new_tokens == first.sampling.max_new_tokens - 10
    turn = next(journal.iter_turns()).turn
    assert list(turn.response_ids) == reply_ids(text)
    assert len(turn.response_log_probs) == len(turn.response_ids)
    assert turn.weight_versions == (0,) * 10 + (1,) * (len(text) + 1 - 10)
    assert deps.metrics.resumes == 1


async def test_non_streamed_request_resumes_over_non_streaming_engine_calls() -> None:
    text = "A fairly long answer that gets interrupted by a weight update."
    engine, journal = fixed(text), MemoryJournal()
    bodies: list[dict] = []

    @web.middleware
    async def keep_body(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/generate":
            bodies.append(await request.json())
        return await handler(request)

    app = make_scripted_app(engine)
    app.middlewares.append(keep_body)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        async with EngineClient(f"http://127.0.0.1:{runner.addresses[0][1]}") as client, \
                running_gateway(client, journal=journal) as (api, deps):
            engine.abort_next(after=10)
            out = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "go"}],
                                                    max_tokens=100, logprobs=True)
    finally:
        await runner.cleanup()
    assert [b["stream"] for b in bodies] == [False, False]  # whole answers, the aborted one partial
    assert bodies[1]["input_ids"] == bodies[0]["input_ids"] + reply_ids(text)[:10]
    assert bodies[1]["sampling_params"]["max_new_tokens"] == 90
    assert out.choices[0].message.content == text and out.choices[0].finish_reason == "stop"
    turn = next(journal.iter_turns()).turn
    assert list(turn.response_ids) == reply_ids(text)
    assert out.usage.completion_tokens == len(turn.response_ids) == len(turn.response_log_probs)
    prompt_len = len(bodies[0]["input_ids"])
    assert list(turn.response_log_probs) == [token_log_prob(prompt_len + i, t)
                                             for i, t in enumerate(turn.response_ids)]
    assert [c.logprob for c in out.choices[0].logprobs.content] == list(turn.response_log_probs)
    assert turn.weight_versions == (0,) * 10 + (1,) * (len(text) + 1 - 10)
    assert deps.metrics.resumes == 1


async def test_sessions_group_turns_without_ids_and_attach_next_states() -> None:
    engine, journal = ScriptedEngine(lambda ids: reply_ids(f"reply {len(ids)}")), MemoryJournal()
    async with running_gateway(engine, journal=journal) as (api, _):
        history = [{"role": "user", "content": "first"}]
        for follow in ("second", "third"):
            out = await api.chat.completions.create(model="tiny", messages=history)
            history += [out.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": follow}]
        await api.chat.completions.create(model="tiny", messages=history)
        await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "unrelated"}])
    records = list(journal.iter_turns())
    by_session: dict[str, list] = {}
    for r in records:
        by_session.setdefault(r.turn.session_id, []).append(r)
    assert sorted(len(v) for v in by_session.values()) == [1, 3]
    main = sorted(next(v for v in by_session.values() if len(v) == 3), key=lambda r: r.turn.turn_index)
    assert main[0].state is TurnState.OBSERVED and main[0].next_state.continuous
    assert main[0].next_state.kind is NextStateKind.USER
    assert [m["content"] for m in main[0].next_state.messages] == ["second"]
    assert main[1].next_state.messages[0]["content"] == "third"
    assert main[2].state is TurnState.SERVED
    prev = main[0].turn
    assert main[1].turn.prompt_ids[: len(prev.prompt_ids) + len(prev.response_ids)] == prev.prompt_ids + prev.response_ids


async def test_session_header_edited_history_is_a_break() -> None:
    journal = MemoryJournal()
    async with running_gateway(fixed("ok"), journal=journal) as (api, _):
        api = api.with_options(default_headers={"X-Session-Id": "s1"})
        await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}])
        await api.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": "a (edited)"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "b"}])
    first = journal.get("s1:0")
    assert first is not None and first.next_state is not None
    assert not first.next_state.continuous and "does not extend" in (first.next_state.break_reason or "")
    assert journal.get("s1:1") is not None


async def test_tool_results_are_the_next_state() -> None:
    journal = MemoryJournal()
    engine = fixed('[[call f {"x": 1}]]')
    async with running_gateway(engine, journal=journal) as (api, _):
        tools = [{"type": "function", "function": {"name": "f"}}]
        history = [{"role": "user", "content": "use f twice"}]
        out = await api.chat.completions.create(model="tiny", messages=history, tools=tools, metadata={"session_id": "t"})
        history.append(out.choices[0].message.model_dump(exclude_none=True))
        history += [{"role": "tool", "tool_call_id": "call_0", "content": "r1"},
                    {"role": "tool", "tool_call_id": "call_1", "content": "r2"}]
        await api.chat.completions.create(model="tiny", messages=history, tools=tools, metadata={"session_id": "t"})
    state = journal.get("t:0").next_state
    assert state.kind is NextStateKind.TOOL and state.continuous
    assert [m["content"] for m in state.messages] == ["r1", "r2"]


async def test_side_turns_done_header_and_train_off() -> None:
    journal = MemoryJournal()
    async with running_gateway(fixed("ok"), journal=journal) as (api, _):
        msgs = [{"role": "user", "content": "a"}]
        await api.chat.completions.create(model="tiny", messages=msgs, extra_headers={"X-Session-Id": "s"})
        await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "title?"}],
                                          extra_headers={"X-Session-Id": "s", "X-Turn-Type": "side"})
        await api.chat.completions.create(model="tiny", messages=msgs, extra_headers={"X-OpenClaw-Train": "off"})
        assert journal.get("s:0").state is TurnState.SERVED  # a side turn does not consume the next state
        msgs += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "b"}]
        await api.chat.completions.create(model="tiny", messages=msgs,
                                          extra_headers={"X-Session-Id": "s", "X-Session-Done": "1"})
    assert journal.get("s:1").state is TurnState.DISCARDED and journal.get("s:1").turn.turn_type is TurnType.SIDE
    assert journal.get("s:0").next_state.messages[0]["content"] == "b"
    assert journal.get("s:2").next_state.kind is NextStateKind.SESSION_END
    assert len(list(journal.iter_turns())) == 3


async def test_idle_sessions_expire_with_session_end() -> None:
    journal = MemoryJournal()
    async with running_gateway(fixed("ok"), journal=journal, session_ttl=0.2) as (api, deps):
        await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}])
        for _ in range(50):
            await asyncio.sleep(0.05)
            if next(journal.iter_turns()).state is TurnState.OBSERVED:
                break
    record = next(journal.iter_turns())
    assert record.next_state.kind is NextStateKind.SESSION_END
    assert deps.metrics.sessions_open == 0


async def test_error_mid_stream_is_an_sse_error_event_and_server_keeps_serving() -> None:
    engine = fixed("abcdefgh")
    original = engine.stream

    async def broken(request):  # log-prob count mismatch after the first delta: a token-exactness violation
        async for delta in original(request):
            yield delta
            yield type(delta)(delta.output_ids, (), delta.weight_version)

    engine.stream = broken  # type: ignore[method-assign]
    async with running_gateway(engine) as (api, deps):
        stream = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}],
                                                   stream=True)
        with pytest.raises(openai.APIError, match="inference engine failed"):
            async for _ in stream:
                pass
        engine.stream = original  # type: ignore[method-assign]
        out = await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}])
        assert out.choices[0].message.content == "abcdefgh"
        assert deps.metrics.stream_errors == 1


async def test_client_going_away_mid_stream_stops_the_engine_request() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids("x" * 200), chunk_size=1, delay=0.01)
    original, ended = engine.stream, []

    async def watched(request):
        sent = 0
        try:
            async for delta in original(request):
                sent += len(delta.output_ids)
                yield delta
        finally:
            ended.append(sent)

    engine.stream = watched  # type: ignore[method-assign]
    journal = MemoryJournal()
    async with running_gateway(engine, journal=journal) as (api, deps), aiohttp.ClientSession() as http:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "a"}], "stream": True}
        async with http.post(f"{api.base_url}chat/completions", json=body) as response:
            await response.content.readline()
        for _ in range(100):
            if ended:
                break
            await asyncio.sleep(0.02)
        assert ended and ended[0] < 100  # closed long before the 201 tokens were generated
        assert deps.metrics.in_flight == 0
    assert list(journal.iter_turns()) == []  # an answer the client never got is not a turn
