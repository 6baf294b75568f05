"""Does one large request delay everyone else? p99 of ``GET /v1/models`` during large requests.

Three processes: the scripted engine (tests/scripted_engine.py, the same 6-token answer to
every prompt), the real gateway started as users start it (``slime-openclaw serve
--engine-url ... --tokenizer <tiny model> --journal :memory:``, so the context limit is the
tiny model's ``max_position_embeddings`` unless a scenario passes ``--max-context-tokens``),
and this load generator. While one scenario's large requests run one after another, a
probe sends ``GET /v1/models`` every ``--probe-interval`` seconds on its own connection
and times each answer; printed per scenario: the large requests' statuses and seconds,
the probe's p50 / p99 / max latency during them, and the gateway's peak RSS so far.

Each scenario sends its large request ``--repeats`` times and for at least ``--min-seconds``.
Scenarios (default run ~30 s on 2 shared cores), after a baseline without large requests
(the probe alone: what the machine's other load costs):

* ``8MB-body``: an ~8 MB body (one user message): refused with 413 once the body limit
  (1 MiB + 32 bytes per context token) is read.
* ``1MB-over-context``: ~1 MB of text against the 4096-token context: refused with 400
  ``context_length_exceeded`` from its characters alone, before tokenizing.
* ``200k-in-context``: 200k characters with ``--max-context-tokens 1000000``: parsed,
  rendered and tokenized (~50k tokens) in a thread, then answered (200).

The target (issue 9): a large request never delays a small one by more than a few ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def engine_child(model_dir: str) -> None:
    from transformers import AutoTokenizer

    sys.path.insert(0, str(ROOT))  # the repository root: test support
    from aiohttp import web

    from tests.scripted_engine import ScriptedEngine, make_scripted_app

    answer = AutoTokenizer.from_pretrained(model_dir).encode("fine, thanks.<|im_end|>", add_special_tokens=False)

    async def serve() -> None:
        runner = web.AppRunner(make_scripted_app(ScriptedEngine(lambda ids: answer, log_requests=False)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"engine http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def _start(command: list[str], marker: str) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None
    for line in child.stdout:
        if marker in line:
            return child, line.split("http://", 1)[1].split()[0]
    raise RuntimeError(f"{command[:4]} did not start (exit code {child.wait()})")


def _stop(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(15)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body_of(chars: int) -> bytes:
    words = "".join(f"word{i} and some more text; " for i in range(chars // 20 + 1))[:chars]
    return json.dumps({"model": "tiny", "messages": [{"role": "user", "content": words}], "max_tokens": 8}).encode()


async def probe(base: str, interval: float, stop: asyncio.Event, out: list[float]) -> None:
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            start = time.perf_counter()
            async with http.get(f"{base}/v1/models") as r:
                await r.read()
                assert r.status == 200
            out.append(time.perf_counter() - start)
            await asyncio.sleep(interval)


def send_large(base: str, body: bytes, repeats: int, min_seconds: float) -> list[tuple[int, float]]:
    """POST the large body until ``repeats`` answers and ``min_seconds`` passed (run in a
    child process of its own: the probe's process is not the one sending megabytes)."""
    results: list[tuple[int, float]] = []
    began = time.perf_counter()
    if not body:  # the baseline: no large request, the probe alone
        time.sleep(min_seconds)
        return [(0, 0.0)]
    while len(results) < repeats or time.perf_counter() - began < min_seconds:
        start = time.perf_counter()
        request = urllib.request.Request(f"{base}/v1/chat/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            exc.read()
            status = exc.code
        except (ConnectionError, urllib.error.URLError):  # refused (413) before the whole body was sent
            status = -1
        results.append((status, time.perf_counter() - start))
    return results


async def scenario(base: str, chars: int, repeats: int, interval: float,
                   min_seconds: float) -> tuple[str, list[float]]:
    stop, latencies = asyncio.Event(), []  # type: ignore[var-annotated]
    prober = asyncio.create_task(probe(base, interval, stop, latencies))
    await asyncio.sleep(0.3)  # the probe's connection is up and warm
    latencies.clear()
    sender = await asyncio.create_subprocess_exec(  # its own process: no GIL shared with the probe
        sys.executable, __file__, "send", base, str(chars), str(repeats), str(min_seconds),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    output, _ = await sender.communicate()
    results = [tuple(json.loads(line)) for line in output.decode().splitlines()]
    stop.set()
    await prober
    if results == [(0, 0.0)]:
        return "none", latencies
    statuses = sorted({status for status, _ in results})
    slowest = max(seconds for _, seconds in results)
    return f"{len(results)} x {'/'.join(map(str, statuses))}, slowest {slowest:.2f}s", latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="large requests per scenario (default 2)")
    parser.add_argument("--probe-interval", type=float, default=0.005, help="seconds between probes (default 0.005)")
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help="keep sending a scenario's large requests at least this long (default 2)")
    parser.add_argument("--in-context-chars", type=int, default=200_000,
                        help="characters of the tokenized scenario (default 200000, ~50k tokens: the "
                             "scripted engine takes bodies up to 1 MiB)")
    parser.add_argument("child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child[0] == "engine":
        engine_child(args.child[1])
        return 0
    if args.child:  # send BASE CHARS REPEATS MIN_SECONDS: one JSON line per answer
        base, chars, repeats, min_seconds = args.child[1:]
        for status, seconds in send_large(base, body_of(int(chars)) if int(chars) else b"", int(repeats), float(min_seconds)):
            print(json.dumps([status, seconds]))
        return 0
    from slime_openclaw.local.model.tiny_model import ensure_default_model

    model = str(ensure_default_model())
    engine, engine_url = _start([sys.executable, __file__, "engine", model], "engine http://")
    try:
        scenarios = [("none (baseline)", 0, []), ("8MB-body", 8_000_000, []), ("1MB-over-context", 1_000_000, []),
                     (f"{args.in_context_chars // 1000}k-in-context", args.in_context_chars, ["--max-context-tokens", "1000000"])]
        print(f"tiny model, scripted engine; probe GET /v1/models every {args.probe_interval * 1000:.0f} ms; "
              f"{args.repeats} large requests per scenario")
        print(f"{'scenario':<18} {'large requests':<30} {'probes':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
              f"{'gateway peak RSS':>17}")
        for name, chars, extra in scenarios:
            gateway, url = _start([sys.executable, "-m", "slime_openclaw.cli", "serve", "--engine-url",
                                   f"http://{engine_url}", "--tokenizer", model, "--port", "0", "--served-model-name", "tiny", "--journal",
                                   ":memory:", "--log-level", "WARNING", *extra], "gateway listening on http://")
            try:
                base = "http://" + url.removesuffix("/v1")
                results, latencies = asyncio.run(scenario(base, chars, args.repeats, args.probe_interval,
                                                             args.min_seconds))
                print(f"{name:<18} {results:<30} {len(latencies):>6} {_pct(latencies, 0.5):>7.1f} "
                      f"{_pct(latencies, 0.99):>7.1f} {max(latencies) * 1000:>7.1f} "
                      f"{peak_rss_mib(gateway.pid):>13.0f} MiB")
            finally:
                _stop(gateway)
    finally:
        _stop(engine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
