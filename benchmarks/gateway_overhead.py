"""Latency and throughput the gateway adds in front of an engine.

Three processes: a scripted engine (slime_openclaw/gateway/scripted_engine.py: answers a
fixed token sequence, in chunks, with a fixed small delay, so its own latency is constant),
the gateway (real app: tiny model's tokenizer and chat template, EngineClient, in-memory
recorder, sessions), and this load generator. The same request mix (short and multi-turn
chats, with and without tools, half of them streamed) is sent directly to the engine's
``/generate`` (the prompt ids the gateway would render) and through the gateway's
``/v1/chat/completions``, at each concurrency. Printed: p50/p99 latency of both, the
latency the gateway adds, and the throughput ratio. Targets: p50 added <= 2 ms, throughput
through the gateway >= 90% of direct at concurrency 64.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 400] [--concurrency 1 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ANSWER = "Sure. The answer is forty-two, and here is a short explanation of why that is."
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def request_mix() -> list[dict]:
    """The chat requests of the benchmark (cycled)."""
    short = [{"role": "user", "content": "What is the answer?"}]
    long = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(4):
        long += [{"role": "user", "content": f"Question number {i}: tell me about topic {i}."},
                 {"role": "assistant", "content": f"Topic {i} is interesting for several reasons."}]
    long.append({"role": "user", "content": "Summarize."})
    return [
        {"messages": short},
        {"messages": long},
        {"messages": short, "tools": TOOLS},
        {"messages": long, "tools": TOOLS},
    ]


# -- child processes -----------------------------------------------------------------
async def _serve(app, ready: str) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"{ready} http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


def engine_child(model_dir: str, delay: float) -> None:
    from transformers import AutoTokenizer

    from slime_openclaw.gateway.scripted_engine import ScriptedEngine, make_scripted_app

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answer = tokenizer.encode(ANSWER + "<|im_end|>", add_special_tokens=False)
    engine = ScriptedEngine(lambda ids: answer, chunk_size=4, delay=delay)
    asyncio.run(_serve(make_scripted_app(engine), "engine"))


def gateway_child(model_dir: str, engine_url: str) -> None:
    import logging

    from slime_openclaw.engine.client import EngineClient
    from slime_openclaw.gateway.app import GatewayConfig, GatewayDeps, make_app
    from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
    from slime_openclaw.journal.memory import MemoryJournal

    logging.disable(logging.INFO)
    codec = TokenizerCodec.from_dir(model_dir)

    async def main() -> None:
        deps = GatewayDeps(EngineClient(engine_url), MemoryJournal(), codec,
                           GatewayConfig(served_model_name="tiny", max_concurrency=4096))
        await _serve(make_app(deps), "gateway")

    asyncio.run(main())


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if "http://" not in line:
        child.kill()
        raise SystemExit(f"child {args[0]} did not start")
    return child, line.split()[-1]


# -- load ----------------------------------------------------------------------------
async def _one(http: aiohttp.ClientSession, url: str, body: dict) -> float:
    start = time.perf_counter()
    async with http.post(url, json=body) as response:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {await response.text()}")
        await response.read()
    return time.perf_counter() - start


async def _run(url: str, bodies: list[dict], concurrency: int, total: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        for body in bodies:  # warm up every shape
            await _one(http, url, body)

        async def worker() -> None:
            for i in counter:
                latencies.append(await _one(http, url, bodies[i % len(bodies)]))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, total / wall


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def bodies_for(model_dir: str) -> tuple[list[dict], list[dict]]:
    """(direct /generate bodies, gateway chat bodies) for the same mix, half streamed."""
    from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec

    codec = TokenizerCodec.from_dir(model_dir)
    direct, chat = [], []
    for stream in (False, True):
        for item in request_mix():
            ids = codec.render_ids(item["messages"], item.get("tools", []))
            direct.append({"input_ids": ids, "stream": stream, "return_logprob": True, "sampling_params": {
                "temperature": 1.0, "max_new_tokens": 64, "stop_token_ids": list(codec.stop_token_ids)}})
            chat.append({"model": "tiny", "max_tokens": 64, "stream": stream, **item})
    return direct, chat


async def measure(engine_url: str, gateway_url: str, model_dir: str, levels: list[int], total: int) -> list[dict]:
    direct, chat = bodies_for(model_dir)
    rows = []
    for concurrency in levels:
        n = max(total, concurrency * 4)
        d_lat, d_thr = await _run(f"{engine_url}/generate", direct, concurrency, n)
        g_lat, g_thr = await _run(f"{gateway_url}/v1/chat/completions", chat, concurrency, n)
        rows.append({
            "concurrency": concurrency, "requests": n,
            "direct_p50_ms": _pct(d_lat, 0.5), "direct_p99_ms": _pct(d_lat, 0.99),
            "gateway_p50_ms": _pct(g_lat, 0.5), "gateway_p99_ms": _pct(g_lat, 0.99),
            "added_p50_ms": _pct(g_lat, 0.5) - _pct(d_lat, 0.5), "added_p99_ms": _pct(g_lat, 0.99) - _pct(d_lat, 0.99),
            "direct_rps": d_thr, "gateway_rps": g_thr, "throughput_ratio": g_thr / d_thr,
            "mean_added_ms": (statistics.fmean(g_lat) - statistics.fmean(d_lat)) * 1000,
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level and path")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--engine-delay", type=float, default=0.001, help="seconds per engine chunk (fixed)")
    parser.add_argument("--model", help="tokenizer directory (default: the tiny model)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--role", choices=("engine", "gateway"), help=argparse.SUPPRESS)
    parser.add_argument("--engine-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from slime_openclaw.local.tiny_model import ensure_default_model

        args.model = str(ensure_default_model())
    if args.role == "engine":
        engine_child(args.model, args.engine_delay)
        return 0
    if args.role == "gateway":
        gateway_child(args.model, args.engine_url)
        return 0
    children: list[subprocess.Popen] = []
    try:
        engine, engine_url = _start(["--role", "engine", "--model", args.model, "--engine-delay", str(args.engine_delay)])
        children.append(engine)
        gateway, gateway_url = _start(["--role", "gateway", "--model", args.model, "--engine-url", engine_url])
        children.append(gateway)
        rows = asyncio.run(measure(engine_url, gateway_url, args.model, args.concurrency, args.requests))
    finally:
        for child in children:
            child.terminate()
            child.wait(10)
    print(f"{'conc':>4} {'direct p50/p99 ms':>18} {'gateway p50/p99 ms':>19} {'added p50/p99 ms':>17} "
          f"{'direct rps':>10} {'gw rps':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['concurrency']:>4} {r['direct_p50_ms']:>8.2f} /{r['direct_p99_ms']:>8.2f} "
              f"{r['gateway_p50_ms']:>8.2f} /{r['gateway_p99_ms']:>8.2f} {r['added_p50_ms']:>7.2f} /{r['added_p99_ms']:>8.2f} "
              f"{r['direct_rps']:>10.0f} {r['gateway_rps']:>8.0f} {r['throughput_ratio']:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
