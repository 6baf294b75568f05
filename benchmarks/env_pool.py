"""The environment pool on this machine: the Ray path against the in-process one, and a scale run.

1. ``--episodes`` short episodes (``--steps`` steps each) of the light probe environment
   (``slime_openclaw.envs.pool.probe.ProbeEnv``: no process, no file), ``--concurrency`` at a
   time, through the in-process pool and through the Ray pool on a local Ray (2 CPUs,
   127.0.0.1, started and shut down here): episodes/s, steps/s, p50/p99 step latency as the
   driver sees it, and the Ray path's overhead per step (its p50 and mean minus the local ones).
2. The scale run: ``--scale`` episodes at once, ``--waves`` times, of probe environments that
   sleep ``--sleep`` s per step instead of working (each holding 16 KiB), hosted
   ``--envs-per-actor`` per actor: the peak RSS of this driver and of the actors after each
   wave (memory stays bounded: the second wave ends where the first did), the peak of
   episodes in flight, and the steps counted three ways (the driver's, each environment's
   outcome, the actors' ledgers: none lost, none doubled).

    .venv/bin/python benchmarks/env_pool.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from typing import Any

from slime_openclaw.config_envpool import EnvPoolConfig
from slime_openclaw.envs import EnvSpec
from slime_openclaw.envs.pool import EnvPool, LocalEnvPool
from slime_openclaw.envs.pool.host import rss_bytes
from slime_openclaw.envs.pool.metrics import percentile

PROBE = "slime_openclaw.envs.pool.probe.ProbeEnv"
MIB = 1024 * 1024


async def episode(pool: EnvPool, index: int, steps: int, latencies: list[float]) -> dict[str, Any]:
    """One probe episode; its outcome details."""
    async with pool.lease() as env:
        await env.reset({"id": index, "steps": steps})
        for i in range(steps):
            started = time.perf_counter()
            await env.step({"role": "assistant", "content": f"step {i}"})
            latencies.append(time.perf_counter() - started)
        outcome = await env.outcome()
    return {**outcome.details, "passed": outcome.passed}


async def throughput(pool: EnvPool, episodes: int, steps: int, concurrency: int) -> dict[str, Any]:
    gate, latencies = asyncio.Semaphore(concurrency), []

    async def one(index: int) -> dict[str, Any]:
        async with gate:
            return await episode(pool, index, steps, latencies)

    await one(-1)  # warm: the first actor's start is not a step
    latencies.clear()
    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(episodes)))
    wall = time.perf_counter() - started
    return {"pool": pool.kind, "episodes": episodes, "passed": sum(r["passed"] for r in results),
            "episodes_per_s": round(episodes / wall, 1), "steps_per_s": round(len(latencies) / wall, 1),
            "step_p50_ms": round(percentile(latencies, 0.5) * 1e3, 3),
            "step_p99_ms": round(percentile(latencies, 0.99) * 1e3, 3),
            "step_mean_ms": round(sum(latencies) / len(latencies) * 1e3, 3), "actors": pool.metrics.actors}


async def scale(args: argparse.Namespace) -> dict[str, Any]:
    from slime_openclaw.envs.pool.ray_pool import RayEnvPool

    config = EnvPoolConfig(pool="ray", max_in_flight=args.scale, envs_per_actor=args.envs_per_actor,
                           cpus=0.001, memory_mb=0, ship_code=False, lease_ttl_s=30.0)
    pool = RayEnvPool(EnvSpec(PROBE, {"sleep_s": args.sleep, "payload_kb": 16}), config)
    waves, peak = [], 0
    async with pool:
        for wave in range(args.waves):
            latencies: list[float] = []
            runs = asyncio.gather(*(episode(pool, i, args.steps, latencies) for i in range(args.scale)))
            started, actor_rss = time.perf_counter(), 0
            while not runs.done():
                peak = max(peak, pool.metrics.running)
                stats = await pool.actor_stats()
                actor_rss = max(actor_rss, sum(s["rss_bytes"] for s in stats))
                await asyncio.sleep(0.25)
            results = await runs
            stats = await pool.actor_stats()
            waves.append({
                "wave": wave, "seconds": round(time.perf_counter() - started, 2),
                "driver_rss_mib": round(rss_bytes() / MIB, 1), "actors_rss_mib_peak": round(actor_rss / MIB, 1),
                "actors": len(stats), "episodes_passed": sum(r["passed"] for r in results),
                "steps_driver": len(latencies), "steps_env_outcomes": sum(r["steps_run"] for r in results),
                "step_p50_ms": round(percentile(latencies, 0.5) * 1e3, 1),
                "step_p99_ms": round(percentile(latencies, 0.99) * 1e3, 1)})
        ledgers = {"steps_run": sum(s["steps_run"] for s in stats),
                   "steps_replayed": sum(s["steps_replayed"] for s in stats)}
    expected = args.scale * args.steps * args.waves
    return {"scale": args.scale, "steps_expected": expected, "peak_in_flight": peak, "waves": waves,
            "actor_ledgers": ledgers, "lost_or_doubled": expected - ledgers["steps_run"],
            "failed": pool.metrics.failed, "reclaimed": pool.metrics.reclaimed}


async def run(args: argparse.Namespace) -> None:
    from slime_openclaw.envs.pool.ray_pool import RayEnvPool

    spec = EnvSpec(PROBE)
    async with LocalEnvPool(spec, max_in_flight=args.concurrency) as local:
        local_row = await throughput(local, args.episodes, args.steps, args.concurrency)
    print(json.dumps(local_row), flush=True)
    config = EnvPoolConfig(pool="ray", max_in_flight=args.concurrency, envs_per_actor=args.envs_per_ray_actor,
                           cpus=0.25, memory_mb=0, ship_code=False)
    async with RayEnvPool(spec, config) as remote:
        ray_row = await throughput(remote, args.episodes, args.steps, args.concurrency)
    print(json.dumps(ray_row), flush=True)
    print(json.dumps({"ray_overhead_per_step_ms": {
        "p50": round(ray_row["step_p50_ms"] - local_row["step_p50_ms"], 3),
        "mean": round(ray_row["step_mean_ms"] - local_row["step_mean_ms"], 3)},
        "throughput_ratio_ray_to_local": round(ray_row["episodes_per_s"] / local_row["episodes_per_s"], 3)}),
        flush=True)
    if args.scale:
        print(json.dumps(await scale(args)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--envs-per-ray-actor", type=int, default=4)
    parser.add_argument("--scale", type=int, default=1000, help="episodes at once in the scale run (0: skip it)")
    parser.add_argument("--waves", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each scale-run step sleeps")
    parser.add_argument("--envs-per-actor", type=int, default=250, help="environments per actor in the scale run")
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, _temp_dir=temp,
             object_store_memory=80 * MIB)
    try:
        asyncio.run(run(args))
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
