"""Crash safety with real processes: SIGKILL a writer mid-run, reopen, nothing lost or handed out twice.

Run as a script, this file is the child: ``python test_journal_crash.py writer PATH`` records
turns in a loop and prints each key it committed; ``... consumer PATH OFFSET`` drains and
acks until empty, printing what it got.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from journal_factories import HINT, VERDICT, make_next_state, make_sample, make_turn

from slime_openclaw.journal.rules import SampleState
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import Method, TurnState

HERE = Path(__file__).resolve()
STATE_ORDER = ["served", "observed", "judged", "ready", "consumed"]


def _say(*words: str) -> None:
    print(" ".join(words), flush=True)


def writer(path: str) -> None:
    """Record turns forever, cycling through the states; print what each commit made true."""
    journal = SqliteJournal(path)
    i = 0
    while True:
        turn = make_turn("crash", i, n_prompt=300, n_response=60)
        journal.record_turn(turn)
        _say("served", turn.key)
        phase = i % 4
        i += 1
        if phase == 0:
            continue
        journal.attach_next_state(turn.key, make_next_state())
        _say("observed", turn.key)
        if phase == 1:
            for record in journal.claim_observed(1, owner="writer"):
                _say("claimed", record.turn.key)
            continue
        for record in journal.claim_observed(1, owner="writer"):
            key = record.turn.key
            journal.record_signals(key, VERDICT, HINT, [make_sample(record.turn, m) for m in (Method.BINARY, Method.OPD)])
            _say("ready", key)
        if phase == 3:
            drained = journal.drain(2, "writer", lease_seconds=5)
            _say("drained", *(s.sample_id for s in drained))
            journal.ack([s.sample_id for s in drained[:1]])
            _say("acked", *(s.sample_id for s in drained[:1]))


def consumer(path: str, offset: float) -> None:
    """Drain in small batches and ack, as a trainer would, with the clock moved by ``offset``."""
    journal = SqliteJournal(path, clock=lambda: time.time() + offset)
    while batch := journal.drain(3, f"consumer-{os.getpid()}"):
        _say("got", *(s.sample_id for s in batch))
        journal.ack([s.sample_id for s in batch])
    journal.close()


def _run_writer_until(path: Path, lines_wanted: int) -> list[list[str]]:
    proc = subprocess.Popen([sys.executable, str(HERE), "writer", str(path)], stdout=subprocess.PIPE, text=True)
    lines: list[list[str]] = []
    try:
        assert proc.stdout is not None
        while len(lines) < lines_wanted:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            lines.append(line.split())
        os.kill(proc.pid, signal.SIGKILL)
        lines.extend(line.split() for line in proc.stdout if line.endswith("\n"))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return lines


def test_sigkill_loses_nothing_and_drains_exactly_once(tmp_path):
    path = tmp_path / "journal.sqlite"
    lines = _run_writer_until(path, 400)
    reported: dict[str, str] = {}
    claimed, drained, acked = set(), set(), set()
    for word, *keys in lines:
        if word in STATE_ORDER:
            reported[keys[0]] = word
        elif word == "claimed":
            claimed.update(keys)
        elif word == "drained":
            drained.update(keys)
        elif word == "acked":
            acked.update(keys)

    journal = SqliteJournal(path)
    try:
        for key, state in reported.items():
            record = journal.get(key)
            assert record is not None, key
            assert STATE_ORDER.index(record.state.value) >= STATE_ORDER.index(state), (key, record.state, state)
        consumed = {r.sample.sample_id for r in journal.iter_samples(SampleState.CONSUMED)}
        # An ack may commit just before the kill, without its line being printed.
        assert acked <= consumed <= drained
        observed = [r.turn.key for r in journal.iter_turns(TurnState.OBSERVED)]
        assert claimed and claimed <= set(observed)
        assert not claimed & {r.turn.key for r in journal.claim_observed(1000, lease_seconds=0)}
        pending = {r.sample.sample_id for s in ("ready", "in_flight") for r in journal.iter_samples(SampleState(s))}
    finally:
        journal.close()

    resumed = SqliteJournal(path, clock=lambda: time.time() + 120)  # writer's claims have expired
    try:
        assert claimed <= {r.turn.key for r in resumed.claim_observed(1000)}
    finally:
        resumed.close()

    consumers = [
        subprocess.Popen([sys.executable, str(HERE), "consumer", str(path), "60"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    got: list[str] = []
    try:
        for proc in consumers:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            got.extend(sid for line in out.splitlines() for sid in line.split()[1:])
    finally:
        for proc in consumers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert len(pending) > 10
    assert len(got) == len(set(got)) and set(got) == pending
    with SqliteJournal(path) as after:
        assert after.drain(100) == []
        assert after.stats().samples_by_state["consumed"] == len(pending) + len(consumed)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2])
    else:
        consumer(sys.argv[2], float(sys.argv[3]))
