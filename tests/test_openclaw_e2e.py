"""The real OpenClaw CLI against ``serve --embedded``: its turns are one session with a next state.

Two OpenClaw installations talk to one gateway at the same time, unmodified and without
custom headers: a plain one (no session key at all: the gateway must group its turns from
the history, although OpenClaw appends an internal-context message to every request that it
does not keep in its transcript) and one with ``compat.supportsPromptCacheKey`` (it sends
``prompt_cache_key``, which the gateway must accept as the session key). Each has a two-turn
conversation; the journal must hold each conversation as one session whose turn 0 has the
user's second message as its next state, and whose turn 1 replays turn 0's reply byte for byte.

Needs the CLI from ``make openclaw`` (``make test`` runs it); skips saying so without it.
Slow by nature: OpenClaw's prompt is ~26k tokens, prefilled on the CPU by the tiny model.
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from slime_openclaw.journal.base import TurnRecord
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.model.tiny_model import ensure_default_model
from slime_openclaw.types import NextStateKind
from tests.openclaw_harness import (
    OpenClawHome,
    final_text,
    openclaw_or_skip,
    provider_config,
    serve_embedded,
    why_failed,
)

pytestmark = [pytest.mark.slow, pytest.mark.clients]

CONVERSATIONS = {
    # name: (session id given to the CLI, prompt_cache_key on, first message, second message)
    "plain": ("plain-1", False, "Plain conversation: what is two plus two?", "Thanks! And three plus three?"),
    "keyed": ("keyed-1", True, "Keyed conversation: name a colour.", "Thanks! Now name a fruit."),
}


def converse(home: OpenClawHome, session_id: str, first: str, second: str) -> list[dict[str, Any]]:
    return [home.agent(session_id, first), home.agent(session_id, second)]


def turns_of(records: list[TurnRecord], first: str) -> list[TurnRecord]:
    """The recorded turns whose first user message is ``first`` (OpenClaw wraps it), in order."""
    def opens_with(record: TurnRecord) -> bool:
        users = [m for m in record.turn.messages if m.get("role") == "user"]
        return bool(users) and first in str(users[0].get("content"))
    return sorted(filter(opens_with, records), key=lambda r: (r.turn.session_id, r.turn.turn_index))


def test_openclaw_conversations_are_sessions_with_next_states(tmp_path: Path) -> None:
    binary = openclaw_or_skip()
    journal = tmp_path / "journal.sqlite"
    results: dict[str, list[dict[str, Any]]] = {}
    with serve_embedded(journal) as base_url:
        homes = {}
        for name, (_, keyed, _, _) in CONVERSATIONS.items():
            homes[name] = OpenClawHome(tmp_path / name, binary)
            homes[name].configure(provider_config(base_url, workspace=tmp_path / name / "workspace",
                                                  max_tokens=16, prompt_cache_key=keyed))
        with ThreadPoolExecutor(len(CONVERSATIONS)) as pool:
            futures = {name: pool.submit(converse, homes[name], sid, first, second)
                       for name, (sid, _, first, second) in CONVERSATIONS.items()}
            results = {name: future.result() for name, future in futures.items()}
    with SqliteJournal(journal, create=False) as reader:
        records = list(reader.iter_turns())
    sessions = set()
    for name, (_, _, first, second) in CONVERSATIONS.items():
        turns = turns_of(records, first)
        assert [r.turn.turn_index for r in turns] == [0, 1], f"{name}: {[(r.turn.session_id, r.turn.turn_index) for r in turns]}"
        turn0, turn1 = turns
        assert turn0.turn.session_id == turn1.turn.session_id, f"{name}: the two turns are two sessions"
        sessions.add(turn0.turn.session_id)
        if name == "keyed":  # OpenClaw's prompt_cache_key is "<session id>:<boundary count>"
            assert turn0.turn.session_id.startswith(f"{CONVERSATIONS[name][0]}:0"), turn0.turn.session_id
        replayed = [m for m in turn1.turn.messages if m.get("role") == "assistant"]
        assert replayed and replayed[-1].get("content") == turn0.turn.response_message.get("content")
        assert final_text(results[name][0]).strip() == str(turn0.turn.response_message.get("content")).strip()
        next_state = turn0.next_state
        assert next_state is not None and next_state.continuous, f"{name}: turn 0 has no next state"
        assert next_state.kind is NextStateKind.USER and not next_state.reply_dropped
        assert next_state.dropped_messages == 1  # OpenClaw's internal-context message, not replayed
        assert next_state.messages[0]["role"] == "user" and second in str(next_state.messages[0]["content"])
        assert turn1.turn.messages[-1]["role"] == "user"  # OpenClaw's internal context, appended again
        assert len(turn0.turn.tools) == 12 and turn0.turn.sampling["max_new_tokens"] == 16  # maxTokens
    assert len(sessions) == len(CONVERSATIONS), "two OpenClaw conversations were merged into one session"


def test_a_prompt_over_the_context_is_one_clean_400(tmp_path: Path) -> None:
    """OpenClaw's ~26k-token prompt against the 4096-token tiny model: the client's error, said once.

    Refused before the engine with OpenAI's ``context_length_exceeded`` (a 5xx would be
    retried by SDKs), no internal URL in what OpenClaw shows, no turn recorded, no session left open.
    """
    binary = openclaw_or_skip()
    journal = tmp_path / "journal.sqlite"
    with serve_embedded(journal, model=ensure_default_model()) as base_url:
        home = OpenClawHome(tmp_path / "short", binary)
        home.configure(provider_config(base_url, workspace=tmp_path / "short" / "workspace", max_tokens=16,
                                       prompt_cache_key=False))
        done = home.run_agent("short-1", "Hello there.")
        origin = base_url.removesuffix("/v1")
        health = json.loads(urllib.request.urlopen(f"{origin}/healthz", timeout=10).read())
        metrics = urllib.request.urlopen(f"{origin}/metrics", timeout=10).read().decode()
    assert done.returncode != 0
    assert "status=400" in done.stderr and "maximum context length" in done.stderr, why_failed(done.stderr)
    assert "/generate" not in done.stderr  # nothing of the engine's address or protocol reaches the client
    served = [line for line in metrics.splitlines() if line.startswith('openclaw_gateway_requests_total{endpoint="/v1/chat')]
    assert served == ['openclaw_gateway_requests_total{endpoint="/v1/chat/completions",status="400"} 1'], served
    assert health["sessions_open"] == 0
    with SqliteJournal(journal, create=False) as reader:
        assert list(reader.iter_turns()) == []
