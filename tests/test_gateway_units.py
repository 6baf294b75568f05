"""Unit tests of the gateway's pure parts: request validation, resume loop edge cases, stop
trimming, auth rules, metrics text (sessions and continuity: tests/test_sessions.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from slime_openclaw.engine.protocol import GenerateDelta, GenerateOutput, GenerateRequest, SamplingParams
from slime_openclaw.errors import AuthenticationError, ConfigError, EngineError, RequestError
from slime_openclaw.gateway.auth import check_bearer, check_bind, is_loopback
from slime_openclaw.gateway.generation import ResumableGeneration, ResumePolicy
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.gateway.responses import ChunkEncoder, StopTrimmer, chunk, sse
from slime_openclaw.gateway.wire import parse_chat_request, parse_json_body
from slime_openclaw.types import FinishReason
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


def test_settle_collector_freezes_start_up_and_raises_the_young_threshold() -> None:
    import gc

    from slime_openclaw.gateway.collector import OLDER_THRESHOLDS, YOUNG_THRESHOLD, settle_collector

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        settle_collector()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("depth, ok", [(64, True), (65, False)])
def test_body_nesting_limit_holds_for_small_bodies_whether_or_not_their_brackets_settle_it(depth: int, ok: bool) -> None:
    """A small body opening at most MAX_JSON_DEPTH brackets passes without a walk; one that opens more
    (here in a string too) is walked, and only a body nested deeper than the limit is refused."""
    nested = "[" * (depth - 1) + "]" * (depth - 1)  # the body object itself is one level
    for padding in ("", "[" * 100):  # brackets inside a string: counted, not nesting
        raw = ('{"pad":"' + padding + '","deep":' + nested + "}").encode()
        if ok:
            assert parse_json_body(raw)["pad"] == padding
        else:
            with pytest.raises(RequestError, match="nested deeper"):
                parse_json_body(raw)
