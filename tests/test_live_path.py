"""The whole path with real parts: the openai client -> gateway -> embedded engine serving the
tiny model -> SQLite journal -> signal workers (rule judges, the correction-hint rule, the LLM
judge/hint through the policy engine) -> READY samples, for each method.

User-driven paths run on the real engine; the tiny model's LLM votes are parse failures and
must not stop rule results. The tool path (a served tool call, then tool results with an
error and a success) runs on the scripted engine, which emits the tool call as the tiny
tokenizer's tokens, so the gateway parses and records it like any model's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
from slime_openclaw.journal.base import JournalStore
from slime_openclaw.live import LiveService, live_service
from slime_openclaw.types import Method, NextStateKind, TrainingSample, TurnState
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served

CORRECTION = "No, I meant a haiku about the sea. Don't use lists."


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="module")
def engine_url(model_dir: Path) -> Iterator[str]:
    with Runtime.load(model_dir, max_running=8) as runtime, ServerThread(runtime) as url:
        yield url


def live_config(tmp_path: Path, method: str, **extra: Any) -> OpenClawConfig:
    return OpenClawConfig.from_mapping({
        "openclaw_method": method,
        "openclaw_journal_path": str(tmp_path / "journal.sqlite"),
        "openclaw_judge_votes": 1,
        "openclaw_hint_votes": 1,
        "openclaw_judge_max_new_tokens": 8,
        "openclaw_judge_timeout_s": 60.0,
        "openclaw_gateway_model_name": "tiny",
        **extra,
    })


@pytest.fixture
async def running(tmp_path: Path, engine_url: str, model_dir: Path, request: pytest.FixtureRequest
                  ) -> AsyncIterator[tuple[LiveService, openai.AsyncOpenAI, Method]]:
    config = live_config(tmp_path, request.param, openclaw_judge_endpoints=["policy"])
    async with live_service(config, engine_url=engine_url, tokenizer_dir=model_dir, port=0,
                            poll_interval_s=0.05) as live, \
            openai.AsyncOpenAI(base_url=live.url, api_key="unused", max_retries=0, timeout=60) as api:
        yield live, api, Method(request.param)


def echo(message: Any) -> dict[str, Any]:
    """The assistant message as a client sends it back in the next request."""
    data = message.model_dump(exclude_none=True)
    return {k: v for k, v in data.items() if k in ("role", "content", "tool_calls")}


async def ask(api: openai.AsyncOpenAI, messages: list[dict], *, session: str | None = None, done: bool = False,
              stream: bool = False) -> dict[str, Any]:
    headers = {}
    if session:
        headers["X-Session-Id"] = session
    if done:
        headers["X-Session-Done"] = "1"
    if not stream:
        out = await api.chat.completions.create(model="tiny", messages=messages, max_tokens=8, seed=3,
                                                extra_headers=headers)
        return echo(out.choices[0].message)
    chunks = await api.chat.completions.create(model="tiny", messages=messages, max_tokens=8, seed=3,
                                               stream=True, extra_headers=headers)
    content = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    return {"role": "assistant", "content": content}


def short(session_id: str) -> str:
    """The test's name of a session: "fix" has a header id, the other one a generated id."""
    return "fix" if session_id == "fix" else "chat"


async def settle(journal: JournalStore, turns: int, timeout_s: float = 90.0) -> None:
    """Wait until ``turns`` turns exist and none waits for judging."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = journal.stats().turns_by_state
        if sum(states.values()) >= turns and states["observed"] == 0 and states["judged"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"journal did not settle: {journal.stats().turns_by_state}")


def check_sample(journal: JournalStore, sample: TrainingSample, method: Method) -> None:
    """Layout invariants every sample must meet, against the recorded turn."""
    record = journal.get(f"{sample.session_id}:{sample.turn_index}")
    assert record is not None and record.state is TurnState.READY
    n = len(sample.response_ids)
    assert sample.method is method and n > 0
    assert sample.response_ids == record.turn.response_ids and sample.prompt_ids == record.turn.prompt_ids
    assert sample.loss_mask == (1,) * n
    assert len(sample.rollout_log_probs) == n and len(sample.weight_versions) == n
    assert sample.rollout_log_probs == record.turn.response_log_probs
    assert sample.reward in (1.0, -1.0, 0.0)
    if sample.teacher_log_probs is not None:
        assert len(sample.teacher_log_probs) == n
        assert all(lp <= 0.0 for lp in sample.teacher_log_probs)


async def user_sessions(api: openai.AsyncOpenAI) -> None:
    """Session "fix": request, correction, thanks, end. Session "chat" (no id): request,
    a neutral follow-up only the LLM judge could rate, end."""
    history: list[dict] = [{"role": "user", "content": "Write a short poem about the sea."}]
    history.append(await ask(api, history, session="fix"))
    history += [{"role": "user", "content": CORRECTION}]
    history.append(await ask(api, history, session="fix", stream=True))
    history += [{"role": "user", "content": "Thanks!"}]
    await ask(api, history, session="fix", done=True)
    chat: list[dict] = [{"role": "user", "content": "Tell me about clouds."}]
    chat.append(await ask(api, chat, stream=True))
    chat += [{"role": "user", "content": "What about rain?"}]
    await ask(api, chat, done=True)


EXPECTED = {
    # (rewards of fix:0, fix:1), teacher on fix:0 / fix:1; discard reasons of the other turns
    Method.BINARY: {"fix:0": (-1.0, False), "fix:1": (1.0, False), "chat:0": "no evaluative signal"},
    Method.OPD: {"fix:0": (0.0, True), "fix:1": "no accepted hint", "chat:0": "no accepted hint"},
    Method.COMBINE: {"fix:0": (-1.0, True), "fix:1": (1.0, False), "chat:0": "no evaluative or directive signal"},
}


@pytest.mark.parametrize("running", [m.value for m in Method], indirect=True)
async def test_user_sessions_give_samples_per_method(
        running: tuple[LiveService, openai.AsyncOpenAI, Method]) -> None:
    live, api, method = running
    await user_sessions(api)
    journal = live.journal
    await settle(journal, turns=5)
    by_key = {f"{short(r.turn.session_id)}:{r.turn.turn_index}": r for r in journal.iter_turns()}
    assert sorted(by_key) == ["chat:0", "chat:1", "fix:0", "fix:1", "fix:2"]
    assert by_key["fix:0"].next_state.messages[0]["content"] == CORRECTION
    for key in ("fix:2", "chat:1"):  # session ends: nothing to judge
        assert by_key[key].next_state.kind is NextStateKind.SESSION_END
        assert (by_key[key].state, by_key[key].discard_reason) == (TurnState.DISCARDED, "no next state")
    samples = {f"{short(s.session_id)}:{s.turn_index}": s for s in journal.drain(100, "t")}
    for key, expected in EXPECTED[method].items():
        record = by_key[key]
        if isinstance(expected, str):
            assert (record.state, record.discard_reason) == (TurnState.DISCARDED, expected), key
            assert key not in samples
            continue
        reward, has_teacher = expected
        sample = samples.pop(key)
        check_sample(journal, sample, method)
        assert sample.reward == reward and (sample.teacher_log_probs is not None) == has_teacher, key
    assert not samples
    if method is not Method.BINARY:  # the correction became the hint, quoted
        hint = by_key["fix:0"].hint
        assert hint is not None and hint.source == "rule:correction" and CORRECTION in hint.text
    assert journal.drain(100, "t") == []  # handed out once
    counters = live.counters
    assert counters["errors"] == 0 and counters["deferred"] == 0
    if method is not Method.OPD:  # the tiny model's judge vote on the neutral turn did not parse
        assert counters["parse_failures"] >= 1


def tool_script(call_ids: list[int], error_call: list[int], done: list[int], marker: int, base: int):
    """First answer a tool call, after one tool result another call, after two "Done.".

    Tool results are counted by their ``<tool_response>`` tokens, less the ``base`` ones the
    tools preamble of the template holds."""

    def script(prompt: tuple[int, ...]) -> list[int]:
        seen = prompt.count(marker) - base
        return [call_ids, error_call, done][min(seen, 2)]

    return script


TOOLS = [{"type": "function", "function": {"name": "run", "description": "Run a shell command.",
                                           "parameters": {"type": "object",
                                                          "properties": {"cmd": {"type": "string"}}}}}]


@pytest.fixture
async def scripted_url(model_dir: Path) -> AsyncIterator[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)

    def enc(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False)

    first = enc('<tool_call>\n{"name": "run", "arguments": {"cmd": "ls /missing"}}\n</tool_call><|im_end|>')
    second = enc('<tool_call>\n{"name": "run", "arguments": {"cmd": "ls"}}\n</tool_call><|im_end|>')
    marker = tok.convert_tokens_to_ids("<tool_response>")
    assert isinstance(marker, int) and marker != tok.unk_token_id
    preamble = TokenizerCodec.from_dir(model_dir).render_ids([{"role": "user", "content": "x"}], TOOLS)
    engine = ScriptedEngine(tool_script(first, second, enc("Done.<|im_end|>"), marker, preamble.count(marker)))
    async with served(engine) as url:
        yield url


@pytest.mark.parametrize("method", ["binary", "combine"])
async def test_tool_results_are_judged_by_rules(tmp_path: Path, scripted_url: str, model_dir: Path,
                                                method: str) -> None:
    config = live_config(tmp_path, method)  # no endpoints: rules only
    async with live_service(config, engine_url=scripted_url, tokenizer_dir=model_dir, port=0,
                            poll_interval_s=0.05) as live, \
            openai.AsyncOpenAI(base_url=live.url, api_key="unused", max_retries=0) as api:
        history: list[dict] = [{"role": "user", "content": "What is in /missing?"}]
        out = await api.chat.completions.create(model="tiny", messages=history, tools=TOOLS)
        assert out.choices[0].finish_reason == "tool_calls"
        call = out.choices[0].message.tool_calls[0]
        history += [echo(out.choices[0].message),
                    {"role": "tool", "tool_call_id": call.id, "content": '{"exit_code": 2, "stderr": "No such file"}'}]
        stream = await api.chat.completions.create(model="tiny", messages=history, tools=TOOLS, stream=True)
        calls = [tc async for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        call_id, name, args = calls[0].id, calls[0].function.name, "".join(tc.function.arguments or "" for tc in calls)
        history += [{"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": '{"exit_code": 0, "stdout": "a.txt"}'}]
        final = await api.chat.completions.create(model="tiny", messages=history, tools=TOOLS,
                                                  extra_headers={"X-Session-Done": "1"})
        assert final.choices[0].message.content == "Done."
        await settle(live.journal, turns=3)
        turns = list(live.journal.iter_turns())
        assert [t.next_state.kind for t in turns] == [NextStateKind.TOOL, NextStateKind.TOOL, NextStateKind.SESSION_END]
        assert [t.verdict.score if t.verdict else None for t in turns] == [-1, 1, None]
        assert [t.state for t in turns] == [TurnState.READY, TurnState.READY, TurnState.DISCARDED]
        samples = live.journal.drain(10, "t")
        assert [(s.turn_index, s.reward, s.teacher_log_probs) for s in samples] == [(0, -1.0, None), (1, 1.0, None)]
        for sample in samples:
            check_sample(live.journal, sample, Method(method))
        assert live.journal.drain(10, "t") == []
        assert live.metrics()["openclaw/samples_in_flight"] == 2.0
