"""The parameter policy (README's table): ignored fields pass, unsafe ones are 400, the extra
sampling knobs reach the engine and the journal, template variables reach the template,
and a prompt over the context is the client's 400 before the engine is called."""

from __future__ import annotations

from typing import Any

import pytest
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (fixtures)

from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.errors import RequestError
from slime_openclaw.gateway.chat import ChatSettings
from slime_openclaw.gateway.wire import IGNORED_FIELDS, parse_chat_request
from slime_openclaw.journal.memory import MemoryJournal
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

U = [{"role": "user", "content": "hi"}]
GOOD = {"model": "tiny", "messages": U}

IGNORED_AS_SENT = {
    "reasoning_effort": "low", "verbosity": "low", "safety_identifier": "user-123", "audio": None,
    "prediction": None, "stream_options": {"include_usage": False}, "parallel_tool_calls": True, "store": False,
    "service_tier": "auto", "modalities": ["text"], "n": 1, "logit_bias": {}, "presence_penalty": 0,
    "response_format": {"type": "text"}, "web_search_options": {},
}

REFUSED = [
    ({"n": 2}, "n"),
    ({"logit_bias": {"5": 1}}, "logit_bias"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"frequency_penalty": 0.3}, "frequency_penalty"),
    ({"top_k": -5}, "top_k"),
    ({"min_p": 2}, "min_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ({"functions": []}, "functions"),
]


def test_fields_that_change_nothing_are_accepted() -> None:
    assert set(IGNORED_FIELDS) <= set(IGNORED_AS_SENT) | {"prediction"}
    request = parse_chat_request({**GOOD, **IGNORED_AS_SENT})
    assert request.messages == tuple(U) and dict(request.template_kwargs) == {"reasoning_effort": "low"}


@pytest.mark.parametrize(("extra", "param"), REFUSED, ids=[p for _, p in REFUSED])
def test_fields_that_would_change_generation_silently_are_refused(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_chat_request({**GOOD, **extra})
    assert caught.value.status == 400 and caught.value.param == param


async def test_extra_sampling_knobs_reach_the_engine_and_the_journal() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids("ok"))
    journal = MemoryJournal()
    async with running_gateway(engine, journal=journal) as (api, _):
        await api.chat.completions.create(model="tiny", messages=U, temperature=0.7, extra_body={
            "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "chat_template_kwargs": {"enable_thinking": False}})
    sampling = engine.requests[0].sampling
    assert (sampling.top_k, sampling.min_p, sampling.repetition_penalty) == (20, 0.05, 1.1)
    assert sampling.to_json()["min_p"] == 0.05 and sampling.to_json()["repetition_penalty"] == 1.1
    [record] = list(journal.iter_turns())
    recorded = record.turn.sampling
    assert (recorded["top_k"], recorded["min_p"], recorded["repetition_penalty"]) == (20, 0.05, 1.1)
    assert recorded["template_kwargs"] == {"enable_thinking": False}


QWEN_STYLE = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)


def test_template_variables_reach_a_template_that_reads_them(tiny_tokenizer: Any) -> None:  # noqa: F811
    renderer = ChatRenderer(tiny_tokenizer, chat_template=QWEN_STYLE)
    plain = renderer.render_text(U)
    assert plain.endswith("<|im_start|>assistant\n")
    off = renderer.render_text(U, variables={"enable_thinking": False, "reasoning_effort": "low", "tokenize": True})
    assert off == plain + "<think>\n\n</think>\n\n"
    assert renderer.render_ids(U, variables={"enable_thinking": False}) != renderer.render_ids(U)
    builtin = ChatRenderer(tiny_tokenizer)  # the package's template reads no variables: same prompt
    assert builtin.render_ids(U, variables={"enable_thinking": False}) == builtin.render_ids(U)


async def test_prompt_over_the_context_is_400_before_the_engine_is_called() -> None:
    engine = ScriptedEngine(lambda ids: reply_ids("ok"))
    async with running_gateway(engine, chat=ChatSettings(max_context_tokens=40)) as (api, _):
        import openai

        with pytest.raises(openai.BadRequestError) as caught:
            await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 60}],
                                              max_tokens=10)
        error = caught.value.body
        assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
        assert error["message"].startswith("This model's maximum context length is 40 tokens. However, you requested")
        assert "Please reduce the length of the messages or completion." in error["message"]
        assert engine.requests == []
        short = await api.chat.completions.create(model="tiny", messages=U, max_tokens=1000)
        assert short.choices[0].message.content == "ok"
        assert engine.requests[0].sampling.max_new_tokens == 40 - len(engine.requests[0].input_ids)
