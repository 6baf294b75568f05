"""A client session key used again after its session ended (``X-Session-Done``, ``--max-sessions``
eviction, idle TTL, a gateway restart on the same journal) never loses an answered turn.

Each test asserts from the journal that every 200 answer is a recorded turn with that content:
a reused key either resumes its ended session (where the history continues the last turn) or
starts the key's next epoch (a fresh session id), so a turn key is never taken twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import openai

from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import NextStateKind, TurnState
from tests.gateway_fakes import reply_ids, running_gateway
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served
from tests.waiting import eventually


def counting() -> ScriptedEngine:
    """Every answer differs (``reply N`` for the N-th request), so the journal shows which is which."""
    seen = [0]

    def answer(ids: list[int]) -> list[int]:
        seen[0] += 1
        return reply_ids(f"reply {seen[0]}")

    return ScriptedEngine(answer)


def assert_all_recorded(journal: SqliteJournal, answers: list[tuple[str, str]]) -> None:
    """Every (client key, content) answered is one recorded turn of that key, and nothing else is."""
    recorded = sorted((r.turn.client_key, r.turn.response_message.get("content") or "") for r in journal.iter_turns())
    assert recorded == sorted(answers)


async def ask(api: openai.AsyncOpenAI, key: str, messages: list[dict], **headers: str) -> str:
    out = await api.chat.completions.create(model="tiny", messages=messages,
                                            extra_headers={"X-Session-Id": key, **headers})
    return out.choices[0].message.content or ""


async def test_session_done_then_the_same_key_starts_a_new_epoch(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        async with running_gateway(counting(), journal=journal) as (api, deps):
            answers = []
            for _ in range(3):  # three conversations under one key, each closed by X-Session-Done
                first = [{"role": "user", "content": "hello"}]
                content = await ask(api, "k", first)
                answers.append(("k", content))
                follow = [*first, {"role": "assistant", "content": content}, {"role": "user", "content": "bye"}]
                answers.append(("k", await ask(api, "k", follow, **{"X-Session-Done": "1"})))
            assert deps.metrics.turn_key_collisions == 0 and deps.metrics.recorder_errors == 0
            assert deps.metrics.turns_recorded == len(answers) == 6
        assert_all_recorded(journal, answers)
        assert sorted(r.turn.key for r in journal.iter_turns()) == ["k#1:0", "k#1:1", "k#2:0", "k#2:1", "k:0", "k:1"]
        assert journal.get("k#1:0").next_state.kind is NextStateKind.USER  # each epoch is a session of its own
        assert journal.get("k#1:0").turn.session_epoch == 1


async def test_eviction_by_capacity_and_ttl_loses_no_answer(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        async with running_gateway(counting(), journal=journal, max_sessions=2, session_ttl=0.3) as (api, deps):
            answers = []
            for round_ in range(3):  # three keys over two slots: every new request evicts another key
                for key in ("a", "b", "c"):
                    messages = [{"role": "user", "content": f"round {round_}"}]
                    answers.append((key, await ask(api, key, messages)))
            await eventually(lambda: journal.stats().turns_by_state["served"] == 0,
                             "every session idled out (no turn still waits for its next state)")
            for key in ("a", "b"):
                answers.append((key, await ask(api, key, [{"role": "user", "content": "after the ttl"}])))
            assert deps.metrics.turn_key_collisions == 0 and deps.metrics.recorder_errors == 0
            assert deps.metrics.turns_recorded == len(answers) == 11
        assert_all_recorded(journal, answers)


async def test_a_reused_key_resumes_its_session_where_the_history_continues_it(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.sqlite") as journal:
        async with running_gateway(counting(), journal=journal, max_sessions=1) as (api, _):
            history = [{"role": "user", "content": "q1"}]
            first = await ask(api, "a", history)
            await ask(api, "b", [{"role": "user", "content": "other"}])  # evicts a
            history += [{"role": "assistant", "content": first}, {"role": "user", "content": "q2"}]
            await ask(api, "a", history)
        assert journal.get("a:1") is not None and journal.get("a#1:0") is None
        assert journal.get("a:0").next_state.kind is NextStateKind.SESSION_END  # closed when a was evicted


# -- restart: a real `serve` process, SIGKILLed, restarted on the same journal -------------------


@contextmanager
def serve_process(journal: Path, engine_url: str) -> Iterator[str]:
    """``serve --engine-url`` in its own process group; yields its base URL; stops the group."""
    command = [sys.executable, "-m", "slime_openclaw.cli", "serve", "--engine-url", engine_url,
               "--tokenizer", str(tiny_model_dir()), "--served-model-name", "tiny", "--journal", str(journal),
               "--port", "0", "--log-level", "WARNING"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert "listening on " in line, f"serve did not start (exit code {child.poll()})"
        yield line.split("listening on ", 1)[1].split()[0]
    finally:
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # the crash (or the cleanup after one)
        child.wait(30)


async def converse(url: str, keys: list[str], histories: dict[str, list[dict]], answers: list[tuple[str, str]],
                   turns: int) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30) as api:
        for _ in range(turns):
            for key in keys:
                content = await ask(api, key, histories[key])
                answers.append((key, content))
                histories[key] += [{"role": "assistant", "content": content}, {"role": "user", "content": "more"}]


async def test_restart_on_the_same_journal_with_the_same_keys_loses_no_answer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    answer = AutoTokenizer.from_pretrained(tiny_model_dir()).encode("Fine.<|im_end|>", add_special_tokens=False)
    path = tmp_path / "journal.sqlite"
    keys = ["s0", "s1", "s2"]
    histories = {key: [{"role": "user", "content": f"task of {key}"}] for key in keys}
    answers: list[tuple[str, str]] = []
    async with served(ScriptedEngine(lambda ids: answer)) as engine_url:
        with serve_process(path, engine_url) as url:
            await converse(url, keys, histories, answers, turns=2)
        histories["s1"] = [{"role": "user", "content": "a new conversation"}]  # s0, s2 continue theirs
        with serve_process(path, engine_url) as url:
            await converse(url, keys, histories, answers, turns=2)
    with SqliteJournal(path, create=False) as journal:
        assert_all_recorded(journal, answers)
        assert {r.turn.session_id for r in journal.iter_turns()} == {"s0", "s1", "s1#1", "s2"}
        resumed = journal.get("s0:1")  # the last turn before the crash got its next state after it
        assert resumed is not None and resumed.state is TurnState.OBSERVED
        assert resumed.next_state.kind is NextStateKind.USER and resumed.next_state.continuous
        assert [journal.get(f"s0:{i}") is not None for i in range(4)] == [True] * 4
        assert journal.get("s1:1").state is TurnState.SERVED  # s1's next conversation is epoch 1


async def test_a_journal_that_cannot_say_where_a_key_stopped_gets_503_not_a_guess() -> None:
    from slime_openclaw.errors import JournalError
    from slime_openclaw.journal.memory import MemoryJournal

    class Unreadable(MemoryJournal):
        def last_turn_for_client(self, client_key: str):  # type: ignore[no-untyped-def]
            raise JournalError("disk I/O error")

    journal = Unreadable()
    async with running_gateway(counting(), journal=journal) as (api, deps):
        try:
            await ask(api, "k", [{"role": "user", "content": "hi"}])
        except openai.APIStatusError as exc:
            assert exc.status_code == 503 and exc.response.headers.get("Retry-After")
        else:
            raise AssertionError("expected 503")
        assert deps.metrics.sessions_open == 0 and journal.records() == []
        assert await api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
