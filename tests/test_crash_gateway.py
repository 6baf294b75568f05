"""Crash safety of the live service: ``slime-openclaw serve --embedded --method binary`` on a
SQLite journal is SIGKILLed mid-load (with its engine child: the whole process group this
test started), then restarted on the same journal.

Asserted: every response a client received in full is a recorded turn with that content;
turns that were OBSERVED at the crash are judged after the restart (READY or DISCARDED);
turns READY at the crash stay READY with the same samples; turns whose sessions died with
the process are closed by the TTL sweeper; ``drain`` hands each sample out exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import yaml

from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import TurnState
from tests.helpers_model import tiny_model_dir

pytestmark = pytest.mark.slow
CLIENTS = 6
REPLIES = ("Thanks!", "No, that's wrong.", "Go on.")
"""Follow-ups: rated by the rule judge (+1, -1), or left to the LLM judge (the tiny model
through the policy engine: slow, and its votes do not parse, so those turns are discarded)."""
CONFIG = {
    "openclaw_judge_endpoints": ["policy"],
    "openclaw_judge_votes": 2,
    "openclaw_judge_max_new_tokens": 16,
    "openclaw_signal_workers": 1,  # judging lags serving, so turns are OBSERVED at the crash
    "openclaw_journal_claim_lease_s": 2.0,  # claims of the killed worker expire quickly
}


@dataclass(frozen=True)
class Answer:
    """A response the client received in full."""

    session: str
    turn_index: int
    content: str


@contextmanager
def serve_process(journal: Path, config: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """``serve --embedded`` in its own process group; yields (process, base URL); stops the group."""
    command = [sys.executable, "-m", "slime_openclaw.cli", "serve", "--embedded", "--journal", str(journal),
               "--port", "0", "--method", "binary", "--config", str(config), "--session-ttl", "2",
               "--model", str(tiny_model_dir()), "--served-model-name", "tiny", "--log-level", "WARNING"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert "listening on " in line, f"serve did not start (exit code {child.poll()})"
        yield child, line.split("listening on ", 1)[1].split()[0]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(10)
        with_group_gone(child.pid)
        if child.stdout is not None:  # our end of its stdout (it prints one line): closed once it is gone
            child.stdout.close()


def with_group_gone(pgid: int) -> None:
    """Make sure no process of the group (the engine child) outlives the test."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


async def converse(url: str, client: int, answered: list[Answer], killed: asyncio.Event) -> None:
    """One client's sessions: turns with a rated follow-up each, until the server dies."""
    rng = random.Random(client)
    stream = client % 2 == 1
    async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30) as api:
        for session_number in range(1000):
            session = f"c{client}-s{session_number}"
            history = [{"role": "user", "content": f"Client {client} asks question {session_number}."}]
            for turn in range(rng.randint(2, 4)):
                try:
                    content = await ask(api, history, session, stream)
                except Exception:
                    if killed.is_set():
                        return  # the server is gone
                    raise
                answered.append(Answer(session, turn, content))
                history += [{"role": "assistant", "content": content},
                            {"role": "user", "content": REPLIES[rng.randrange(3)]}]


async def ask(api: openai.AsyncOpenAI, history: list[dict], session: str, stream: bool) -> str:
    headers = {"X-Session-Id": session}
    if not stream:
        out = await api.chat.completions.create(model="tiny", messages=history, max_tokens=6,
                                                extra_headers=headers)
        return out.choices[0].message.content or ""
    chunks = await api.chat.completions.create(model="tiny", messages=history, max_tokens=6, stream=True,
                                               extra_headers=headers)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def load_then_kill(url: str, child: subprocess.Popen, journal: Path, min_answers: int) -> list[Answer]:
    """Load the server until ``min_answers`` answers and a few READY turns, then SIGKILL it."""
    answered: list[Answer] = []
    killed = asyncio.Event()
    tasks = [asyncio.create_task(converse(url, i, answered, killed)) for i in range(CLIENTS)]
    deadline = time.monotonic() + 60
    with SqliteJournal(journal, create=False) as reader:
        while time.monotonic() < deadline and not any(t.done() for t in tasks):
            if len(answered) >= min_answers and reader.stats().turns_by_state["ready"] >= 2:
                break
            await asyncio.sleep(0.05)
    killed.set()
    os.killpg(child.pid, signal.SIGKILL)  # mid-load: requests are in flight right now
    child.wait(10)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return answered


def wait_settled(journal: SqliteJournal, timeout_s: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = journal.stats().turns_by_state
        if states["served"] == 0 and states["observed"] == 0 and states["judged"] == 0:
            return states
        time.sleep(0.1)
    raise AssertionError(f"turns still waiting after the restart: {journal.stats().turns_by_state}")


def test_sigkill_mid_load_loses_nothing_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    config = tmp_path / "openclaw.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}

    with serve_process(path, config, env) as (child, url):
        answered = asyncio.run(load_then_kill(url, child, path, min_answers=30))
    assert len(answered) >= 30

    with SqliteJournal(path) as journal:
        before = {r.turn.key: r for r in journal.iter_turns()}
        ready_before = {s.sample.sample_id: s.sample for s in journal.iter_samples()}
    for answer in answered:  # every full answer is a recorded turn with exactly that content
        record = before.get(f"{answer.session}:{answer.turn_index}")
        assert record is not None, answer
        assert (record.turn.response_message.get("content") or "") == answer.content
    observed_before = {k for k, r in before.items() if r.state is TurnState.OBSERVED}
    served_before = {k for k, r in before.items() if r.state is TurnState.SERVED}
    assert served_before, "every session's last turn waits for a next state at the crash"
    assert observed_before, "judging lagged serving, so some turns waited for judging at the crash"
    assert ready_before, "some turns were judged before the crash"

    with serve_process(path, config, env), SqliteJournal(path) as journal:
        states = wait_settled(journal)
        after = {r.turn.key: r for r in journal.iter_turns()}
        assert set(after) == set(before)  # nothing lost, nothing invented
        for key in observed_before:
            assert after[key].state in (TurnState.READY, TurnState.DISCARDED), key
        for key in served_before:  # sessions that died with the process: closed by the TTL sweeper
            assert (after[key].state, after[key].discard_reason) == (TurnState.DISCARDED, "no next state")
        for sample_id, sample in ready_before.items():
            assert journal.get(sample_id.rsplit(":", 1)[0]).state is TurnState.READY
            assert sample.reward in (1.0, -1.0)
        drained = journal.drain(10_000, "test")
        assert journal.drain(10_000, "test") == []
        ids = [s.sample_id for s in drained]
        assert len(ids) == len(set(ids)) == states["ready"]
        assert set(ready_before) <= set(ids)
        assert all(s.reward in (1.0, -1.0) and s.teacher_log_probs is None for s in drained)
        reasons = {after[k].discard_reason for k in observed_before if after[k].state is TurnState.DISCARDED}
        assert reasons <= {"no evaluative signal"}
        journal.ack(ids)
