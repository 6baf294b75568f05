"""The in-process environment pool: leases, back-pressure, time limits, idempotent steps,
reclaim after missed heartbeats, environment failures, metrics, the config keys; no Ray."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.envs import EnvironmentFailure, EnvSpec
from slime_openclaw.envs.pool import LeaseLost, LocalEnvPool, open_pool
from slime_openclaw.envs.pool.ledger import StepLedger
from slime_openclaw.errors import ConfigError

PROBE = "slime_openclaw.envs.pool.probe.ProbeEnv"


async def play(env, steps: int = 3) -> dict:
    await env.reset({"id": "t", "steps": steps})
    for i in range(steps):
        step = await env.step({"role": "assistant", "content": f"step {i}"})
    assert step.done
    return (await env.outcome()).details


async def wait_until(condition, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def test_episodes_run_and_back_pressure_bounds_what_is_in_flight() -> None:
    pool = LocalEnvPool(EnvSpec(PROBE, {"sleep_s": 0.05}), max_in_flight=2)
    peak = 0

    async def episode() -> dict:
        nonlocal peak
        async with pool.lease() as env:
            peak = max(peak, pool.metrics.running)
            return await play(env)

    async with pool:
        runs = asyncio.gather(*(episode() for _ in range(6)))
        await wait_until(lambda: pool.metrics.queued == 4)
        results = await runs
    assert peak == 2 and all(r["steps_run"] == 3 and r["in_order"] for r in results)
    assert (pool.metrics.running_peak, pool.metrics.queued_peak) == (2, 4)
    rollout = pool.metrics.rollout(reset_peaks=True)
    assert (rollout["openclaw/env_pool_running_peak"], rollout["openclaw/env_pool_queued_peak"]) == (2, 4)
    assert (pool.metrics.running_peak, pool.metrics.queued_peak) == (0, 0)
    m = pool.metrics
    assert (m.running, m.queued, m.leased, m.failed, m.reclaimed, m.steps) == (0, 0, 6, 0, 0, 18)
    assert len(pool.host.book) == 0 and pool.host.steps_run == 18


async def test_a_retried_step_runs_once_and_returns_the_first_answer() -> None:
    async with LocalEnvPool(EnvSpec(PROBE, {"sleep_s": 0.05}), max_in_flight=1) as pool, pool.lease() as env:
        await env.reset({"steps": 3})
        reply = {"role": "assistant", "content": "step 0"}
        first, again = await asyncio.gather(env.step(reply, key="k0"), env.step(reply, key="k0"))
        third = await env.step(reply, key="k0")
        assert first == again == third and pool.host.steps_run == 1
        assert (await pool.host.stats())["steps_replayed"] == 2


async def test_the_ledger_answers_a_retry_of_a_failed_step_with_the_same_error() -> None:
    ledger, runs = StepLedger(), []

    async def boom() -> None:
        runs.append(1)
        raise ValueError("no")

    for _ in range(2):
        with pytest.raises(ValueError, match="no"):
            await ledger.run("k", boom)
    assert runs == [1] and (ledger.runs, ledger.replays) == (1, 1)


async def test_a_call_past_its_time_limit_ends_the_episode_as_an_environment_failure() -> None:
    pool = LocalEnvPool(EnvSpec(PROBE, {"sleep_s": 5.0}), max_in_flight=1, call_timeout_s=0.2)
    async with pool:
        async with pool.lease() as env:
            await env.reset({})
            with pytest.raises(EnvironmentFailure, match="call_timeout_s"):
                await env.step({"role": "assistant", "content": "step 0"})
            with pytest.raises(EnvironmentFailure):  # the lease stays failed
                await env.outcome()
        assert (pool.metrics.failed, pool.metrics.reclaimed, pool.metrics.running) == (1, 1, 0)
        assert len(pool.host.book) == 0


async def test_an_environment_that_raises_fails_its_episode_not_the_run() -> None:
    async with LocalEnvPool(EnvSpec(PROBE, {"fail_at": 1}), max_in_flight=1) as pool, pool.lease() as env:
        await env.reset({})
        await env.step({"role": "assistant", "content": "step 0"})
        with pytest.raises(EnvironmentFailure, match="RuntimeError: probe environment fails at step 1"):
            await env.step({"role": "assistant", "content": "step 1"})


async def test_a_driver_that_stops_heartbeating_loses_its_lease() -> None:
    # a TTL well above an event-loop stall on a loaded machine; heartbeats come every TTL / 4
    pool = LocalEnvPool(EnvSpec(PROBE), max_in_flight=2, lease_ttl_s=1.2)
    async with pool, pool.lease() as env:
        await env.reset({})
        await asyncio.sleep(2.0)  # heartbeats keep it past its TTL
        await env.step({"role": "assistant", "content": "step 0"})
        pool.stop_heartbeats()
        await wait_until(lambda: pool.host.book.reclaimed_total == 1)
        with pytest.raises(LeaseLost, match="reclaimed after missed heartbeats"):
            await env.step({"role": "assistant", "content": "step 1"})
        assert pool.metrics.failed == 1


async def test_metrics_render_and_rollout_figures() -> None:
    async with LocalEnvPool(EnvSpec(PROBE), max_in_flight=1) as pool:
        async with pool.lease() as env:
            await play(env, 2)
        text, rollout = pool.metrics.render(), pool.metrics.rollout()
    assert 'openclaw_env_pool_leased_total{pool="local"} 1' in text
    assert 'openclaw_env_pool_step_seconds_count{pool="local"} 2' in text
    assert 'openclaw_env_pool_step_seconds_bucket{pool="local",le="+Inf"} 2' in text
    assert rollout["openclaw/env_pool_steps"] == 2 and rollout["openclaw/env_pool_step_latency_p99_s"] > 0


def test_config_keys_and_their_errors() -> None:
    config = OpenClawConfig.from_mapping({"openclaw_env_pool": "ray", "openclaw_env_resources": "openclaw_gui=1",
                                          "openclaw_env_cpus": 0.5, "openclaw_env_max_in_flight": 8})
    assert config.env.pool == "ray" and config.env.resource_pairs() == {"openclaw_gui": 1.0}
    assert config.env.cpus == 0.5 and config.env.max_in_flight == 8
    for bad, match in (({"openclaw_env_pool": "k8s"}, "local or ray"),
                       ({"openclaw_env_resources": "gui"}, "name=amount"),
                       ({"openclaw_env_max_in_flight": 0}, ">= 1"),
                       ({"openclaw_env_call_timeout_s": 0}, "> 0")):
        with pytest.raises(ConfigError, match=match):
            OpenClawConfig.from_mapping(bad)


def test_the_local_pool_never_imports_ray() -> None:
    code = ("import asyncio, sys\n"
            "from slime_openclaw.envs import EnvSpec\n"
            "from slime_openclaw.envs.pool import open_pool\n"
            f"pool = open_pool(EnvSpec({PROBE!r}))\n"
            "async def main():\n"
            "    async with pool, pool.lease() as env:\n"
            "        await env.reset({})\n"
            "asyncio.run(main())\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert open_pool(EnvSpec(PROBE)).kind == "local"
