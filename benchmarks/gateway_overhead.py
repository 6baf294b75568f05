"""Latency and throughput the gateway adds in front of an engine.

Three processes, so that none of them shares a GIL (or, as far as the machine allows, a
core) with the one under test:

* engine: the scripted engine (tests/scripted_engine.py) over the SGLang
  ``/generate`` wire. Its answer to every prompt is the same 27 tokens of the tiny tokenizer
  (``ANSWER`` plus ``<|im_end|>``), streamed one token per SSE event (SGLang's default
  ``stream_interval`` of 1) after a fixed ``--token-delay`` per token (default 4 ms: a
  small model's decode step), so its own latency is fixed (~27 x 4 ms) whatever the
  prompt, and the same for both paths. Non-streamed requests wait for the same steps.
* gateway: the real app (``make_app``) with the tiny model's tokenizer and chat template,
  ``EngineClient`` (``merge_chunks=True``: chunks that arrived together become one
  delta; ``--no-merge-chunks`` for one per chunk), sessions, and a real journal: a SQLite file in a temporary directory
  opened as ``serve`` opens it (``open_journal``: WAL, background checkpoints), or
  ``--journal :memory:`` (the in-memory journal). Every turn is recorded; the benchmark
  checks the gateway's ``turns_recorded`` counter against the requests it sent.
* load generator (this process): the same client code for both paths. Each worker runs
  whole conversations, turn after turn, as an agent would: a five-sentence system prompt,
  two tools in every other conversation, and four user turns whose text is unique to the
  conversation; each turn's history holds the earlier turns with the reply the engine
  gave, so prompts grow from ~170 to ~700 tiny-tokenizer tokens and the gateway sees
  continuing sessions (next states attached, token continuity checked). Every other turn streams.
  The direct path sends the very prompt ids the gateway renders (rendered here before
  the clock starts) to ``/generate``; the gateway path sends the chat messages to
  ``/v1/chat/completions``. Latency is measured to the last byte of the response.

For each concurrency the paths alternate ``--rounds`` times (direct, gateway, direct,
...) so that a change of background load hits all. Printed: the setup, then per
concurrency and path the p50/p99 latency, the latency added to the direct path's
(difference of the percentiles), the throughput ratio to direct, and CPU milliseconds per
request of the process in the middle (with the time it was runnable but waited for a CPU:
other load on the machine), of the engine and of this load generator (from /proc schedstat). Targets
(foundation issue): p50 added <= 2 ms, throughput through the gateway >= 90% of direct at
concurrency 64.

``--relay-floor`` adds a third path, alternated with the other two: a process that only
relays the direct path's requests and the engine's answers as bytes (the gateway's HTTP
client and aiohttp's server; no rendering, parsing, sessions or journal). It is what any
Python process in the middle costs on this machine, the floor under the gateway's figures.
The sessions' own share of the gateway's work (history digests, matching, fingerprints) is
measured alone, with up to 10,000 sessions open, by benchmarks/session_matching.py.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 512] [--concurrency 1 16 64]
        [--token-delay 0.004] [--journal :memory:] [--rounds 2] [--json out.json] [--relay-floor]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ANSWER = "Sure. The answer is forty-two, and here is a short explanation of why that is."
TURNS = 4
SYSTEM = (
    "You are a careful assistant working inside a developer's terminal. Answer concisely, cite the files you "
    "read, prefer small reversible steps, and ask before running anything destructive. When a tool can answer "
    "a question better than recall, call it. Never invent command output. Keep answers under two paragraphs "
    "unless the user asks for detail, and say so when you are unsure."
)
TOOLS = [
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a text file of the repository.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string", "description": "Relative path."},
                                                        "max_lines": {"type": "integer"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "run_tests", "description": "Run the test suite, or the tests matching a pattern.",
        "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}}}},
]
QUESTIONS = (
    "I am looking at the build script of project {c}. Why does it rebuild everything after a small change?",
    "In project {c}, the tests under tests/unit fail on a clean checkout. What should I look at first?",
    "For project {c}, would caching the dependency download help, and how big would the change be?",
    "Thanks. Summarize what we found about project {c} in three bullet points.",
)


def conversation(c: int) -> tuple[list[list[dict]], list[dict]]:
    """The message lists of conversation ``c``'s turns (each with the earlier replies) and its tools."""
    history: list[dict] = [{"role": "system", "content": SYSTEM}]
    turns = []
    for k in range(TURNS):
        history.append({"role": "user", "content": QUESTIONS[k].format(c=c)})
        turns.append(list(history))
        history.append({"role": "assistant", "content": ANSWER})
    return turns, (TOOLS if c % 2 else [])


# -- child processes -----------------------------------------------------------------
async def _serve(app: Any, ready: str) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"{ready} http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


def engine_child(model_dir: str, token_delay: float) -> None:
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: test support
    from tests.scripted_engine import ScriptedEngine, make_scripted_app

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answer = tokenizer.encode(ANSWER + "<|im_end|>", add_special_tokens=False)
    engine = ScriptedEngine(lambda ids: answer, chunk_size=1, delay=token_delay, log_requests=False)
    gc.freeze()  # start-up objects out of the collector's way: the engine's latency stays fixed
    asyncio.run(_serve(make_scripted_app(engine), "engine"))


def gateway_child(model_dir: str, engine_url: str, journal: str, merge_chunks: bool) -> None:
    import logging

    from slime_openclaw.engine.client import EngineClient
    from slime_openclaw.gateway.app import GatewayDeps, GatewaySettings, make_app
    from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec
    from slime_openclaw.journal.location import open_journal

    logging.disable(logging.INFO)
    codec = TokenizerCodec.from_dir(model_dir)
    recorder = open_journal(journal)

    async def main() -> None:
        deps = GatewayDeps(EngineClient(engine_url, merge_chunks=merge_chunks), recorder, codec,
                           GatewaySettings(served_model_name="tiny", max_concurrency=4096))
        gc.freeze()  # as ``serve`` does once started
        await _serve(make_app(deps), "gateway")

    asyncio.run(main())


def relay_child(engine_url: str) -> None:
    """A process in the middle that only relays bytes: ``/generate`` in, the engine's answer out,
    over the gateway's HTTP client (``--relay-floor``). No rendering, parsing, sessions or journal."""
    from aiohttp import web

    from slime_openclaw.engine.http import HttpPool

    pool = HttpPool(engine_url)

    async def relay(request: web.Request) -> web.StreamResponse:
        async with await pool.request("POST", "/generate", await request.read()) as upstream:
            content_type = upstream.headers.get("content-type", "application/json")
            if not content_type.startswith("text/event-stream"):
                return web.Response(body=await upstream.read(), status=upstream.status,
                                    headers={"Content-Type": content_type})
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": content_type})
            await response.prepare(request)
            async for piece in upstream.chunks():
                await response.write(piece)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_post("/generate", relay)
    gc.freeze()
    asyncio.run(_serve(app, "relay"))


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if "http://" not in line:
        child.kill()
        raise SystemExit(f"child {args[1]} did not start")
    return child, line.split()[-1]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's threads so far.

    From /proc/PID/task/*/schedstat (the scheduler's nanosecond accounting; the tick-sampled
    times of /proc/PID/stat overcharge processes that wake on timers). NaN where unavailable.
    """
    run = wait = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "schedstat").read_text().split()
            run, wait = run + int(fields[0]) / 1e9, wait + int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")
    return run, wait


# -- load ----------------------------------------------------------------------------
class Route:
    """One way to the engine: its URL and the request body of every (conversation, turn)."""

    def __init__(self, url: str, bodies: list[list[dict]]):
        self.url = url
        self.bodies = bodies


async def _one(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, bytes]:
    start = time.perf_counter()
    async with http.post(url, json=body) as response:
        data = await response.read()
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {data[:300]!r}")
    return time.perf_counter() - start, data


async def _run(route: Route, first: int, conversations: int, concurrency: int) -> tuple[list[float], float]:
    """Run conversations ``first ..`` with ``concurrency`` workers; (latencies, wall seconds)."""
    latencies: list[float] = []
    queue = iter(range(first, first + conversations))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for c in queue:
                for body in route.bodies[c]:
                    latencies.append((await _one(http, route.url, body))[0])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, wall


def build_paths(model_dir: str, engine_url: str, gateway_url: str, conversations: int,
                max_tokens: int) -> tuple[Route, Route, list[int]]:
    """(direct, gateway) request bodies of every conversation turn, and the prompt lengths."""
    from slime_openclaw.chat.template import ChatRenderer
    from slime_openclaw.gateway.tokenizer_codec import TokenizerCodec

    codec = TokenizerCodec.from_dir(model_dir)
    renderer = ChatRenderer(codec.tokenizer)  # a fresh renderer: the gateway's cache stays cold
    direct, chat, lengths = [], [], []
    for c in range(conversations):
        turns, tools = conversation(c)
        d_turns, g_turns = [], []
        for k, messages in enumerate(turns):
            stream = (c + k) % 2 == 1
            ids = renderer.render_ids(messages, tools or None)
            lengths.append(len(ids))
            d_turns.append({"input_ids": ids, "stream": stream, "return_logprob": True, "sampling_params": {
                "temperature": 1.0, "max_new_tokens": max_tokens, "stop_token_ids": list(codec.stop_token_ids),
                "skip_special_tokens": False, "no_stop_trim": True}})
            g_turns.append({"model": "tiny", "max_tokens": max_tokens, "stream": stream, "messages": messages,
                            **({"tools": tools} if tools else {})})
        direct.append(d_turns)
        chat.append(g_turns)
    return Route(f"{engine_url}/generate", direct), Route(f"{gateway_url}/v1/chat/completions", chat), lengths


async def check_answers(gateway: Route) -> None:
    """The gateway's reply is the scripted answer (so the next turn's history is what it sent)."""
    async with aiohttp.ClientSession() as http:
        for body in gateway.bodies[0][:2]:
            _, data = await _one(http, gateway.url, body)
            text = data.decode()
            if body["stream"]:
                pieces = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
                content = "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces if p["choices"])
            else:
                content = json.loads(text)["choices"][0]["message"]["content"]
            if content != ANSWER:
                raise SystemExit(f"the gateway answered {content!r}, expected the scripted answer")


async def turns_recorded(gateway_url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway_url}/metrics") as response:
        text = await response.text()
    line = next(x for x in text.splitlines() if x.startswith("openclaw_gateway_turns_recorded_total "))
    return int(line.split()[-1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(routes: dict[str, Route], pids: dict[str, int], levels: list[int], requests: int,
                  rounds: int) -> list[dict]:
    """Per concurrency, run the paths alternately (same conversations for each); one row per
    (concurrency, path) with the path's figures next to the direct path's."""
    await check_answers(routes["gateway"])
    next_conv = 1
    rows = []
    for concurrency in levels:
        per_round = max(requests // rounds // TURNS, concurrency)
        lat: dict[str, list[float]] = {name: [] for name in routes}
        wall = dict.fromkeys(routes, 0.0)
        cpu = {(name, who): 0.0 for name in routes for who in ("engine", "client", name, f"{name}_wait")}
        warm = min(concurrency, 8)
        for route in routes.values():  # warm-up: connections, caches, code paths
            await _run(route, next_conv, warm, concurrency)
        next_conv += warm
        for _ in range(rounds):
            for name, route in routes.items():
                before = {k: cpu_seconds(p) for k, p in pids.items()}
                latencies, seconds = await _run(route, next_conv, per_round, concurrency)
                after = {k: cpu_seconds(p) for k, p in pids.items()}
                lat[name] += latencies
                wall[name] += seconds
                for who in ("engine", "client", name):
                    if who in pids:
                        cpu[(name, who)] += after[who][0] - before[who][0]
                if name in pids:
                    cpu[(name, f"{name}_wait")] += after[name][1] - before[name][1]
            next_conv += per_round
        n = per_round * rounds * TURNS
        d = lat["direct"]
        for name in routes:
            x = lat[name]
            rows.append({
                "concurrency": concurrency, "path": name, "requests": n,
                "p50_ms": _pct(x, 0.5), "p99_ms": _pct(x, 0.99),
                "added_p50_ms": _pct(x, 0.5) - _pct(d, 0.5), "added_p99_ms": _pct(x, 0.99) - _pct(d, 0.99),
                "mean_added_ms": (statistics.fmean(x) - statistics.fmean(d)) * 1000,
                "rps": n / wall[name], "throughput_ratio": wall["direct"] / wall[name],
                "middle_cpu_ms_per_request": cpu[(name, name)] / n * 1000,
                "middle_runqueue_wait_ms_per_request": cpu[(name, f"{name}_wait")] / n * 1000,
                "engine_cpu_ms_per_request": cpu[(name, "engine")] / n * 1000,
                "client_cpu_ms_per_request": cpu[(name, "client")] / n * 1000,
            })
    return rows


def print_report(args: argparse.Namespace, lengths: list[int], rows: list[dict], recorded: int, sent: int) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"setup: scripted engine, 27 tokens/answer streamed 1 token per event, {args.token_delay * 1000:g} ms per "
          f"token; gateway EngineClient merge_chunks={not args.no_merge_chunks}; journal {args.journal}; "
          f"{TURNS}-turn conversations, prompts {min(lengths)}-{max(lengths)} tokens "
          f"(median {statistics.median(lengths):.0f}), half streamed, half with 2 tools; {args.rounds} alternating "
          f"rounds per level; {os.cpu_count()} CPUs, load average {load[0]:.1f}; turns recorded {recorded}/{sent}")
    print(f"{'conc':>4} {'path':>7} {'reqs':>5} {'p50/p99 ms':>17} {'added p50/p99 ms':>17} {'rps':>5} "
          f"{'ratio':>5} {'middle cpu/wait ms/req':>22} {'engine cpu':>10} {'client cpu':>10}")
    for r in rows:
        middle = "" if r["path"] == "direct" else (
            f"{r['middle_cpu_ms_per_request']:>9.2f} /{r['middle_runqueue_wait_ms_per_request']:>6.2f}")
        print(f"{r['concurrency']:>4} {r['path']:>7} {r['requests']:>5} {r['p50_ms']:>8.2f} /{r['p99_ms']:>7.2f} "
              f"{r['added_p50_ms']:>8.2f} /{r['added_p99_ms']:>7.2f} {r['rps']:>5.0f} {r['throughput_ratio']:>5.2f} "
              f"{middle:>22} {r['engine_cpu_ms_per_request']:>10.2f} {r['client_cpu_ms_per_request']:>10.2f}")


def run_benchmark(args: argparse.Namespace) -> int:
    levels = args.concurrency
    conversations = 1 + sum(min(c, 8) + args.rounds * max(args.requests // args.rounds // TURNS, c) for c in levels)
    children: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        journal = args.journal or str(Path(tmp) / "journal.sqlite")
        args.journal = journal if args.journal else f"SQLite file ({journal})"
        try:
            engine, engine_url = _start(["--role", "engine", "--model", args.model, "--token-delay",
                                         str(args.token_delay)])
            children.append(engine)
            merge = ["--no-merge-chunks"] if args.no_merge_chunks else []
            gateway, gateway_url = _start(["--role", "gateway", "--model", args.model, "--engine-url", engine_url,
                                           "--journal", journal, *merge])
            children.append(gateway)
            pids = {"engine": engine.pid, "gateway": gateway.pid, "client": os.getpid()}
            direct, chat, lengths = build_paths(args.model, engine_url, gateway_url, conversations, args.max_tokens)
            routes = {"direct": direct, "gateway": chat}
            if args.relay_floor:  # the direct path's requests, through a byte relay
                relay, relay_url = _start(["--role", "relay", "--engine-url", engine_url])
                children.append(relay)
                pids["relay"] = relay.pid
                routes["relay"] = Route(f"{relay_url}/generate", direct.bodies)
            gc.freeze()  # the load generator's collector pauses would hit every path as noise
            rows = asyncio.run(measure(routes, pids, levels, args.requests, args.rounds))
            recorded = asyncio.run(turns_recorded(gateway_url))
        finally:
            for child in children:
                child.terminate()
                child.wait(10)
    sent = 2 + sum(TURNS * (min(r["concurrency"], 8)) + r["requests"] for r in rows if r["path"] == "gateway")
    print_report(args, lengths, rows, recorded, sent)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if recorded == sent else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=512, help="requests per concurrency level and path")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--token-delay", type=float, default=0.004, help="engine seconds per token (fixed)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/gateway runs per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--journal", help="journal location for the gateway (default: a SQLite file in a temp dir; "
                                          "':memory:' for the in-memory journal)")
    parser.add_argument("--model", help="tokenizer directory (default: the tiny model)")
    parser.add_argument("--no-merge-chunks", action="store_true",
                        help="the gateway's EngineClient gives one delta per engine chunk even when it fell behind")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--relay-floor", action="store_true",
                        help="also measure a byte relay in the middle (the floor any Python process in the middle "
                             "costs on this machine)")
    parser.add_argument("--role", choices=("engine", "gateway", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--engine-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from slime_openclaw.local.model.tiny_model import ensure_default_model

        args.model = str(ensure_default_model())
    if args.role == "engine":
        engine_child(args.model, args.token_delay)
        return 0
    if args.role == "gateway":
        gateway_child(args.model, args.engine_url, args.journal, not args.no_merge_chunks)
        return 0
    if args.role == "relay":
        relay_child(args.engine_url)
        return 0
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
