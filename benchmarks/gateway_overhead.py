"""Latency and throughput the gateway adds in front of an engine.

Separate processes, so that none of them shares a GIL (or, as far as the machine allows, a
core) with the one under test (benchmarks/overhead_paths/children.py):

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
  checks the turns in each gateway path's journal (its ``turns_recorded`` counter with
  ``:memory:``) against the requests it sent.
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
Python process in the middle costs on this machine, the floor under the gateway's figures;
the report ends with each middle path's ratios to the relay on the same event loop (issue
14's targets). The sessions' own share of the gateway's work (history digests, matching,
fingerprints) is measured alone, with up to 10,000 sessions open, by benchmarks/session_matching.py.
More paths, each alternated with the others (the processes: benchmarks/overhead_paths/):

* ``--loop both``: the gateway and the relay each on asyncio's loop and on uvloop
  (``-uvloop``); ``--loop asyncio|uvloop|auto`` runs the middle processes on that one
  (``asyncio``, the default, as ``serve``'s default).
* ``--relay-clients aiohttp httpcore``: the relay over a tuned library client instead of
  the gateway's own (engine/http.py), to weigh that client against the libraries.
* ``--workers N``: N gateway processes on one port (``SO_REUSEPORT``) sharing one journal file.
* ``--base-checkout DIR``: the gateway of another checkout of this repository (its package
  and its benchmark's gateway child, e.g. a ``git worktree add --detach DIR REV``), as
  ``gateway-base``: a change's before and after in one run.
* ``--peer litellm``: LiteLLM's proxy (its own environment: ``make bench-peer``) in front of
  an OpenAI-compatible face of the same engine, plus ``direct-oai``, that face directly.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 512] [--concurrency 1 16 64]
        [--token-delay 0.004] [--journal :memory:] [--rounds 2] [--json out.json] [--relay-floor]
        [--loop both] [--relay-clients aiohttp httpcore] [--workers 2] [--peer litellm] [--base-checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from overhead_paths.children import RELAY_CLIENTS, engine_child, gateway_child, relay_child
from overhead_paths.load import ANSWER, TURNS, Route, conversation, measure
from overhead_paths.peer import MASTER_KEY, calls_logged, start_litellm

from slime_openclaw.gateway import eventloop


def _start(args: list[str], checkout: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a child role (of this checkout's code, or of ``checkout``'s: its package and its benchmark)."""
    script, env = __file__, None
    if checkout is not None:
        script, env = str(checkout / "benchmarks" / "gateway_overhead.py"), {**os.environ, "PYTHONPATH": str(checkout)}
    child = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    line = child.stdout.readline()
    if "http://" not in line:
        child.kill()
        raise SystemExit(f"child {args[1]} did not start")
    return child, line.split()[-1]


def build_bodies(model_dir: str, conversations: int, max_tokens: int) -> tuple[list[list[dict]], list[list[dict]],
                                                                           list[int]]:
    """(direct ``/generate``, chat) request bodies of every conversation turn, and the prompt lengths."""
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
    return direct, chat, lengths


async def turns_recorded(gateway_url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway_url}/metrics") as response:
        text = await response.text()
    line = next(x for x in text.splitlines() if x.startswith("openclaw_gateway_turns_recorded_total "))
    return int(line.split()[-1])


def journal_turns(path: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM turns").fetchone()[0])


def floor_of(path: str, paths: list[str]) -> str | None:
    """The relay a middle path is compared with: the one on the same event loop."""
    if path.startswith(("direct", "relay")):
        return None
    for suffix in ("-uvloop", "-asyncio"):
        if path.endswith(suffix) and f"relay{suffix}" in paths:
            return f"relay{suffix}"
    return "relay" if "relay" in paths else None


def print_report(setup: str, rows: list[dict]) -> None:
    print(setup)
    print(f"{'conc':>4} {'path':>15} {'reqs':>5} {'p50/p99 ms':>17} {'added p50/p99 ms':>17} {'rps':>5} "
          f"{'ratio':>5} {'middle cpu/wait ms/req':>22} {'engine cpu':>10} {'client cpu':>10}")
    for r in rows:
        middle = "" if r["path"].startswith("direct") else (
            f"{r['middle_cpu_ms_per_request']:>9.2f} /{r['middle_runqueue_wait_ms_per_request']:>6.2f}")
        print(f"{r['concurrency']:>4} {r['path']:>15} {r['requests']:>5} {r['p50_ms']:>8.2f} /{r['p99_ms']:>7.2f} "
              f"{r['added_p50_ms']:>8.2f} /{r['added_p99_ms']:>7.2f} {r['rps']:>5.0f} {r['throughput_ratio']:>5.2f} "
              f"{middle:>22} {r['engine_cpu_ms_per_request']:>10.2f} {r['client_cpu_ms_per_request']:>10.2f}")
    by = {(r["concurrency"], r["path"]): r for r in rows}
    paths = list(dict.fromkeys(r["path"] for r in rows))
    lines = []
    for (c, path), r in by.items():
        floor = by.get((c, floor_of(path, paths) or ""))
        if floor is None:
            continue
        lines.append(f"  c={c:<3} {path:>15} vs {floor['path']:<13}: CPU {r['middle_cpu_ms_per_request'] / floor['middle_cpu_ms_per_request']:.2f}x, "
                     f"throughput {r['throughput_ratio'] / floor['throughput_ratio']:.2f}x, "
                     f"added p50 {r['added_p50_ms'] - floor['added_p50_ms']:+.2f} ms")
    if lines:
        print("ratios to the relay on the same loop (issue 14's targets: CPU <= 1.5x and throughput >= 0.95x "
              "at c=64, added p50 <= +1 ms at c=1):")
        print("\n".join(lines))


class Middles:
    """The processes in the middle, started as the options ask: {path: (url, pids)}."""

    def __init__(self, args: argparse.Namespace, engine_url: str, tmp: Path):
        self.args, self.engine_url, self.tmp = args, engine_url, tmp
        self.children: list[subprocess.Popen] = []
        self.paths: dict[str, tuple[str, list[int]]] = {}
        self.journals: dict[str, str] = {}

    def _child(self, args: list[str], checkout: Path | None = None) -> tuple[subprocess.Popen, str]:
        child, url = _start(args, checkout)
        self.children.append(child)
        return child, url

    def gateway(self, name: str, loop: str, workers: int = 1, checkout: Path | None = None) -> None:
        journal = self.args.journal or str(self.tmp / f"{name}.sqlite")
        merge = ["--no-merge-chunks"] if self.args.no_merge_chunks else []
        common = ["--role", "gateway", "--model", self.args.model, "--engine-url", self.engine_url,
                  "--journal", journal, "--loop", loop, *merge]
        first, url = self._child([*common, *(["--reuse-port"] if workers > 1 else [])], checkout)
        pids = [first.pid]
        for _ in range(workers - 1):  # the others bind the first one's port (SO_REUSEPORT)
            pids.append(self._child([*common, "--reuse-port", "--port", url.rsplit(":", 1)[1]])[0].pid)
        self.paths[name] = (url, pids)
        self.journals[name] = journal

    def relay(self, name: str, loop: str, client: str = "own") -> None:
        child, url = self._child(["--role", "relay", "--engine-url", self.engine_url, "--loop", loop,
                                  "--relay-client", client])
        self.paths[name] = (url, [child.pid])

    def litellm(self) -> None:
        child, url = start_litellm(self.args.peer_venv, self.engine_url, self.tmp)
        self.children.append(child)
        self.paths["litellm"] = (url, [child.pid])

    def start_all(self) -> None:
        args = self.args
        loops = ["asyncio", "uvloop"] if args.loop == "both" else [eventloop.loop_name(args.loop)]
        suffix = {"asyncio": "", "uvloop": "-uvloop"} if len(loops) > 1 else {loops[0]: ""}
        for loop in loops:
            self.gateway(f"gateway{suffix[loop]}", loop)
        if args.workers > 1:
            self.gateway(f"gateway-w{args.workers}{suffix[loops[-1]]}", loops[-1], args.workers)
        if args.base_checkout is not None:
            self.gateway(f"gateway-base{suffix[loops[-1]]}", loops[-1], checkout=args.base_checkout)
        if args.relay_floor:
            for loop in loops:
                self.relay(f"relay{suffix[loop]}", loop)
        for client in args.relay_clients:
            self.relay(f"relay-{client}{suffix[loops[-1]]}", loops[-1], client)
        if args.peer == "litellm":
            self.litellm()

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


def run_benchmark(args: argparse.Namespace) -> int:
    levels = args.concurrency
    conversations = 1 + sum(min(c, 8) + args.rounds * max(args.requests // args.rounds // TURNS, c) for c in levels)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        engine, engine_url = _start(["--role", "engine", "--model", args.model, "--token-delay", str(args.token_delay)])
        middles = Middles(args, engine_url, Path(tmp))
        try:
            middles.start_all()
            direct, chat, lengths = build_bodies(args.model, conversations, args.max_tokens)
            routes = {"direct": Route(f"{engine_url}/generate", direct)}
            for name, (url, _) in middles.paths.items():
                if name.startswith("relay"):
                    routes[name] = Route(f"{url}/generate", direct)
                else:
                    routes[name] = Route(f"{url}/v1/chat/completions", chat, checked=True,
                                         headers={"Authorization": f"Bearer {MASTER_KEY}"} if name == "litellm" else None)
            if args.peer:  # the peer's engine face, directly: its own floor
                routes["direct-oai"] = Route(f"{engine_url}/v1/chat/completions", chat, checked=True)
            pids = {name: p for name, (_, p) in middles.paths.items()}
            pids.update(engine=[engine.pid], client=[os.getpid()])
            gc.freeze()  # the load generator's collector pauses would hit every path as noise
            rows = asyncio.run(measure(routes, pids, levels, args.requests, args.rounds))
            recorded = {name: asyncio.run(turns_recorded(middles.paths[name][0])) if journal == ":memory:"
                        else journal_turns(journal) for name, journal in middles.journals.items()}
            if "litellm" in middles.paths:
                time.sleep(1.0)  # its callbacks log after the answers left
                recorded["litellm"] = calls_logged(Path(tmp))
        finally:
            middles.stop()
            engine.terminate()
            engine.wait(10)
    sent = {name: 2 + sum(TURNS * min(r["concurrency"], 8) + r["requests"] for r in rows if r["path"] == name)
            for name in recorded}
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    journal = args.journal or "a SQLite file per gateway path"
    counts = ", ".join(f"{name} {recorded[name]}/{sent[name]}" for name in recorded)
    print_report(
        f"setup: scripted engine, 27 tokens/answer streamed 1 token per event, {args.token_delay * 1000:g} ms per "
        f"token; gateway EngineClient merge_chunks={not args.no_merge_chunks}; journal {journal}; event loop "
        f"{args.loop}; {TURNS}-turn conversations, prompts "
        f"{min(lengths)}-{max(lengths)} tokens (median {statistics.median(lengths):.0f}), half streamed, half with "
        f"2 tools; {args.rounds} alternating rounds per level; {os.cpu_count()} CPUs, load average {load[0]:.1f}; "
        f"turns recorded (logged, for the peer): {counts}", rows)
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
    parser.add_argument("--loop", choices=(*eventloop.LOOPS, "both"), default="asyncio",
                        help="event loop of the processes in the middle (both: each path on asyncio and on uvloop)")
    parser.add_argument("--relay-clients", nargs="*", default=[], choices=RELAY_CLIENTS[1:],
                        help="also relay over these library HTTP clients (vs the gateway's own, engine/http.py)")
    parser.add_argument("--workers", type=int, default=1,
                        help="also measure N gateway processes on one port (SO_REUSEPORT) sharing one journal")
    parser.add_argument("--base-checkout", type=Path, help="also measure the gateway of another checkout of this "
                        "repository (e.g. `git worktree add --detach DIR REV`), as path gateway-base: before/after "
                        "in one run")
    parser.add_argument("--peer", choices=("litellm",), help="also measure LiteLLM's proxy in front of an "
                        "OpenAI-compatible face of the same engine (needs `make bench-peer`)")
    parser.add_argument("--peer-venv", type=Path, default=Path(__file__).resolve().parents[1] / ".cache" / "litellm-proxy",
                        help="the virtual environment holding litellm[proxy] (default .cache/litellm-proxy)")
    parser.add_argument("--role", choices=("engine", "gateway", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--engine-url", help=argparse.SUPPRESS)
    parser.add_argument("--relay-client", default="own", choices=RELAY_CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workers > 1 and args.journal == ":memory:":
        parser.error("--workers shares one journal file between the processes: not with --journal :memory:")
    if args.model is None:
        from slime_openclaw.local.model.tiny_model import ensure_default_model

        args.model = str(ensure_default_model())
    if args.role == "engine":
        engine_child(args.model, args.token_delay, ANSWER)
    elif args.role == "gateway":
        gateway_child(args.model, args.engine_url, args.journal, not args.no_merge_chunks, args.loop,
                      args.port, args.reuse_port)
    elif args.role == "relay":
        relay_child(args.engine_url, args.relay_client, args.loop)
    else:
        return run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
