"""Unit tests of the gateway's pure parts: request validation, sessions and their memory bound,
resume loop edge cases, stop trimming, auth rules, metrics text."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from slime_openclaw.engine.protocol import GenerateDelta, GenerateOutput, GenerateRequest, SamplingParams
from slime_openclaw.errors import AuthenticationError, ConfigError, EngineError, RequestError
from slime_openclaw.gateway.auth import check_bearer, check_bind, is_loopback
from slime_openclaw.gateway.generation import ResumableGeneration, ResumePolicy
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.gateway.responses import ChunkEncoder, StopTrimmer, chunk, sse
from slime_openclaw.gateway.sessions import (
    PendingTurn,
    SessionTable,
    history_key,
    messages_hash,
    next_state_for,
    tokens_hash,
)
from slime_openclaw.gateway.wire import parse_chat_request
from slime_openclaw.types import FinishReason, NextStateKind, TurnType
from tests.scripted_engine import ScriptedEngine, token_log_prob


def test_wire_normalizes_messages() -> None:
    req = parse_chat_request({
        "model": "m", "max_completion_tokens": 7, "stop": "END", "metadata": {"session_id": "s"},
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ],
    })
    assert req.messages[0] == {"role": "system", "content": "ab"}
    assert req.messages[1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert req.max_tokens == 7 and req.stop == ("END",) and req.metadata_session_id == "s"
    none = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                               "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"})
    assert none.render_tools == () and none.tools


def test_wire_rejects_assistant_without_content_or_calls() -> None:
    with pytest.raises(RequestError, match="content or tool_calls"):
        parse_chat_request({"model": "m", "messages": [{"role": "assistant", "content": None}]})


def test_canonical_history_ignores_echo_differences() -> None:
    ours = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1, "b": 2}'}}]}]
    echoed = [{"role": "user", "content": "q"},
              {"role": "assistant", "content": "", "reasoning_content": "hmm", "tool_calls": [
                  {"id": "other", "type": "function", "function": {"name": "f", "arguments": '{"b":2,"a":1}'}}]}]
    assert messages_hash(ours) == messages_hash(echoed)
    assert history_key([*echoed, {"role": "tool", "tool_call_id": "x", "content": "r"}]) == messages_hash(ours)
    assert history_key([{"role": "user", "content": "q"}]) is None


def test_fingerprints_tell_apart_what_differs_and_only_that() -> None:
    import numpy as np

    assert tokens_hash([1, 2, 3]) == tokens_hash((1, 2, 3)) == tokens_hash(np.array([1, 2, 3]))
    assert tokens_hash(range(1, 4)) == tokens_hash([1, 2, 3])
    assert len({tokens_hash(ids) for ids in ([1, 2, 3], [1, 2], [12, 3], [1, 23], [], [3, 2, 1])}) == 6
    base = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    variants = [base, base[:1], [{"role": "user", "content": "q "}, base[1]],
                [base[0], {"role": "assistant", "content": "a", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]}],
                [base[0], {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]]
    assert len({messages_hash(v) for v in variants}) == len(variants)


def _pending(key: str, history: list[dict], ids: list[int]) -> PendingTurn:
    return PendingTurn.build(key, history, ids)


def test_session_table_matches_by_history_and_ends_idle_sessions() -> None:
    table = SessionTable(ttl=10.0)
    a, ended = table.assign([{"role": "user", "content": "hi"}], "a", None, now=0.0)
    assert (a.session_id, a.matched_by, a.turn_index, a.created) == ("a", "header", 0, True) and not ended
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    table.complete(a.session_id, _pending("k0", history, [1, 2, 3]), now=1.0)
    b, _ = table.assign([*history, {"role": "user", "content": "more"}], None, None, now=2.0)
    assert (b.session_id, b.turn_index, b.matched_by) == (a.session_id, 1, "history")
    assert b.previous is not None and b.previous.turn_key == "k0"
    side, _ = table.assign([{"role": "user", "content": "title"}], a.session_id, TurnType.SIDE, now=3.0)
    assert side.previous is None and side.turn_index == 2
    table.complete(a.session_id, _pending("k1", [*history, {"role": "user", "content": "more"}], [1]), now=4.0)
    assert table.expire(now=13.0) == []
    assert [p.turn_key for p in table.expire(now=15.0)] == ["k1"] and len(table) == 0


def test_next_state_continuity_rules() -> None:
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    prev = _pending("k", history, [5, 6, 7])
    tools = [{"role": "tool", "tool_call_id": "a", "content": "1"}, {"role": "tool", "tool_call_id": "b", "content": "2"}]
    ok = next_state_for(prev, [*history, *tools], [5, 6, 7, 8], now=1.0)
    assert ok.continuous and ok.kind is NextStateKind.TOOL and len(ok.messages) == 2
    edited = next_state_for(prev, [{"role": "user", "content": "HI"}, *history[1:], tools[0]], [5, 6, 7, 8], now=1.0)
    assert not edited.continuous and edited.messages == () and "does not extend" in edited.break_reason
    tokens = next_state_for(prev, [*history, tools[0]], [5, 6, 9, 8], now=1.0)
    assert not tokens.continuous and "tokens" in tokens.break_reason
    assert next_state_for(prev, [*history, tools[0]], [5, 6, 9, 8], now=1.0, check_tokens=False).continuous
    retried = next_state_for(prev, history, [5, 6, 7], now=1.0)
    assert not retried.continuous


def _churn(table: SessionTable, start: int, stop: int) -> int:
    """Open ``stop - start`` new sessions with one served turn each; returns how many ended."""
    ended_total = 0
    for i in range(start, stop):
        msgs = [{"role": "user", "content": f"conversation {i}"}]
        a, ended = table.assign(msgs, None, None, now=float(i))
        ended_total += len(ended)
        history = [*msgs, {"role": "assistant", "content": "r"}]
        table.complete(a.session_id, _pending(f"k{i}", history, [i] * 50), now=float(i))
    return ended_total


def test_ten_thousand_sessions_stay_bounded() -> None:
    table = SessionTable(ttl=1e9, max_sessions=10_000)
    assert _churn(table, 0, 12_000) == 2_000  # every evicted session handed back its pending turn
    assert len(table) == 10_000 and len(table._by_history) == 10_000


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


@pytest.mark.parametrize("stream", [True, False])
async def test_resume_gives_up_after_stall_timeout(stream: bool) -> None:
    class AlwaysAbort:
        async def stream(self, request):  # type: ignore[no-untyped-def]
            yield GenerateDelta((), (), 0, FinishReason.ABORT)

        async def generate(self, request):  # type: ignore[no-untyped-def]
            return GenerateOutput((), (), FinishReason.ABORT, 0, len(request.input_ids))

    clock = iter(float(i) for i in range(100))
    gen = ResumableGeneration(AlwaysAbort(), (1,), SamplingParams(max_new_tokens=4),  # type: ignore[arg-type]
                              policy=ResumePolicy(stall_timeout=3.0, first_backoff=0.0), clock=lambda: next(clock),
                              stream=stream)
    with pytest.raises(EngineError, match="kept aborting"):
        async for _ in gen.run():
            pass
    assert gen.resumes >= 3


@pytest.mark.parametrize("stream", [True, False])
async def test_resume_stops_when_budget_is_spent_by_an_abort(stream: bool) -> None:
    engine = ScriptedEngine(lambda ids: [7] * 10, chunk_size=5)
    engine.abort_next(after=5)
    gen = ResumableGeneration(engine, (1, 2), SamplingParams(max_new_tokens=5), stream=stream)
    got = [ids async for ids in gen.run()]
    assert sum(got, ()) == (7,) * 5 and gen.finish_reason is FinishReason.LENGTH and len(engine.requests) == 1


@dataclass
class WholeAnswersOnly:
    """The scripted engine with streaming refused: proves the non-streamed mode never streams."""

    inner: ScriptedEngine
    outputs: list[GenerateOutput] = field(default_factory=list)

    async def generate(self, request: GenerateRequest) -> GenerateOutput:
        out = await self.inner.generate(request)
        self.outputs.append(out)
        return out

    def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateDelta]:
        raise AssertionError("the non-streamed mode must not stream")


async def test_non_streamed_attempts_resume_through_aborts_with_partial_answers() -> None:
    answer = list(range(100, 130))
    scripted = ScriptedEngine(lambda ids: answer, chunk_size=4)
    engine = WholeAnswersOnly(scripted)
    scripted.abort_next(after=7)
    gen = ResumableGeneration(engine, (1, 2, 3), SamplingParams(max_new_tokens=40, stop_token_ids=(0,)),  # type: ignore[arg-type]
                              request_id="r", stream=False, policy=ResumePolicy(first_backoff=0.0))
    batches = []
    async for ids in gen.run():
        batches.append(ids)
        if len(batches) == 1:
            scripted.abort_next(after=0)  # the next attempt is aborted before its first token
    assert batches == [tuple(answer[:7]), tuple(answer[7:])]  # one batch per attempt that produced tokens
    assert [o.finish_reason for o in engine.outputs] == [FinishReason.ABORT, FinishReason.ABORT, FinishReason.STOP]
    assert gen.output_ids == answer and gen.finish_reason is FinishReason.STOP and gen.resumes == 2
    prompts = [r.input_ids for r in scripted.requests]
    assert prompts == [(1, 2, 3), (1, 2, 3, *answer[:7]), (1, 2, 3, *answer[:7])]
    assert [r.sampling.max_new_tokens for r in scripted.requests] == [40, 33, 33]
    assert [r.rid for r in scripted.requests] == ["r-0", "r-1", "r-2"]
    assert gen.log_probs == [token_log_prob(3 + i, t) for i, t in enumerate(answer)]
    assert gen.weight_versions == [0] * 7 + [2] * 23  # each answer's version, for all its tokens


async def test_non_streamed_answer_with_mismatched_log_probs_is_an_engine_error() -> None:
    class Broken:
        async def generate(self, request):  # type: ignore[no-untyped-def]
            return GenerateOutput((5, 6), (-1.0,), FinishReason.STOP, 0, len(request.input_ids))

    gen = ResumableGeneration(Broken(), (1,), SamplingParams(), stream=False)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="1 log-probs for 2 tokens"):
        async for _ in gen.run():
            pass


def test_stop_trimmer_holds_back_prefixes() -> None:
    trimmer = StopTrimmer(["<END>"])
    out = [trimmer.feed(p) for p in ("ab<", "E", "Nx", " c<E", "ND> tail")]
    assert "".join(out) == "ab<ENx c" and trimmer.stopped and trimmer.flush() == ""
    plain = StopTrimmer(["zz"])
    assert plain.feed("abz") == "ab" and plain.flush() == "z"


def test_auth_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(ConfigError, match="without an API key"):
        check_bind("0.0.0.0", None)
    check_bearer(None, None)
    check_bearer("Bearer key", "key")
    check_bearer("bearer  key", "key")
    for header in (None, "Bearer nope", "key", "Basic key"):
        with pytest.raises(AuthenticationError):
            check_bearer(header, "key")


def test_metrics_text_format() -> None:
    metrics = GatewayMetrics()
    metrics.requests[("/v1/chat/completions", 200)] += 3
    metrics.latency.observe(0.003)
    metrics.latency.observe(7.0)
    metrics.next_states["user"] += 1
    text = metrics.render()
    assert 'openclaw_gateway_requests_total{endpoint="/v1/chat/completions",status="200"} 3' in text
    assert 'openclaw_gateway_request_seconds_bucket{le="0.005"} 1' in text
    assert 'openclaw_gateway_request_seconds_bucket{le="10"} 2' in text
    assert 'openclaw_gateway_request_seconds_bucket{le="+Inf"} 2' in text
    assert "openclaw_gateway_request_seconds_count 2" in text
    assert 'openclaw_gateway_next_states_total{kind="user"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line


@pytest.mark.parametrize("delta, finish, logprobs", [
    ({"role": "assistant", "content": ""}, None, None),
    ({"content": "héllo \"quoted\" 🦀\n"}, None, None),
    ({}, "tool_calls", None),
    ({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
     None, {"content": [{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}], "refusal": None}),
])
def test_chunk_encoder_is_byte_identical_to_chunk_dicts(delta: dict, finish: str | None, logprobs: dict | None) -> None:
    fast = ChunkEncoder(cid="chatcmpl-x\u00e9", created=17, model="tiny/\"m\"").encode(
        delta, finish_reason=finish, logprobs=logprobs)
    slow = sse(chunk(cid="chatcmpl-x\u00e9", created=17, model="tiny/\"m\"", delta=delta, finish_reason=finish,
                     logprobs=logprobs))
    assert fast == slow
