"""Journal throughput and the latency it adds to a served turn.

Measures, on a fresh SQLite journal in a temporary directory (WAL, synchronous=NORMAL):
- the serving-path cost per turn: ``record_turn`` and ``attach_next_state`` (p50/p99 µs;
  target: record_turn < 1 ms p50), and turns/s sustained by that pair in a loop;
- the rest of a turn's life: ``record_signals`` (two samples), ``drain`` + ``ack``;
- JSON vs packed arrays for the token arrays (why the journal stores packed arrays);
- WAL checkpoints from a background thread (what ``open_journal`` does) vs inside commits.

Calls the journal directly; going through the gateway (slime_openclaw/gateway/) is left
to an end-to-end benchmark. Usage: ``python benchmarks/journal.py [--turns N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from slime_openclaw.journal import codec
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import (
    FinishReason,
    Method,
    NextState,
    NextStateKind,
    TrainingSample,
    Turn,
    TurnType,
    Verdict,
)


def make_turn(i: int, prompt: int, response: int, rng: random.Random) -> Turn:
    """A realistic turn: ~4 characters of text per token, random ids and log-probs."""
    text = "x" * (4 * prompt)
    return Turn(
        session_id=f"bench-{i // 8}",
        turn_index=i % 8,
        turn_type=TurnType.MAIN,
        messages=({"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}),
        tools=(),
        prompt_ids=tuple(rng.randrange(150_000) for _ in range(prompt)),
        response_ids=tuple(rng.randrange(150_000) for _ in range(response)),
        response_log_probs=tuple(-rng.random() * 3 for _ in range(response)),
        weight_versions=(7,) * response,
        finish_reason=FinishReason.STOP,
        response_message={"role": "assistant", "content": "y" * (4 * response)},
        sampling={"temperature": 1.0, "max_new_tokens": response},
        model="bench",
        created_at=time.time(),
    )


def samples_for(turn: Turn) -> list[TrainingSample]:
    """A binary and an OPD sample, as the combine method would produce."""
    n = len(turn.response_ids)
    common = dict(
        session_id=turn.session_id,
        turn_index=turn.turn_index,
        prompt_ids=turn.prompt_ids,
        response_ids=turn.response_ids,
        loss_mask=(1,) * n,
        rollout_log_probs=turn.response_log_probs,
        weight_versions=turn.weight_versions,
    )
    teacher = tuple(lp - 0.1 for lp in turn.response_log_probs)
    return [
        TrainingSample(method=Method.BINARY, reward=1.0, **common),  # type: ignore[arg-type]
        TrainingSample(method=Method.OPD, teacher_log_probs=teacher, **common),  # type: ignore[arg-type]
    ]


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50 / p99 / mean in microseconds."""
    ordered = sorted(samples_s)
    return {
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6,
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_journal(journal, turns: list[Turn]) -> dict[str, dict[str, float]]:
    """Time every step of each turn's life on ``journal``."""
    record, attach, signals, drain_ack = [], [], [], []
    next_state = NextState(kind=NextStateKind.USER, messages=({"role": "user", "content": "thanks"},))
    verdict = Verdict(score=1, votes=(1, 1, 1), judge="bench")
    loop_start = time.perf_counter()
    for turn in turns:
        record.append(timed(lambda t=turn: journal.record_turn(t)))
        attach.append(timed(lambda t=turn: journal.attach_next_state(t.key, next_state)))
    loop = time.perf_counter() - loop_start
    prepared = [(t.key, samples_for(t)) for t in turns]
    for key, samples in prepared:
        journal.claim_observed(1)
        signals.append(timed(lambda k=key, s=samples: journal.record_signals(k, verdict, None, s)))
    for _ in range(len(turns) // 8):
        start = time.perf_counter()
        batch = journal.drain(16, "bench")
        journal.ack([s.sample_id for s in batch])
        drain_ack.append((time.perf_counter() - start) / max(len(batch), 1))
    return {
        "record_turn": percentiles(record),
        "attach_next_state": percentiles(attach),
        "record_plus_attach": percentiles([a + b for a, b in zip(record, attach, strict=True)]),
        "record_signals_2_samples": percentiles(signals),
        "drain_plus_ack_per_sample": percentiles(drain_ack),
        "serving_loop": {"turns_per_s": len(turns) / loop},
    }


def bench_codec(turn: Turn, rounds: int = 200) -> dict[str, float]:
    """Encode + decode of a turn's four token arrays: JSON vs packed arrays (µs)."""
    arrays = [turn.prompt_ids, turn.response_ids, turn.response_log_probs, turn.weight_versions]

    def as_json() -> None:
        for values in arrays:
            tuple(json.loads(json.dumps(values)))

    def as_packed() -> None:
        codec.unpack_ints(codec.pack_ints(turn.prompt_ids))
        codec.unpack_ints(codec.pack_ints(turn.response_ids))
        codec.unpack_floats(codec.pack_floats(turn.response_log_probs))
        codec.unpack_ints(codec.pack_ints(turn.weight_versions))

    json_bytes = sum(len(json.dumps(v)) for v in arrays)
    packed_bytes = sum(8 * len(v) for v in arrays)
    return {
        "json_us": min(timed(as_json) for _ in range(rounds)) * 1e6,
        "packed_us": min(timed(as_packed) for _ in range(rounds)) * 1e6,
        "json_bytes": json_bytes,
        "packed_bytes": packed_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--response-tokens", type=int, default=500)
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite synchronous mode (NORMAL or FULL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    turns = [make_turn(i, args.prompt_tokens, args.response_tokens, rng) for i in range(args.turns)]
    results: dict[str, object] = {
        "turns": args.turns,
        "prompt_tokens": args.prompt_tokens,
        "response_tokens": args.response_tokens,
        "codec": bench_codec(turns[0]),
    }
    variants = {"sqlite (background checkpoints)": 1.0, "sqlite (checkpoints inside commits)": None}
    for name, interval in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "journal.sqlite"
            with SqliteJournal(path, synchronous=args.synchronous, checkpoint_interval_seconds=interval) as journal:
                results[name] = bench_journal(journal, turns)
    results["memory"] = bench_journal(MemoryJournal(), turns)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.turns} turns, {args.prompt_tokens} prompt + {args.response_tokens} response tokens each")
    c = results["codec"]
    assert isinstance(c, dict)
    print(
        f"token arrays, encode+decode: json {c['json_us']:.0f} µs ({c['json_bytes']} B), "
        f"packed {c['packed_us']:.0f} µs ({c['packed_bytes']} B)"
    )
    print(f"SQLite synchronous={args.synchronous.upper()}, WAL")
    for name in (*variants, "memory"):
        figures = results[name]
        assert isinstance(figures, dict)
        print(f"\n[{name}]")
        for step, values in figures.items():
            line = "  ".join(f"{k} {v:,.0f}" for k, v in values.items())
            print(f"  {step:<26} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
