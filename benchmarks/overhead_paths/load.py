"""The load of benchmarks/gateway_overhead.py: agent conversations, run over each path, measured.

Each worker runs whole conversations, turn after turn (``conversation``); per concurrency
the paths alternate (``measure``), each path's latencies, wall time and the CPU seconds of
the processes involved (``cpu_seconds``, from the scheduler) are taken per round.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

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

    def __init__(self, url: str, bodies: list[list[dict]], *, checked: bool = False,
                 headers: dict[str, str] | None = None):
        self.url = url
        self.bodies = bodies
        self.headers = headers or {}
        self.checked = checked
        """Its answers are OpenAI chat completions, checked to be the scripted answer first."""


async def _one(http: aiohttp.ClientSession, url: str, body: dict,
               headers: dict[str, str] | None = None) -> tuple[float, bytes]:
    start = time.perf_counter()
    async with http.post(url, json=body, headers=headers) as response:
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
                    latencies.append((await _one(http, route.url, body, route.headers))[0])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, wall


async def check_answers(route: Route) -> None:
    """The path's reply is the scripted answer (so the next turn's history is what it sent)."""
    async with aiohttp.ClientSession() as http:
        for body in route.bodies[0][:2]:
            _, data = await _one(http, route.url, body, route.headers)
            text = data.decode()
            if body["stream"]:
                pieces = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
                content = "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces if p["choices"])
            else:
                content = json.loads(text)["choices"][0]["message"]["content"]
            if content != ANSWER:
                raise SystemExit(f"{route.url} answered {content!r}, expected the scripted answer")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _cpu(pids: list[int]) -> tuple[float, float]:
    run = wait = 0.0
    for pid in pids:
        r, w = cpu_seconds(pid)
        run, wait = run + r, wait + w
    return run, wait


async def measure(routes: dict[str, Route], pids: dict[str, list[int]], levels: list[int], requests: int,
                  rounds: int) -> list[dict]:
    """Per concurrency, run the paths alternately (same conversations for each); one row per
    (concurrency, path) with the path's figures next to the direct path's."""
    for route in routes.values():
        if route.checked:
            await check_answers(route)
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
                before = {k: _cpu(p) for k, p in pids.items()}
                latencies, seconds = await _run(route, next_conv, per_round, concurrency)
                after = {k: _cpu(p) for k, p in pids.items()}
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
