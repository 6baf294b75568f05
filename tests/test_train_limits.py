"""slime's length limits on our path: trainable turns are generated within them, and no longer
sample is handed to slime.

The gateway caps the completion of a turn that may train at ``--rollout-max-response-len``
and at ``--rollout-max-context-len`` minus the prompt, whatever ``max_tokens`` the client
asks (it sees ``finish_reason: length``); a turn that does not train is not capped. The
rollout function's selection skips a sample over either limit (one recorded before, or
whose prompt alone was over the context).
"""

from __future__ import annotations

import argparse

from slime_openclaw.gateway.chat import ChatSettings
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.selection import SelectionRules, select
from slime_openclaw.slime.services import TrainLimits
from tests.gateway_fakes import encode, render_text, reply_ids, running_gateway
from tests.journal_factories import make_sample, make_turn
from tests.scripted_engine import ScriptedEngine

LONG = "x" * 40
MSGS = [{"role": "user", "content": "hello"}]
PROMPT_LEN = len(encode(render_text(MSGS)))


async def test_trainable_turns_stop_at_the_training_limits() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids(LONG))
    journal = MemoryJournal()
    chat = ChatSettings(train_max_new_tokens=6, train_max_context_tokens=PROMPT_LEN + 4)
    async with running_gateway(engine, journal=journal, chat=chat) as (api, _):
        capped = await api.chat.completions.create(model="tiny", messages=MSGS, max_tokens=100000,
                                                   extra_headers={"X-Session-Id": "a"})
        off = await api.chat.completions.create(model="tiny", messages=MSGS, max_tokens=100000,
                                                extra_headers={"X-OpenClaw-Train": "off"})
        side = await api.chat.completions.create(model="tiny", messages=MSGS, extra_headers={
            "X-Session-Id": "b", "X-Turn-Type": "side"})
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 4  # the context cap
    assert [r.sampling.max_new_tokens for r in engine.requests] == [4, 100000, 1024]
    assert off.choices[0].message.content == LONG and side.choices[0].message.content == LONG
    (turn,) = [t for t in journal.iter_turns() if t.turn.session_id == "a"]
    assert len(turn.turn.prompt_ids) + len(turn.turn.response_ids) == PROMPT_LEN + 4


async def test_the_response_cap_applies_when_the_context_leaves_more() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids(LONG))
    chat = ChatSettings(train_max_new_tokens=6, train_max_context_tokens=PROMPT_LEN + 1000)
    async with running_gateway(engine, chat=chat) as (api, _):
        out = await api.chat.completions.create(model="tiny", messages=MSGS, max_tokens=100000)
        short = await api.chat.completions.create(model="tiny", messages=MSGS, max_tokens=2)
    assert out.choices[0].finish_reason == "length" and out.choices[0].message.content == LONG[:6]
    assert short.usage.completion_tokens == 2  # a smaller request stays as asked


async def test_a_prompt_over_the_training_context_is_served_and_not_capped_by_it() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids("ok"))
    chat = ChatSettings(train_max_new_tokens=8, train_max_context_tokens=PROMPT_LEN - 1)
    async with running_gateway(engine, chat=chat) as (api, _):
        out = await api.chat.completions.create(model="tiny", messages=MSGS)
    assert out.choices[0].message.content == "ok" and engine.requests[0].sampling.max_new_tokens == 8


def test_selection_skips_samples_over_the_limits() -> None:
    fits = make_sample(make_turn("a", n_prompt=3, n_response=2))
    long_context = make_sample(make_turn("b", n_prompt=10, n_response=2))
    long_response = make_sample(make_turn("c", n_prompt=1, n_response=6))
    rules = SelectionRules(max_tokens=8, max_response_tokens=5)
    decided = select([fits, long_context, long_response], rules, trainer_version=None)
    assert decided.keep == [fits]
    reasons = [reason for _, reason in decided.skip]
    assert reasons == ["12 tokens, over the context limit 8 (--rollout-max-context-len)",
                       "6 response tokens, over 5 (--rollout-max-response-len)"]


def test_limits_come_from_slimes_arguments() -> None:
    args = argparse.Namespace(rollout_max_response_len=2048, rollout_max_context_len=None)
    assert TrainLimits.from_args(args) == TrainLimits(max_response_tokens=2048, max_context_tokens=None)
    assert TrainLimits.from_args(argparse.Namespace()) == TrainLimits()
