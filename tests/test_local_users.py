"""Simulated users through the real gateway and the real openai client.

Two engines behind the gateway: a scripted one that answers like a policy that has learnt the
format (tool calls, styles), so every reaction kind occurs deterministically; and the embedded
engine serving the tiny model, so real sampled replies go through the whole path. Sessions are
checked in the journal: one turn per request, next states of kind user / tool / session end.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.personal import personas as P
from slime_openclaw.local.personal.users import InteractionRecord, UserSettings, mean_scores, run_users
from slime_openclaw.types import NextStateKind
from tests.gateway_fakes import running_gateway
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir())


def policy_script(tokenizer: Any) -> Any:
    """A deterministic stand-in policy: the undesired style first, the preferred one once told."""

    def answer(ids: tuple[int, ...]) -> list[int]:
        prompt = tokenizer.decode(list(ids))
        last = prompt.rsplit("<|im_start|>", 2)[-2]
        if last.startswith("tool"):
            result = json.loads(last.split("<tool_response>\n", 1)[1].split("\n</tool_response>", 1)[0])
            text = (f"It is {result['temp_c']} degrees in {result['city']}." if result.get("ok")
                    else "Sorry, no weather right now.")
        elif "# Tools" in prompt:
            city = re.findall(r"in (\w+)", prompt.split("<|im_start|>user", 1)[1])[0]
            call = json.dumps({"name": "get_weather", "arguments": {"city": city}})
            text = f"<tool_call>\n{call}\n</tool_call>"
        elif "Thanks" in last or "Never mind" in last:
            text = "You're welcome!"
        elif "Student's answer" in prompt or "student wrote" in prompt:
            text = "Nice work, you got it right: well done." if "No, I meant" in prompt else "Correct."
        else:
            told = any(d in prompt for d in P.STUDENT_DIRECTIVES)
            text = "It makes that much." if told else "**Answer:** see below"
        return tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)

    return answer


def _journal_sessions(path: Path) -> dict[str, list]:
    journal = SqliteJournal(str(path))
    try:
        sessions: dict[str, list] = {}
        for record in journal.iter_turns():
            sessions.setdefault(record.turn.session_id, []).append(record)
        return {k: sorted(v, key=lambda r: r.turn.turn_index) for k, v in sessions.items()}
    finally:
        journal.close()


async def _run_scripted(tokenizer: Any, journal_path: Path, prefix: str, seen: list) -> list[InteractionRecord]:
    engine = ScriptedEngine(policy_script(tokenizer))
    journal = SqliteJournal(str(journal_path))
    try:
        async with running_gateway(engine, journal=journal, codec=TokenizerCodec.from_dir(tiny_model_dir())) as (api, _):
            settings = UserSettings(session_prefix=prefix)
            return await run_users(str(api.base_url), P.default_personas(), 9, seed=5, concurrency=3,
                                   on_interaction=seen.append, settings=settings)
    finally:
        journal.close()


async def test_scripted_policy_sessions_reach_every_reaction_and_the_journal(tokenizer: Any, tmp_path: Path) -> None:
    seen: list[InteractionRecord] = []
    records = await _run_scripted(tokenizer, tmp_path / "j.sqlite", "a", seen)
    assert [r.index for r in records] == list(range(9)) and sorted(seen, key=lambda r: r.index) == records
    assert all(r.error is None and r.requests_failed == 0 for r in records)
    kinds = Counter(k for r in records for k in r.reactions)
    assert {"satisfied", "tool_result", "give_up"} <= set(kinds)
    assert kinds["directive"] + kinds["reask"] > 0
    scores = mean_scores(records)
    assert scores == {"student": 0.0, "teacher": 0.0, "tool_user": 1.0}  # the script's first replies
    for record in records:  # the script's student follows a directive; its teacher is never specific
        expected = {P.STUDENT: "directive" in record.reactions, P.TEACHER: False, P.TOOL_USER: True}
        assert record.satisfied is expected[record.persona]

    sessions = _journal_sessions(tmp_path / "j.sqlite")
    assert set(sessions) == {r.session_id for r in records}
    for record in records:
        turns = sessions[record.session_id]
        assert len(turns) == record.requests_ok == record.replies + 1
        next_kinds = [t.next_state.kind for t in turns]
        assert next_kinds[-1] is NextStateKind.SESSION_END  # X-Session-Done on the closing request
        assert all(k is not NextStateKind.SESSION_END for k in next_kinds[:-1])
        expected = NextStateKind.TOOL if record.persona == P.TOOL_USER else NextStateKind.USER
        assert next_kinds[0] is expected
        assert all(t.next_state.continuous for t in turns)

    again = await _run_scripted(tokenizer, tmp_path / "k.sqlite", "b", [])
    strip = [(r.persona, r.first_score, r.satisfied, r.reactions) for r in records]
    assert strip == [(r.persona, r.first_score, r.satisfied, r.reactions) for r in again]  # seeded


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    with Runtime.load(tiny_model_dir(), max_running=4) as runtime, ServerThread(runtime) as url:
        yield url


async def test_users_against_the_embedded_engine(engine_url: str, tmp_path: Path) -> None:
    engine = EngineClient(engine_url)
    journal = SqliteJournal(str(tmp_path / "j.sqlite"))
    try:
        async with running_gateway(engine, journal=journal, codec=TokenizerCodec.from_dir(tiny_model_dir())) as (api, _):
            settings = UserSettings(max_tokens=12, closing_max_tokens=2)
            records = await run_users(str(api.base_url), (P.StudentPersona(), P.TeacherPersona()), 4, seed=1,
                                      concurrency=2, settings=settings)
    finally:
        journal.close()
        await engine.aclose()
    assert all(r.error is None and r.requests_failed == 0 and r.replies >= 1 for r in records)
    sessions = _journal_sessions(tmp_path / "j.sqlite")
    assert set(sessions) == {r.session_id for r in records}
    for record in records:
        kinds = [t.next_state.kind for t in sessions[record.session_id]]
        assert kinds == [NextStateKind.USER] * record.replies + [NextStateKind.SESSION_END]


async def test_evaluation_sessions_are_served_but_not_recorded(tokenizer: Any, tmp_path: Path) -> None:
    journal = SqliteJournal(str(tmp_path / "j.sqlite"))
    try:
        async with running_gateway(ScriptedEngine(policy_script(tokenizer)), journal=journal,
                                   codec=TokenizerCodec.from_dir(tiny_model_dir())) as (api, _):
            records = await run_users(str(api.base_url), P.default_personas(), 3,
                                      settings=UserSettings(train=False))
    finally:
        journal.close()
    assert all(r.error is None and r.requests_ok >= 2 for r in records)
    assert _journal_sessions(tmp_path / "j.sqlite") == {}


async def test_unreachable_gateway_is_recorded_not_raised() -> None:
    with pytest.raises(Exception):  # noqa: B017 - the model listing itself fails: nothing to run
        await run_users("http://127.0.0.1:9/v1", P.default_personas(), 1,
                        settings=UserSettings(max_retries=0, timeout_s=2))
    records = await run_users("http://127.0.0.1:9/v1", P.default_personas(), 2,
                              settings=UserSettings(max_retries=0, timeout_s=2, model="tiny"))
    assert all(r.requests_failed == 1 and r.requests_ok == 0 and r.error for r in records)
    assert mean_scores(records) == {}
