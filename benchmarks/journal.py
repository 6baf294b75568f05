"""Journal throughput and the latency it adds to a served turn.

Measures, on a fresh SQLite journal in a temporary directory (WAL, synchronous=NORMAL):
- the serving-path cost per turn: ``record_turn`` and ``attach_next_state`` (p50/p99 µs;
  target: record_turn < 1 ms p50), and turns/s sustained by that pair in a loop;
- the rest of a turn's life: ``record_signals`` (two samples), ``drain`` + ``ack``;
- JSON vs packed arrays for the token arrays (why the journal stores packed arrays);
- WAL checkpoints from a background thread (what ``open_journal`` does) vs inside commits;
- through the gateway: the live service (slime_openclaw/live.py: gateway + signal workers
  with the rule judges, method binary) in front of the scripted engine, driven by
  concurrent multi-turn sessions over HTTP, once with the SQLite journal and once with the
  in-memory one, side by side: turns/s and per-request latency; the difference of the
  p50s is the latency the durable journal adds per served turn (target < 1 ms).

Usage: ``python benchmarks/journal.py [--turns N] [--gateway-requests N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def _drive(base: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    """``requests`` chat completions in 4-turn sessions from ``concurrency`` clients."""
    import aiohttp

    latencies: list[float] = []
    counter = iter(range(requests))

    async def client(http: aiohttp.ClientSession, c: int) -> None:
        history: list[dict] = []
        for turn, i in enumerate(counter):
            if turn % 4 == 0:
                history = [{"role": "user", "content": f"Client {c}: question {i}, tell me about it."}]
            start = time.perf_counter()
            async with http.post(f"{base}/chat/completions", json={"model": "bench", "messages": history,
                                                                   "max_tokens": 32}) as response:
                body = await response.json()
            latencies.append(time.perf_counter() - start)
            assert response.status == 200, body
            history += [body["choices"][0]["message"], {"role": "user", "content": "Thanks!"}]

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http, c) for c in range(concurrency)))
    return latencies, time.perf_counter() - started


async def _gateway_variant(kind: str, engine_url: str, tokenizer: Path, tmp: Path, requests: int,
                           concurrency: int) -> dict[str, float]:
    from slime_openclaw.config import OpenClawConfig
    from slime_openclaw.journal.location import open_journal
    from slime_openclaw.live import live_service

    config = OpenClawConfig.from_mapping({"openclaw_method": "binary", "openclaw_gateway_model_name": "bench"})
    store = open_journal(str(tmp / f"{kind}.sqlite") if kind == "sqlite" else ":memory:", settings=config.journal)
    try:
        async with live_service(config, engine_url=engine_url, tokenizer_dir=tokenizer, journal=store,
                                port=0) as live:
            await _drive(live.url, min(64, requests), concurrency)  # warm-up
            latencies, wall = await _drive(live.url, requests, concurrency)
            figures = percentiles(latencies)
            figures["turns_per_s"] = requests / wall
            figures["samples_ready"] = float(live.counters.get("ready", 0))
            return figures
    finally:
        store.close()


async def bench_gateway(requests: int, concurrency: int) -> dict[str, dict[str, float]]:
    """The live service over the SQLite and the in-memory journal, same load (see module doc)."""
    from transformers import AutoTokenizer

    from slime_openclaw.local.model.tiny_model import ensure_default_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: test support
    from tests.scripted_engine import ScriptedEngine, served

    tokenizer = ensure_default_model()
    answer = AutoTokenizer.from_pretrained(tokenizer).encode(
        "Sure. Here is a short answer of about twenty tokens, as a model might give.<|im_end|>",
        add_special_tokens=False)
    results: dict[str, dict[str, float]] = {}
    async with served(ScriptedEngine(lambda ids: answer, chunk_size=8)) as engine_url:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("memory", "sqlite", "memory ", "sqlite "):  # twice each, interleaved
                figures = await _gateway_variant(kind.strip(), engine_url, tokenizer, Path(tmp), requests,
                                                 concurrency)
                if kind.strip() not in results or figures["p50_us"] < results[kind.strip()]["p50_us"]:
                    results[kind.strip()] = figures
    results["added_by_sqlite"] = {
        "p50_us": results["sqlite"]["p50_us"] - results["memory"]["p50_us"],
        "p99_us": results["sqlite"]["p99_us"] - results["memory"]["p99_us"],
        "turns_per_s_ratio": results["sqlite"]["turns_per_s"] / results["memory"]["turns_per_s"],
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--response-tokens", type=int, default=500)
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite synchronous mode (NORMAL or FULL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gateway-requests", type=int, default=800,
                        help="requests per journal through the gateway (0 skips that part)")
    parser.add_argument("--gateway-concurrency", type=int, nargs="+", default=[1, 8],
                        help="client concurrency levels through the gateway (default 1 8)")
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
    if args.gateway_requests > 0:
        for level in args.gateway_concurrency:
            results[f"through the gateway, concurrency {level}"] = asyncio.run(
                bench_gateway(args.gateway_requests, level))
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
    for level in args.gateway_concurrency if args.gateway_requests > 0 else ():
        gateway = results[f"through the gateway, concurrency {level}"]
        assert isinstance(gateway, dict)
        print(f"\n[through the gateway: {args.gateway_requests} requests, concurrency {level}, "
              "live service with signal workers, scripted engine; best of 2 runs]")
        for name, values in gateway.items():
            line = "  ".join(f"{k} {v:,.2f}" if "ratio" in k else f"{k} {v:,.0f}" for k, v in values.items())
            print(f"  {name:<26} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
