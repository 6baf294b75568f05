"""Output tokens per second of the embedded engine at several concurrency levels.

Serves a checkpoint (default: the tiny model) with the real runtime and HTTP server on
127.0.0.1 and drives it with ``EngineClient``: ``concurrency`` workers each send
``--requests`` streamed-off ``/generate`` calls of ``--max-new-tokens`` tokens
(``ignore_eos``, so every request has the same length). Each level runs ``--rounds`` times;
one JSON line per level gives the median round's tokens/s with the slowest and fastest
round (on a shared machine a single short round mostly measures the neighbours), and the
load average when it ended.

    .venv/bin/python benchmarks/engine_throughput.py --concurrency 1 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import GenerateRequest, SamplingParams
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread


async def measure(url: str, concurrency: int, requests: int, max_new_tokens: int) -> dict[str, float]:
    """Run the load and return tokens/s plus mean per-request latency."""
    sampling = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, ignore_eos=True)
    latencies: list[float] = []
    tokens = 0

    async def worker(client: EngineClient, index: int) -> None:
        nonlocal tokens
        for j in range(requests):
            prompt = tuple(10 + (index * 31 + j * 7 + k) % 500 for k in range(32))
            started = time.perf_counter()
            out = await client.generate(GenerateRequest(input_ids=prompt, sampling=sampling))
            latencies.append(time.perf_counter() - started)
            tokens += len(out.output_ids)

    async with EngineClient(url) as client:
        await client.generate(GenerateRequest(input_ids=(1, 2, 3), sampling=sampling))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker(client, i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "output_tokens": tokens,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1),
        "mean_latency_s": round(sum(latencies) / len(latencies), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF checkpoint dir (default: the tiny model)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=8, help="requests per worker and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level (the median is reported)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the decoding thread")
    args = parser.parse_args()
    if args.model is None:
        from slime_openclaw.local.model.tiny_model import ensure_default_model

        args.model = ensure_default_model()
    max_running = max(args.concurrency)
    with Runtime.load(args.model, max_running=max_running, threads=args.threads) as runtime, ServerThread(runtime) as url:
        for concurrency in args.concurrency:
            rounds = [asyncio.run(measure(url, concurrency, args.requests, args.max_new_tokens))
                      for _ in range(args.rounds)]
            rates = sorted(r["tokens_per_s"] for r in rounds)
            median = statistics.median_low(rates)
            result = next(r for r in rounds if r["tokens_per_s"] == median)
            result.update(rounds=args.rounds, slowest_tokens_per_s=rates[0], fastest_tokens_per_s=rates[-1],
                          load_average_1m=round(os.getloadavg()[0], 2))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
