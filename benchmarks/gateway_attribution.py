"""Where the gateway's CPU per request goes, beside the byte relay's, under gateway_overhead.py's load.

The processes of benchmarks/gateway_overhead.py (scripted engine, gateway with a SQLite
journal, byte relay; benchmarks/overhead_paths/children.py), the same agent conversations
at one concurrency; in the gateway and the relay, timers around the functions of the
serving path (``TIMED``: each call's thread CPU time, less that of the timed calls inside
it), switched on for the measured requests only (SIGUSR1 on, SIGUSR2 off and written out).
Printed per path: the process's CPU per request (from the scheduler, as gateway_overhead.py
reports it) and per timed function its CPU per request, calls per request and CPU per call;
the threads' CPU (the journal's checkpoint thread). What no timer covers is aiohttp's request
handling, the event loop and the switching between coroutines. Each timed call adds about
1 us of timer overhead (two ``thread_time_ns`` calls) to its own and its caller's figures.
Last, the ``budget:`` line: issue 14's CPU target (<= 1.5x the relay's) against the work only
the gateway does, per request and per streamed event (``budget``).

    .venv/bin/python benchmarks/gateway_attribution.py [--concurrency 64] [--conversations 256]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import importlib
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TIMED_IO = ("aiohttp.web_response:StreamResponse.write", "aiohttp.web_response:StreamResponse.write_eof",
            "aiohttp.web_response:StreamResponse.prepare", "slime_openclaw.engine.http:_Connection.data_received",
            "slime_openclaw.engine.http_framing:take_chunks", "slime_openclaw.gateway.sse_writer:SseWriter.write")
TIMED = TIMED_IO + (
    "slime_openclaw.gateway.app:_parse", "slime_openclaw.gateway.app:turn_context",
    "slime_openclaw.gateway.chat:ChatService.prepare", "slime_openclaw.gateway.chat:ChatService._chunks",
    "slime_openclaw.gateway.chat:ChatService._finish", "slime_openclaw.gateway.chat:ChatService._closing_chunks",
    "slime_openclaw.gateway.recording:TurnBook.open", "slime_openclaw.gateway.recording:TurnBook.close",
    "slime_openclaw.gateway.tokenizer_codec:TokenizerCodec.render_ids",
    "slime_openclaw.gateway.tokenizer_codec:_Parser.feed", "slime_openclaw.gateway.responses:ChunkEncoder.encode",
    "slime_openclaw.gateway.responses:json_response", "slime_openclaw.engine.client:SseEvents.feed",
    "slime_openclaw.engine.client:_DeltaReader.delta", "slime_openclaw.engine.client:_chunk",
    "slime_openclaw.gateway.generation:ResumableGeneration._accept",
    "slime_openclaw.journal.writer:JournalWriter._apply_pending", "slime_openclaw.journal.writer:JournalWriter._deliver",
    "slime_openclaw.journal.sqlite:SqliteJournal.record_turn",
    "slime_openclaw.journal.sqlite:SqliteJournal.attach_next_state", "slime_openclaw.journal.layout:turn_row",
)
"""``module:attribute`` of the sync functions timed in the gateway (the relay: ``TIMED_IO``). Async ones
(aiohttp's writes) are timed while they run; they suspend only when the socket is full."""
_REBOUND = {"slime_openclaw.engine.http_framing:take_chunks": "slime_openclaw.engine.http"}
"""Timed functions imported by name into another module: the timed one is bound there too."""


class Timers:
    """Exclusive thread CPU time and calls per timed function, while on."""

    def __init__(self) -> None:
        self.on = False
        self.ns: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._inner = [0]
        self._threads: dict[str, int] = {}

    def wrap(self, target: str) -> None:
        module_name, _, path = target.partition(":")
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        timed = self._timed_async(original, path) if inspect.iscoroutinefunction(original) else self._timed(original, path)
        setattr(owner, name, timed)
        if target in _REBOUND:
            setattr(importlib.import_module(_REBOUND[target]), name, timed)

    def _timed(self, fn: Any, label: str) -> Any:
        clock = time.thread_time_ns

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return fn(*args, **kwargs)
            self._inner.append(0)
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self._account(label, clock() - start)
        return timed

    def _timed_async(self, fn: Any, label: str) -> Any:
        clock = time.thread_time_ns

        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return await fn(*args, **kwargs)
            self._inner.append(0)
            start = clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                self._account(label, clock() - start)
        return timed

    def _account(self, label: str, spent: int) -> None:
        """One timed call's CPU, less its timed calls' (``_inner``), which its caller's does not count."""
        self.ns[label] += spent - self._inner.pop()
        self.calls[label] += 1
        self._inner[-1] += spent

    @staticmethod
    def _thread_clocks() -> dict[str, int]:
        clocks = {}
        for thread in threading.enumerate():
            if thread.ident is not None:
                clocks[thread.name] = time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
        return clocks

    def start(self, *_: Any) -> None:
        self.ns.clear()
        self.calls.clear()
        self._threads = self._thread_clocks()
        self.on = True

    def stop(self, out: Path) -> None:
        self.on = False
        threads = {name: ns - self._threads.get(name, ns) for name, ns in self._thread_clocks().items()}
        out.write_text(json.dumps({"threads": threads, "timed": {k: [v, self.calls[k]] for k, v in self.ns.items()}}))
        print("written", flush=True)


def child(role: str, args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from overhead_paths.children import gateway_child, relay_child

    timers = Timers()
    for target in TIMED if role == "gateway" else TIMED_IO:
        timers.wrap(target)
    signal.signal(signal.SIGUSR1, timers.start)
    signal.signal(signal.SIGUSR2, lambda *_: timers.stop(Path(args.out)))
    if role == "gateway":
        gateway_child(args.model, args.engine_url, args.journal, True, "asyncio")
    else:
        relay_child(args.engine_url, "own", "asyncio")


def report(name: str, n: int, cpu: float, data: dict[str, Any]) -> None:
    print(f"{name}: {n} requests, process CPU {cpu / n * 1e6:.0f} us/request (scheduler)")
    for thread, ns in sorted(data["threads"].items(), key=lambda kv: -kv[1]):
        print(f"  {ns / n / 1000:8.1f} us/request  thread {thread}")
    for label, (ns, calls) in sorted(data["timed"].items(), key=lambda kv: -kv[1][0]):
        print(f"  {ns / n / 1000:8.1f} us/request {calls / n:6.2f} calls/request {ns / calls / 1000:7.2f} us/call  {label}")


PER_EVENT = 4.0
"""Calls per request from which a timed function counts as per streamed event (27 tokens, ~13.5 events)."""


def budget(gateway: tuple[int, float, dict[str, Any]], relay: tuple[int, float, dict[str, Any]]) -> None:
    """Issue 14's CPU target (<= 1.5x the relay's) against the work only the gateway does.

    The gateway's own timed functions (``TIMED`` less ``TIMED_IO``, which the relay runs too)
    split into per-request and per-event ones; printed: what 1.5x allows beyond the relay's
    CPU, each part's sum, and the gateway's CPU were every per-event step free."""
    (n, cpu, data), (rn, rcpu, _) = gateway, relay
    g, r = cpu / n * 1e6, rcpu / rn * 1e6
    shared = {t.partition(":")[2] for t in TIMED_IO}
    own = {label: v for label, v in data["timed"].items() if label not in shared}
    per_event = sum(ns for ns, calls in own.values() if calls / n >= PER_EVENT) / n / 1000
    per_request = sum(ns for ns, calls in own.values() if calls / n < PER_EVENT) / n / 1000
    allowed = 0.5 * r
    print(f"budget: 1.5x the relay allows {allowed:.0f} us/request beyond the relay's {r:.0f}; the gateway's own "
          f"timed work: per request {per_request:.0f} us ({per_request / allowed:.2f}x that allowance), "
          f"per streamed event {per_event:.0f} us; with every per-event step free: {g - per_event:.0f} us/request "
          f"({(g - per_event) / r:.2f}x the relay's; now {g / r:.2f}x)")


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gateway_overhead import _start, build_bodies
    from overhead_paths.load import Route, _run, cpu_seconds

    from slime_openclaw.local.model.tiny_model import ensure_default_model

    model = args.model or str(ensure_default_model())
    with tempfile.TemporaryDirectory(prefix="gateway-attribution-") as tmp:
        engine, engine_url = _start(["--role", "engine", "--model", model, "--token-delay", "0.004"])
        me = [sys.executable, __file__, "--model", model, "--engine-url", engine_url]
        paths = {}
        measured: dict[str, tuple[int, float, dict[str, Any]]] = {}
        for role in ("gateway", "relay"):
            out = Path(tmp) / f"{role}.json"
            proc = subprocess.Popen([*me, "--role", role, "--journal", f"{tmp}/journal.sqlite", "--out", str(out)],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            paths[role] = (proc, proc.stdout.readline().split()[-1], out)
        try:
            warm = min(args.concurrency, 16)
            direct, chat, _ = build_bodies(model, 1 + warm + args.conversations, 64)
            for role, (proc, url, out) in paths.items():
                route = Route(f"{url}/v1/chat/completions", chat) if role == "gateway" else Route(f"{url}/generate", direct)
                asyncio.run(_run(route, 1, warm, args.concurrency))
                proc.send_signal(signal.SIGUSR1)
                before = cpu_seconds(proc.pid)[0]
                latencies, _ = asyncio.run(_run(route, 1 + warm, args.conversations, args.concurrency))
                cpu = cpu_seconds(proc.pid)[0] - before
                proc.send_signal(signal.SIGUSR2)
                assert proc.stdout is not None
                proc.stdout.readline()
                measured[role] = (len(latencies), cpu, json.loads(out.read_text()))
                report(role, *measured[role])
        finally:
            for proc, _, _ in paths.values():
                proc.terminate()
                proc.wait(10)
            engine.terminate()
            engine.wait(10)
    budget(measured["gateway"], measured["relay"])
    print(f"c={args.concurrency}, load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--conversations", type=int, default=256, help="measured conversations (4 turns each) per path")
    parser.add_argument("--model", help="tokenizer directory (default: the tiny model)")
    parser.add_argument("--role", choices=("gateway", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--engine-url", help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        child(args.role, args)
    else:
        run(args)


if __name__ == "__main__":
    main()
