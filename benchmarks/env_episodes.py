"""Cost of an episode of each built-in environment, per isolation mode.

Runs the reference trajectory of the first ``--tasks`` eval tasks of each family, with
``--concurrency`` episodes at a time, and prints one JSON line per (family, mode): the
share solved (must be 1.0: the references are correct), seconds per episode and
episodes per second. What an agent loop pays for the environment alone (no model).

    .venv/bin/python benchmarks/env_episodes.py --tasks 30 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from slime_openclaw.envs import build_env, builtin_tasks, reference_replies
from slime_openclaw.envs.sandbox import bwrap_works

PROBES = {"terminal": "probe_checks", "swe": "probe_tests"}
"""The argument that turns per-step check probes on or off, per family that has one."""


async def episode(family: str, mode: str, task: dict[str, Any], probe: bool) -> tuple[bool, float]:
    """One reference episode on a fresh environment; (passed, seconds)."""
    args = [f"isolation={mode}"] + ([f"{PROBES[family]}={probe}"] if family in PROBES else [])
    env = build_env(family, args)
    started = time.perf_counter()
    try:
        await env.reset(task)
        for reply in reference_replies(family, task):
            await env.step(reply)
        passed = (await env.outcome()).passed
    finally:
        await env.close()
    return passed, time.perf_counter() - started


async def measure(family: str, mode: str, count: int, concurrency: int, probe: bool) -> dict[str, Any]:
    tasks = builtin_tasks(family, "eval")[:count]
    gate = asyncio.Semaphore(concurrency)

    async def one(task: dict[str, Any]) -> tuple[bool, float]:
        async with gate:
            return await episode(family, mode, task, probe)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(t) for t in tasks))
    wall = time.perf_counter() - started
    return {"env": family, "isolation": mode, "probe_checks": probe if family in PROBES else None,
            "episodes": len(results), "solved": sum(p for p, _ in results) / len(results),
            "s_per_episode": round(sum(s for _, s in results) / len(results), 3),
            "episodes_per_s": round(len(results) / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--env", action="append", choices=["terminal", "toolcall", "swe"],
                        help="measure only these families (repeatable; default: all)")
    args = parser.parse_args()
    modes = ["bwrap", "plain"] if bwrap_works() else ["plain"]
    for family, probes in (("terminal", (True, False)), ("toolcall", (False,)), ("swe", (True, False))):
        if args.env and family not in args.env:
            continue
        for mode in modes:
            for probe in probes:
                print(json.dumps(asyncio.run(measure(family, mode, args.tasks, args.concurrency, probe))), flush=True)


if __name__ == "__main__":
    main()
