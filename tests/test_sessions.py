"""Sessions and continuity: the matching rule (gateway/matching.py), the session table
(gateway/sessions.py) and whole request sequences of real clients replayed through a gateway.

The sequences in tests/fixtures/ are trimmed from requests the stock clients sent
(OpenClaw 2026.9.6 and mini-swe-agent 2.4.6, captured unmodified by helper H4; test prompts
only, no user data). Each is replayed body for body against a gateway whose scripted engine
answers what the real run answered, so the client's replayed history matches ours.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from slime_openclaw.gateway.matching import (
    MAX_DROPPED,
    History,
    PendingTurn,
    continuation,
    message_digest,
    next_state_for,
    tokens_hash,
)
from slime_openclaw.gateway.sessions import SessionTable, epoch_session_id
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.signals.context import JudgeInput, content_text
from slime_openclaw.signals.rules import ReplyDroppedJudge
from slime_openclaw.types import FinishReason, NextStateKind, TurnState, TurnType
from tests.gateway_fakes import CALL_CLOSE, CALL_OPEN, reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM = {"role": "system", "content": "You are an agent."}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def said(text: str) -> dict:
    return {"role": "assistant", "content": text}


def served(key: str, prompt: list[dict], reply: dict, ids: tuple[int, ...] = (1, 2, 3)) -> PendingTurn:
    return PendingTurn.build(key, History.of(prompt), reply, ids)


# -- the matching rule --------------------------------------------------------------------------


def test_digests_ignore_how_clients_echo_our_replies() -> None:
    ours = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1, "b": 2}'}}]}
    echoed = {"role": "assistant", "content": "", "reasoning_content": "hmm", "tool_calls": [
        {"function": {"arguments": '{"b":2,"a":1}', "name": "f"}, "id": "other", "type": "function"}]}
    assert message_digest(ours) == message_digest(echoed)
    variants = [said("a"), said("a "), user("a"), {**said("a"), "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]
    assert len({message_digest(v) for v in variants}) == len(variants)


def test_token_fingerprints() -> None:
    import numpy as np

    assert tokens_hash([1, 2, 3]) == tokens_hash((1, 2, 3)) == tokens_hash(np.array([1, 2, 3]))
    assert len({tokens_hash(ids) for ids in ([1, 2, 3], [1, 2], [12, 3], [1, 23], [], [3, 2, 1])}) == 6


def test_a_whole_prompt_and_our_reply_continue_token_checked() -> None:
    prompt = [SYSTEM, user("hi")]
    prev = served("k", prompt, said("yo"), (5, 6, 7))
    tools = [{"role": "tool", "tool_call_id": "a", "content": "1"}, {"role": "tool", "tool_call_id": "b", "content": "2"}]
    ok = next_state_for(prev, History.of([*prompt, said("yo"), *tools]), [5, 6, 7, 8], now=1.0)
    assert ok.continuous and ok.kind is NextStateKind.TOOL and len(ok.messages) == 2 and ok.dropped_messages == 0
    tokens = next_state_for(prev, History.of([*prompt, said("yo"), tools[0]]), [5, 6, 9, 8], now=1.0)
    assert not tokens.continuous and "tokens" in (tokens.break_reason or "")
    assert next_state_for(prev, History.of([*prompt, said("yo"), tools[0]]), [5, 9], now=1.0,
                          check_tokens=False).continuous


def test_context_the_client_does_not_replay_is_tolerated_and_counted() -> None:
    prompt = [SYSTEM, user("question 1"), user("<context 1>")]
    prev = served("k", prompt, said("answer 1"))
    state = next_state_for(prev, History.of([SYSTEM, user("question 1"), said("answer 1"), user("question 2"),
                                             user("<context 2>")]), [], now=1.0)
    assert state.continuous and state.dropped_messages == 1 and not state.reply_dropped
    assert [m["content"] for m in state.messages] == ["question 2", "<context 2>"]


def test_dropping_actions_or_tool_results_is_a_break() -> None:
    tool = {"role": "tool", "tool_call_id": "c", "content": "result"}
    prompt = [SYSTEM, user("q"), said("calling"), tool]
    prev = served("k", prompt, said("done"))
    skipped = History.of([SYSTEM, user("q"), said("calling"), said("done"), user("next")])
    assert continuation(prev, skipped) is None  # the tool result is not context
    too_many = [SYSTEM, user("q"), *[user(f"ctx {i}") for i in range(MAX_DROPPED + 1)]]
    far = served("k", too_many, said("r"))
    assert continuation(far, History.of([SYSTEM, user("q"), said("r"), user("n")])) is None
    assert continuation(far, History.of([*too_many[:2], user("ctx 0"), said("r"), user("n")])) is not None


def test_a_prompt_extended_without_our_reply_is_a_reply_dropped_next_state() -> None:
    prompt = [SYSTEM, user("task")]
    prev = served("k", prompt, said("no tool call here"))
    state = next_state_for(prev, History.of([*prompt, user("format error")]), [], now=1.0)
    assert state.continuous and state.reply_dropped and state.kind is NextStateKind.USER
    assert [m["content"] for m in state.messages] == ["format error"]
    retried = next_state_for(prev, History.of(prompt), [], now=1.0)  # the same request again: nothing new
    assert not retried.continuous and "does not extend" in (retried.break_reason or "")
    edited = next_state_for(prev, History.of([SYSTEM, user("task (edited)"), said("no tool call here"), user("x")]),
                            [], now=1.0)
    assert not edited.continuous
    foreign = next_state_for(prev, History.of([*prompt, said("no tool call here"), user("x"), said("not ours"),
                                               user("y")]), [], now=1.0)
    assert not foreign.continuous and "did not serve" in (foreign.break_reason or "")


# -- the session table -------------------------------------------------------------------------


def test_history_matching_groups_turns_and_idle_sessions_end() -> None:
    table = SessionTable(ttl=10.0)
    prompt = [SYSTEM, user("hi"), user("<ctx>")]
    a, ended = table.assign(History.of(prompt), None, None, now=0.0)
    assert (a.matched_by, a.turn_index, a.created) == ("new", 0, True) and not ended
    table.complete(a.session_id, served("k0", prompt, said("yo")), now=1.0)
    follow = [SYSTEM, user("hi"), said("yo"), user("more"), user("<ctx 2>")]
    b, _ = table.assign(History.of(follow), None, None, now=2.0)
    assert (b.session_id, b.turn_index, b.matched_by) == (a.session_id, 1, "history")
    assert b.previous is not None and b.previous.turn_key == "k0"
    table.complete(a.session_id, served("k1", follow, said("ok")), now=4.0)
    dropped = [*follow, user("format error")]  # reply dropped by the client: found by its prompt
    c, _ = table.assign(History.of(dropped), None, None, now=5.0)
    assert (c.session_id, c.turn_index) == (a.session_id, 2) and c.previous is not None
    table.complete(a.session_id, served("k2", dropped, said("r")), now=5.0)
    assert table.expire(now=13.0) == []
    assert [p.turn_key for p in table.expire(now=16.0)] == ["k2"] and len(table) == 0


def test_sessions_with_the_same_prompt_never_take_each_others_dropped_reply() -> None:
    table = SessionTable()
    prompt = [SYSTEM, user("the same task")]
    first, _ = table.assign(History.of(prompt), None, None, now=0.0)
    second, _ = table.assign(History.of(prompt), None, None, now=0.0)
    assert first.session_id != second.session_id
    table.complete(first.session_id, served("a:0", prompt, said("reply a")), now=1.0)
    table.complete(second.session_id, served("b:0", prompt, said("reply b")), now=1.0)
    retry = History.of([*prompt, user("format error")])
    got, _ = table.assign(retry, None, None, now=2.0)
    assert got.created and got.previous is None  # which reply was dropped is unknowable: no guess
    kept, _ = table.assign(History.of([*prompt, said("reply b"), user("go on")]), None, None, now=2.0)
    assert kept.session_id == second.session_id and kept.previous is not None


def test_client_keys_stay_separate_and_a_failed_request_leaves_nothing_open() -> None:
    table = SessionTable()
    prompt = History.of([user("same words")])
    a, _ = table.assign(prompt, "key-a", None, now=0.0)
    b, _ = table.assign(prompt, "key-b", None, now=0.0)
    assert (a.session_id, b.session_id) == ("key-a", "key-b") and len(table) == 2
    assert table.release(b) is None and len(table) == 1  # b's request failed: no empty session stays
    table.complete("key-a", served("key-a:0", [user("same words")], said("r")), now=1.0)
    follow = History.of([user("same words"), said("r"), user("next")])
    retry, _ = table.assign(follow, "key-a", None, now=2.0)
    assert retry.previous is not None and not retry.created
    table.release(retry)  # that one failed too: the retry finds the previous turn again
    again, _ = table.assign(follow, "key-a", None, now=3.0)
    assert again.previous is not None and again.previous.turn_key == "key-a:0" and again.turn_index == 1
    side, _ = table.assign(History.of([user("title?")]), "key-a", TurnType.SIDE, now=3.0)
    assert side.previous is None and side.turn_index == 2


def test_epoch_session_ids_never_coincide_across_keys() -> None:
    keys = ["a", "a#1", "a#1#0", "b#", "#", ""]
    ids = [epoch_session_id(key, epoch) for key in keys for epoch in range(3)]
    assert len(set(ids)) == len(ids) and epoch_session_id("a", 0) == "a" and epoch_session_id("a", 2) == "a#2"
    table = SessionTable(max_sessions=1)
    first, _ = table.assign(History.of([user("x")]), "a#1", None, now=0.0)
    table.complete(first.session_id, served(f"{first.session_id}:0", [user("x")], said("r")), now=0.0)
    other, _ = table.assign(History.of([user("y")]), "a", None, now=1.0)  # evicts "a#1"
    table.complete(other.session_id, served("a:0", [user("y")], said("r")), now=1.0)
    table.end("a")
    again, _ = table.assign(History.of([user("z")]), "a", None, now=2.0)
    assert (first.session_id, again.session_id) == ("a#1#0", "a#1")


def _churn(table: SessionTable, start: int, stop: int) -> int:
    """Open ``stop - start`` new sessions with one served turn each; returns how many ended."""
    ended_total = 0
    for i in range(start, stop):
        prompt = [user(f"conversation {i}")]
        a, ended = table.assign(History.of(prompt), None, None, now=float(i))
        ended_total += len(ended)
        table.complete(a.session_id, served(f"k{i}", prompt, said("r"), (i,) * 50), now=float(i))
    return ended_total


def test_ten_thousand_sessions_stay_bounded() -> None:
    table = SessionTable(ttl=1e9, max_sessions=10_000)
    assert _churn(table, 0, 12_000) == 2_000  # every evicted session handed back its pending turn
    assert len(table) == 10_000 and len(table._by_prompt) == 10_000 and len(table._by_reply) == 10_000


def test_session_memory_is_flat_under_churn() -> None:
    table = SessionTable(ttl=1e9, max_sessions=500)
    tracemalloc.start()
    try:
        _churn(table, 0, 1_000)
        baseline = tracemalloc.get_traced_memory()[0]
        _churn(table, 1_000, 2_500)
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert grown < 20_000, grown


# -- real clients' request sequences, replayed through a gateway -------------------------------------


def fixture(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())["requests"]


def scripted_text(reply: dict) -> str:
    """What the scripted engine generates so that the gateway answers ``reply``."""
    calls = "".join(f"{CALL_OPEN}{c['function']['name']} {c['function']['arguments']}{CALL_CLOSE}"
                    for c in reply.get("tool_calls") or ())
    return (reply.get("content") or "") + calls


async def replay(requests: list[dict[str, Any]], journal: MemoryJournal) -> list[int]:
    """POST every body as the client sent it; the engine answers what the real run answered."""
    answers = iter([reply_ids(scripted_text(r["reply"])) for r in requests])
    statuses = []
    async with running_gateway(ScriptedEngine(lambda ids: next(answers)), journal=journal) as (api, deps), \
            aiohttp.ClientSession() as http:
        for request in requests:
            body = {k: v for k, v in request["body"].items() if k not in ("max_tokens", "max_completion_tokens")}
            body["max_completion_tokens"] = 4096  # the scripted replies are characters, not the model's tokens
            async with http.post(f"{api.base_url}chat/completions", json=body) as response:
                statuses.append(response.status)
                await response.read()
        assert deps.metrics.sessions_open == 1
    return statuses


async def test_openclaw_turns_are_one_session_and_the_context_message_is_dropped() -> None:
    journal = MemoryJournal()
    requests = fixture("openclaw_two_turns.json")
    assert await replay(requests, journal) == [200, 200]
    first, second = journal.records()
    assert first.turn.session_id == second.turn.session_id and second.turn.turn_index == 1
    state = first.next_state
    assert state is not None and state.continuous and state.kind is NextStateKind.USER
    assert state.dropped_messages == 1 and not state.reply_dropped
    sent = requests[1]["body"]["messages"][3:]  # user2 and context2 (a list of text parts, parsed to text)
    assert [m["content"] for m in state.messages] == [content_text(m["content"]) for m in sent]
    assert "INTERNAL_CONTEXT" in state.messages[-1]["content"]
    assert first.turn.finish_reason is FinishReason.STOP
    judged = JudgeInput.from_turn(first.turn, state)  # the task is the user's message, not the context
    assert "two plus two" in judged.task and "INTERNAL_CONTEXT" not in judged.task + judged.since_task


async def test_openclaw_prompt_cache_key_is_its_session_key() -> None:
    journal = MemoryJournal()
    assert await replay(fixture("openclaw_prompt_cache_key.json"), journal) == [200, 200]
    first, second = journal.records()
    assert (first.turn.key, second.turn.key) == ("pck2:0:0", "pck2:0:1") and first.turn.client_key == "pck2:0"
    assert first.state is TurnState.OBSERVED and first.next_state.continuous and first.next_state.dropped_messages == 1


async def test_mini_swe_agent_dropped_reply_and_tool_results_are_next_states() -> None:
    journal = MemoryJournal()
    requests = fixture("mini_swe_agent_cli_scripted.json")
    assert await replay(requests, journal) == [200, 200, 200]
    turns = journal.records()
    assert len({r.turn.session_id for r in turns}) == 1 and [r.turn.turn_index for r in turns] == [0, 1, 2]
    dropped = turns[0].next_state
    assert dropped.reply_dropped and dropped.continuous and dropped.messages[0]["content"].startswith("Tool call error")
    tool = turns[1].next_state
    assert tool.kind is NextStateKind.TOOL and tool.continuous and not tool.reply_dropped
    assert turns[1].turn.finish_reason is FinishReason.TOOL_CALLS  # what the client was told
    verdict = await ReplyDroppedJudge().judge(JudgeInput.from_turn(turns[0].turn, dropped))
    assert verdict is not None and verdict.score == -1
    assert await ReplyDroppedJudge().judge(JudgeInput.from_turn(turns[1].turn, tool)) is None


async def test_mini_swe_agent_repeated_format_errors_chain_one_session() -> None:
    journal = MemoryJournal()
    assert await replay(fixture("mini_swe_agent_tiny_model_format_errors.json"), journal) == [200, 200, 200]
    first, second, third = journal.records()
    assert first.turn.session_id == second.turn.session_id == third.turn.session_id
    assert first.next_state.reply_dropped and second.next_state.reply_dropped
    assert third.state is TurnState.SERVED


@pytest.mark.parametrize("name", ["openclaw_two_turns.json", "mini_swe_agent_cli_scripted.json"])
async def test_replayed_sequences_log_why_each_request_matched(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="slime_openclaw.gateway.recording")
    requests = fixture(name)
    await replay(requests, MemoryJournal())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request -> session")]
    assert len(lines) == len(requests) and "history continues no open session" in lines[0]
    assert all("history" in line for line in lines[1:])
    texts = [m["content"] for r in requests for m in r["body"]["messages"] if isinstance(m.get("content"), str)]
    assert not any(text[:40] in line for line in lines for text in texts if len(text) >= 20)  # never user text


async def test_a_failed_request_leaves_no_session_open_and_a_retry_finds_the_turn() -> None:
    journal = MemoryJournal()
    failing = [False]
    engine = ScriptedEngine(lambda ids: reply_ids("fine"))
    generate = engine.generate

    async def flaky(request):  # type: ignore[no-untyped-def]
        if failing[0]:
            raise aiohttp.ClientConnectionError("engine down")
        return await generate(request)

    engine.generate = flaky  # type: ignore[method-assign]
    async with running_gateway(engine, journal=journal) as (api, deps):
        failing[0] = True
        with pytest.raises(Exception, match="502"):
            await api.chat.completions.create(model="tiny", messages=[user("hello")])
        assert deps.metrics.sessions_open == 0  # nothing recorded, nothing open
        failing[0] = False
        await api.chat.completions.create(model="tiny", messages=[user("hello")])
        history = [user("hello"), said("fine"), user("next")]
        failing[0] = True
        with pytest.raises(Exception, match="502"):
            await api.chat.completions.create(model="tiny", messages=history)
        failing[0] = False
        await api.chat.completions.create(model="tiny", messages=history)  # the client's retry
        assert deps.metrics.sessions_open == 1
    first, second = journal.records()
    assert first.turn.session_id == second.turn.session_id and second.turn.turn_index == 1  # the retry's index
    assert first.next_state.continuous and first.next_state.messages[-1]["content"] == "next"


def test_session_key_order_header_metadata_prompt_cache_key_user() -> None:
    from slime_openclaw.errors import RequestError
    from slime_openclaw.gateway.recording import turn_context
    from slime_openclaw.gateway.wire import parse_chat_request

    body: dict[str, Any] = {"model": "m", "messages": [user("x")], "user": "u", "prompt_cache_key": "p",
                            "metadata": {"session_id": "m"}}
    keys = []
    for drop in ("", "metadata", "prompt_cache_key", "user"):
        body.pop(drop, None)
        request = parse_chat_request(body)
        keys.append((turn_context({"X-Session-Id": "h"}, request).session_id, turn_context({}, request).session_id))
    assert keys == [("h", "m"), ("h", "p"), ("h", "u"), ("h", None)]
    assert turn_context({}, parse_chat_request({"model": "m", "messages": [user("x")]})).matched_by == "history"
    with pytest.raises(RequestError, match="prompt_cache_key"):
        parse_chat_request({"model": "m", "messages": [user("x")], "prompt_cache_key": 7})


def test_token_ids_are_hashed_only_where_token_continuity_is_checked() -> None:
    from slime_openclaw.gateway.metrics import GatewayMetrics
    from slime_openclaw.gateway.recording import TurnBook
    from slime_openclaw.gateway.sessions import SessionTable
    from slime_openclaw.journal.memory import MemoryJournal

    prompt = History.of([SYSTEM, user("hi")])
    books = {check: TurnBook(MemoryJournal(), SessionTable(ttl=60, max_sessions=8), GatewayMetrics(),
                             check_token_continuity=check) for check in (False, True)}
    loose = books[False]._pending("k", prompt, said("yo"), (5, 6), (7,))
    strict = books[True]._pending("k", prompt, said("yo"), (5, 6), (7,))
    assert (loose.token_count, loose.token_hash) == (3, "")  # nothing reads it: never computed
    assert strict == PendingTurn.build("k", prompt, said("yo"), (5, 6, 7)) and strict.token_hash == tokens_hash([5, 6, 7])
    assert loose.reply_keys == strict.reply_keys and loose.prompt_key == strict.prompt_key
    follow = History.of([SYSTEM, user("hi"), said("yo"), user("more")])
    assert next_state_for(loose, follow, [5, 6, 7, 8], now=1.0, check_tokens=False).continuous
