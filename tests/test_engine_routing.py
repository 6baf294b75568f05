"""Cache-affine routing and weight updates on the engine calls of a session.

Every engine call of a session (each generation attempt, resumed ones included, and the
teacher's scoring call) carries slime's ``X-SMG-Routing-Key: <session>`` header; the tests
read it where it arrives: in the scripted engine served over HTTP, behind the real
``EngineClient``. A scoring call the engine aborts (a weight update) is sent again and
scored, never dropped as a judge error; an aborted judge vote is retried, never parsed from
its cut-off text.
"""

from __future__ import annotations

import hashlib

import pytest

from slime_openclaw.engine.client import EngineClient, routing_headers
from slime_openclaw.signals.judge import JudgeUnavailable
from slime_openclaw.signals.teacher import TeacherScorer
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine, served, token_log_prob
from tests.test_signals_fakes import CHAT, HINT, CharRenderer, make_turn

MSGS = [{"role": "user", "content": "hello"}]


async def test_every_generation_attempt_carries_the_session_key() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids("a reply of some length"), chunk_size=3)
    async with served(engine) as url, EngineClient(url) as client, running_gateway(client) as (api, _):
        headers = {"X-Session-Id": "sess-1"}
        await api.chat.completions.create(model="tiny", messages=MSGS, extra_headers=headers)
        engine.abort_next(after=4)  # a weight update in the middle: the resumed attempt keeps the key
        stream = await api.chat.completions.create(model="tiny", messages=MSGS, stream=True,
                                                   extra_headers=headers)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "other"}])
    assert text == "a reply of some length"
    keys = [r.routing_key for r in engine.requests]
    assert keys[:3] == ["sess-1"] * 3, keys  # non-streamed, streamed, its resume after the abort
    assert keys[3] and keys[3] != "sess-1"  # a session the gateway opened itself has its own key


async def test_teacher_scoring_retries_an_aborted_call_with_the_session_key() -> None:
    engine = ScriptedEngine(lambda ids: [])
    turn = make_turn(session_id="sess-7", messages=CHAT)
    async with served(engine) as url, EngineClient(url) as client:
        scorer = TeacherScorer(client, CharRenderer())
        engine.abort_next(after=0)  # the first scoring call meets a weight update
        result = await scorer.score(turn, HINT)
    start = len(result.prompt_ids)
    expected = tuple(token_log_prob(start + j, t) for j, t in enumerate(turn.response_ids))
    assert result.log_probs == pytest.approx(expected)
    assert scorer.aborts == 1 and len(engine.requests) == 2
    assert [r.routing_key for r in engine.requests] == ["sess-7", "sess-7"]
    assert result.weight_version == 1  # scored by the weights the update loaded


async def test_teacher_that_keeps_aborting_is_unavailable_not_an_error() -> None:
    class AlwaysAborting(ScriptedEngine):
        async def generate(self, request):  # type: ignore[no-untyped-def]
            self.abort_next(after=0)
            return await super().generate(request)

    now = [0.0]
    engine = AlwaysAborting(lambda ids: [])
    scorer = TeacherScorer(engine, CharRenderer(), abort_stall_s=0.2, clock=lambda: now[0])

    async def tick(request):  # type: ignore[no-untyped-def]
        now[0] += 0.1
        return await AlwaysAborting.generate(engine, request)

    engine.generate = tick  # type: ignore[method-assign]
    with pytest.raises(JudgeUnavailable, match="aborted scoring"):
        await scorer.score(make_turn(messages=CHAT), HINT)
    assert scorer.aborts >= 2


def test_a_key_that_cannot_be_a_header_value_is_sent_as_its_digest() -> None:
    assert routing_headers("sess-1") == {"X-SMG-Routing-Key": "sess-1"}
    assert routing_headers(None) is None and routing_headers("") is None
    odd = "a b\r\nX-Evil: 1"
    assert routing_headers(odd) == {"X-SMG-Routing-Key": hashlib.sha256(odd.encode()).hexdigest()}
    assert routing_headers("ü" * 3) == {"X-SMG-Routing-Key": hashlib.sha256("ü".encode() * 3).hexdigest()}


async def test_an_aborted_judge_vote_is_retried_not_parsed_from_its_cut_off_text() -> None:
    from slime_openclaw.signals.judge_backends import EngineTextGenerator, RetryPolicy, call_with_retries

    class Chars:
        def decode(self, ids, skip_special_tokens=True):  # type: ignore[no-untyped-def]
            return "".join(chr(i) for i in ids)

    engine = ScriptedEngine(lambda ids: [ord(c) for c in "Score: 1"])
    async with served(engine) as url, EngineClient(url) as client:
        generator = EngineTextGenerator(client, CharRenderer(), Chars())
        engine.abort_next(after=3)  # a weight update cuts the first vote after "Sco"
        outcome = await call_with_retries(lambda: generator.complete(CHAT), RetryPolicy(retries=1, backoff_s=0.01))
    assert outcome.value == "Score: 1" and outcome.attempts == 2
