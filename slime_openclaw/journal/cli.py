"""``slime-openclaw journal stats|export``: inspect and export the durable journal.

``stats`` prints counts per turn state, per sample state and per method, and the judge
lag (age of the oldest turn waiting for judging). ``export`` prints one JSON object per
line and turn (``--kind turns``, default) or sample (``--kind samples``), optionally only
those in ``--state``; every row carries its session's ``outcome`` (None until recorded). The journal is opened without creating anything: a missing or
foreign file is a one-line error (exit 2). This module only reads the journal.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from slime_openclaw.errors import ConfigError, JournalError
from slime_openclaw.journal import codec
from slime_openclaw.journal.base import JournalStats, OutcomeStore, SampleRecord, TurnRecord
from slime_openclaw.journal.location import default_journal_path
from slime_openclaw.journal.rules import SampleState
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import TurnState

KINDS = ("turns", "samples")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stats`` and ``export`` actions and their options."""
    actions = parser.add_subparsers(dest="journal_action", metavar="ACTION", required=True)
    default = default_journal_path(os.environ)
    stats = actions.add_parser("stats", help="counts per state, judge lag, samples per method")
    stats.add_argument("--journal", metavar="PATH", default=str(default), help=f"journal file (default: {default})")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    export = actions.add_parser("export", help="one JSON object per line and turn or sample")
    export.add_argument("--journal", metavar="PATH", default=str(default), help=f"journal file (default: {default})")
    export.add_argument("--kind", choices=KINDS, default="turns", help="export turns (default) or samples")
    export.add_argument("--state", metavar="S", help="only rows in this state (turn or sample state, per --kind)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; expected failures raise ``ConfigError`` (one line, exit 2)."""
    journal = _open(args.journal)
    try:
        if args.journal_action == "stats":
            _print_stats(journal, as_json=args.json, out=sys.stdout)
        else:
            rows = export_rows(journal, kind=args.kind, state=args.state)
            _write_lines(rows, sys.stdout)
    finally:
        journal.close()
    return 0


def _open(path: str) -> SqliteJournal:
    if not os.path.isfile(path):
        raise ConfigError(f"no journal at {path} (pass --journal PATH)")
    try:
        return SqliteJournal(path, create=False)
    except JournalError as exc:
        raise ConfigError(exc.message) from exc


def _parse_state(kind: str, state: str | None) -> TurnState | SampleState | None:
    if state is None:
        return None
    enum_type: type[TurnState] | type[SampleState] = TurnState if kind == "turns" else SampleState
    try:
        return enum_type(state.lower())
    except ValueError:
        valid = ", ".join(s.value for s in enum_type)
        raise ConfigError(f"--state {state!r} is not a {kind[:-1]} state (one of: {valid})") from None


def export_rows(journal: SqliteJournal, *, kind: str, state: str | None) -> Iterator[dict[str, Any]]:
    """The JSON objects ``export`` prints, oldest first; each carries its session's ``outcome``."""
    wanted = _parse_state(kind, state)
    outcome = _OutcomeLookup(journal)
    if kind == "turns":
        assert wanted is None or isinstance(wanted, TurnState)
        return ({**turn_row(r), "outcome": outcome(r.turn.session_id)} for r in journal.iter_turns(wanted))
    assert wanted is None or isinstance(wanted, SampleState)
    return ({**sample_row(r), "outcome": outcome(r.sample.session_id)} for r in journal.iter_samples(wanted))


class _OutcomeLookup:
    """Session id -> exported outcome (None until one is recorded), read once per session."""

    def __init__(self, journal: OutcomeStore) -> None:
        self.journal = journal
        self.cache: dict[str, dict[str, Any] | None] = {}

    def __call__(self, session_id: str) -> dict[str, Any] | None:
        if session_id not in self.cache:
            if len(self.cache) > 4096:  # sessions come in order: a small window is enough
                self.cache.clear()
            self.cache[session_id] = codec.outcome_to_json(self.journal.get_outcome(session_id))
        return self.cache[session_id]


def turn_row(record: TurnRecord) -> dict[str, Any]:
    """One exported turn: the turn's fields, its state and signals; sample-only fields null."""
    verdict = record.verdict
    return {
        "kind": "turn",
        **codec.turn_to_json(record.turn),
        "state": record.state.value,
        "loss_mask": None,
        "reward": None if verdict is None else float(verdict.score),
        "teacher_log_probs": None,
        "method": None,
        "next_state": codec.next_state_to_json(record.next_state),
        "verdict": codec.verdict_to_json(verdict),
        "hint": codec.hint_to_json(record.hint),
        "discard_reason": record.discard_reason,
        "updated_at": record.updated_at,
    }


def sample_row(record: SampleRecord) -> dict[str, Any]:
    """One exported sample: every ``TrainingSample`` field, its state and lease bookkeeping."""
    return {
        "kind": "sample",
        **codec.sample_to_json(record.sample),
        "state": record.state.value,
        "turn_key": record.turn_key,
        "consumer": record.consumer,
        "handed_out": record.handed_out,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _write_lines(rows: Iterator[dict[str, Any]], out: TextIO) -> None:
    try:
        for row in rows:
            out.write(codec.dumps(row) + "\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


def format_stats(stats: JournalStats) -> list[str]:
    """Human-readable lines for ``journal stats``."""

    def counts(values: dict[str, int]) -> str:
        return "  ".join(f"{k} {v}" for k, v in values.items()) + f"  (total {sum(values.values())})"

    return [
        f"turns      {counts(stats.turns_by_state)}",
        f"samples    {counts(stats.samples_by_state)}",
        f"methods    {counts(stats.samples_by_method)}",
        f"judge lag  {stats.judge_lag_seconds:.1f} s (oldest turn waiting for judging)",
        f"ready lag  {stats.ready_lag_seconds:.1f} s (oldest sample waiting for a trainer)",
    ]


def _print_stats(journal: SqliteJournal, *, as_json: bool, out: TextIO) -> None:
    stats = journal.stats()
    if as_json:
        payload = {"journal": journal.path, "schema_version": journal.schema_version, **dataclasses.asdict(stats)}
        out.write(codec.dumps(payload) + "\n")
        return
    out.write(f"journal    {journal.path} (schema v{journal.schema_version})\n")
    for line in format_stats(stats):
        out.write(line + "\n")
