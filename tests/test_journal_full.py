"""A journal that cannot commit (a full disk): no answer is delivered as a success unless its
turn is recorded, ``/healthz`` says the journal is failing, and serving recovers on its own.

Two ways to fill it, both through the real SQLite code path: SQLite's own page limit
(``PRAGMA max_page_count``: SQLITE_FULL on every machine, CI included) and a real 4 MiB tmpfs
filled to the last byte (where this machine lets the test mount one; skipped otherwise).
Asserted from the journal: every complete 200 answer is a recorded turn; every other answer
was an error (503 with ``Retry-After``, or an SSE error event before ``[DONE]`` with no final
chunk); ``PRAGMA integrity_check`` is ok afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from slime_openclaw.journal.sqlite import SqliteJournal
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

PADDING = "x" * 3000
"""Each prompt is ~3000 tokens (24 KB packed): every turn needs new pages."""


def answer_to(ids: tuple[int, ...]) -> list[int]:
    match = re.search(r"question (\d+)", "".join(chr(t) for t in ids))
    return reply_ids(f"answer {match.group(1) if match else '?'}")


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    content: str | None
    """The answer's text when it arrived complete (a final chunk, no error event); else None."""
    error_code: str | None


async def ask(http: aiohttp.ClientSession, base: str, i: int, *, stream: bool) -> Outcome:
    body = {"model": "tiny", "stream": stream, "messages": [{"role": "user", "content": f"question {i} {PADDING}"}]}
    async with http.post(f"{base}/chat/completions", json=body) as r:
        raw = await r.read()
        headers = dict(r.headers)
    if r.status != 200:
        return Outcome(r.status, headers, None, json.loads(raw)["error"]["code"])
    if not stream:
        return Outcome(200, headers, json.loads(raw)["choices"][0]["message"]["content"], None)
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    errors = [e["error"]["code"] for e in parsed if "error" in e]
    finished = any(c["choices"] and c["choices"][0]["finish_reason"] for c in parsed if "choices" in c)
    if errors:
        assert not finished  # the error replaces the final chunk
        return Outcome(200, headers, None, errors[0])
    assert finished
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c.get("choices"))
    return Outcome(200, headers, text, None)


def recorded_answers(journal: SqliteJournal) -> list[str]:
    return [r.turn.response_message.get("content") or "" for r in journal.iter_turns()]


async def wait_healthy(http: aiohttp.ClientSession, root: str, deadline_s: float = 10.0) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        async with http.get(f"{root}/healthz") as r:
            body = await r.json()
            if r.status == 200:
                return body
        assert time.monotonic() < deadline, f"journal did not recover: {body}"
        await asyncio.sleep(0.1)


async def exercise(journal: SqliteJournal, fill: contextlib.AbstractContextManager[None], n_full: int = 12) -> None:
    """Serve before, during and after ``fill`` (a context in which the journal cannot grow)."""
    engine = ScriptedEngine(answer_to, chunk_size=4)
    async with running_gateway(engine, journal=journal) as (api, deps), aiohttp.ClientSession() as http:
        base = str(api.base_url).rstrip("/")
        root = base.removesuffix("/v1")
        outcomes = [await ask(http, base, i, stream=i % 2 == 0) for i in range(4)]
        assert [o.status for o in outcomes] == [200] * 4
        with fill:
            during = [await ask(http, base, 100 + i, stream=i % 2 == 0) for i in range(n_full)]
            async with http.get(f"{root}/healthz") as r:
                health = (r.status, await r.json())
            async with http.get(f"{root}/metrics") as r:
                metrics = await r.text()
            engine_calls = len(engine.requests)
            late = await ask(http, base, 999, stream=False)
            assert late.status == 503 and late.error_code == "journal_unavailable"
            assert len(engine.requests) == engine_calls  # refused before generating what cannot be recorded
        outcomes += during
        failed = [o for o in during if o.content is None]
        assert failed, "the full journal refused nothing"
        for o in failed:
            assert o.error_code == "journal_unavailable"
            assert o.status == 200 or (o.status == 503 and o.headers["Retry-After"] == "1")
        assert health[0] == 503 and health[1]["journal"] is False and health[1]["status"] == "journal_failing"
        assert "openclaw_gateway_journal_ok 0" in metrics
        assert deps.metrics.unrecorded >= 1

        body = await wait_healthy(http, root)  # space is back: serving recovers on its own
        assert body["journal"] is True
        after = [await ask(http, base, 200 + i, stream=i % 2 == 0) for i in range(4)]
        assert [o.status for o in after] == [200] * 4 and all(o.content for o in after)
        outcomes += after
    recorded = recorded_answers(journal)
    delivered = [o.content for o in outcomes if o.content is not None]
    assert sorted(delivered) == sorted(recorded)  # every complete answer recorded, nothing else
    assert journal._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@contextlib.contextmanager
def page_limit(journal: SqliteJournal) -> Iterator[None]:
    """SQLite's page limit at the journal's current size: SQLITE_FULL on the next page it needs."""
    conn = journal._conn
    default = conn.execute("PRAGMA max_page_count").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA max_page_count = {default}")


async def test_sqlite_full_withholds_answers_and_recovers(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "journal.sqlite") as journal:
        await exercise(journal, page_limit(journal))
    with sqlite3.connect(tmp_path / "journal.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    mount_point.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)


@contextlib.contextmanager
def filled(directory: Path) -> Iterator[None]:
    """Fill ``directory``'s filesystem to the last byte; free it again on exit."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):  # ENOSPC: full at this block size
                while os.write(fd, b"\0" * block):
                    pass
    finally:
        os.close(fd)
    try:
        yield
    finally:
        filler.unlink()


async def test_full_tmpfs_withholds_answers_and_recovers(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "mnt") as mnt:
        path = mnt / "journal.sqlite"
        journal = SqliteJournal(path, checkpoint_interval_seconds=0.2)
        try:
            await exercise(journal, filled(mnt), n_full=16)
        finally:
            journal.close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
