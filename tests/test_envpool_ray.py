"""The Ray environment pool on a local Ray this module starts (2 CPUs, 127.0.0.1, shut down
after): episodes on actors, a killed actor ends its episode as an environment failure and its
lease is reclaimed, a driver that stops heartbeating loses its lease, a retried step runs once,
a user's module shipped in the runtime env, a call past its time limit."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from slime_openclaw.agents.driver import DriverSettings, run_episode
from slime_openclaw.agents.stage import EpisodeSignals
from slime_openclaw.config_envpool import EnvPoolConfig
from slime_openclaw.envs import EnvironmentFailure, EnvSpec
from slime_openclaw.envs.pool import LeaseLost
from slime_openclaw.envs.pool.ray_pool import RayEnvPool
from slime_openclaw.errors import ConfigError
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.types import TurnState
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

PROBE = "slime_openclaw.envs.pool.probe.ProbeEnv"


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             _temp_dir=temp, object_store_memory=80 * 1024 * 1024)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def pool_of(name: str = PROBE, kwargs: dict[str, Any] | None = None, **config: Any) -> RayEnvPool:
    settings = {"pool": "ray", "cpus": 0.25, "memory_mb": 0, "max_in_flight": 4, "ship_code": False, **config}
    return RayEnvPool(EnvSpec(name, kwargs or {}), EnvPoolConfig(**settings))


async def wait_until(check, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not await check():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def play(env, steps: int = 3) -> dict:
    await env.reset({"id": "t", "steps": steps, "sleep_s": 0})
    for i in range(steps):
        await env.step({"role": "assistant", "content": f"step {i}"})
    return (await env.outcome()).details


async def test_episodes_run_on_actors_sharing_slots() -> None:
    async with pool_of(envs_per_actor=2) as pool:
        async def episode() -> dict:
            async with pool.lease() as env:
                return await play(env)

        results = await asyncio.gather(*(episode() for _ in range(6)))
        stats = await pool.actor_stats()
    assert all(r["steps_run"] == 3 and r["in_order"] for r in results)
    assert 1 <= len(stats) <= 2 and all(s["pid"] != os.getpid() for s in stats)
    assert sum(s["opened"] for s in stats) == 6 and sum(s["steps_run"] for s in stats) == 18
    assert (pool.metrics.leased, pool.metrics.failed, pool.metrics.running, pool.metrics.steps) == (6, 0, 0, 18)


async def test_a_retried_step_runs_once() -> None:
    async with pool_of(kwargs={"sleep_s": 0.2}) as pool, pool.lease() as env:
        await env.reset({"steps": 2})
        reply = {"role": "assistant", "content": "step 0"}
        first, again = await asyncio.gather(env.step(reply, key="same"), env.step(reply, key="same"))
        late = await env.step(reply, key="same")
        (stats,) = await pool.actor_stats()
        assert first == again == late and (stats["steps_run"], stats["steps_replayed"]) == (1, 2)


async def test_a_killed_actor_ends_its_episode_as_an_environment_failure_and_its_lease_is_reclaimed() -> None:
    journal = MemoryJournal()
    engine = ScriptedEngine(lambda prompt: reply_ids("step 0"))
    async with pool_of(kwargs={"sleep_s": 60.0}) as pool, \
            running_gateway(engine, journal=journal) as (api, _):
        settings = DriverSettings(base_url=str(api.base_url), model="tiny", api_key="unused", max_turns=3)

        async def episode() -> Any:
            async with pool.lease() as env:
                return await run_episode(env, {"steps": 2}, settings, episode_id="ep-k", group="g", api=api)

        running = asyncio.create_task(episode())

        async def stepping() -> bool:
            return any(s["steps_run"] == 1 for s in await pool.actor_stats())

        await wait_until(stepping)
        ray.kill(pool.slots[0].actor)
        record = await asyncio.wait_for(running, 30)  # never a hang
        assert record.env_failed and "ActorDiedError" in record.error and not record.outcome_recorded
        assert journal.get_outcome("ep-k") is None
        assert (pool.metrics.failed, pool.metrics.reclaimed, pool.metrics.running, pool.metrics.actors) == (1, 1, 0, 0)
        await EpisodeSignals(journal, None, "outcome").record_group([record])
        turn = journal.get("ep-k:0")
        assert turn.state is TurnState.DISCARDED and "environment failure" in turn.discard_reason
        async with pool.lease() as env:  # a new actor takes the next episode
            assert (await play(env, 1))["steps_run"] == 1


async def test_a_driver_that_stops_heartbeating_loses_its_lease() -> None:
    async with pool_of(lease_ttl_s=1.0) as pool, pool.lease() as env:
        await env.reset({})
        await asyncio.sleep(1.5)  # heartbeats keep it past its time to live
        await env.step({"role": "assistant", "content": "step 0"})
        pool.stop_heartbeats()

        async def reclaimed() -> bool:
            return any(s["reclaimed"] == 1 and s["leases"] == 0 for s in await pool.actor_stats())

        await wait_until(reclaimed)
        with pytest.raises(LeaseLost, match="reclaimed after missed heartbeats"):
            await env.step({"role": "assistant", "content": "step 1"})
        assert pool.metrics.failed == 1


async def test_a_user_module_ships_in_the_runtime_env() -> None:
    journal = MemoryJournal()
    engine = ScriptedEngine(lambda prompt: reply_ids('[[call add {"x": 2}]]') if "<tool>" not in
                            "".join(chr(t) for t in prompt) else reply_ids("done"))
    async with pool_of("toy_env.CounterEnv", ship_code=True) as pool, \
            running_gateway(engine, journal=journal) as (api, _), pool.lease() as env:
        settings = DriverSettings(base_url=str(api.base_url), model="tiny", api_key="unused", max_turns=4)
        record = await run_episode(env, {"target": 2}, settings, episode_id="ep-u", group="g", api=api)
    assert record.end_reason == "done" and record.outcome.passed and journal.get_outcome("ep-u").score == 1.0


async def test_a_call_past_its_time_limit_fails_the_episode_and_frees_the_slot() -> None:
    async with pool_of(kwargs={"sleep_s": 30.0}, call_timeout_s=1.0) as pool:
        async with pool.lease() as env:
            await env.reset({})
            with pytest.raises(EnvironmentFailure, match="call_timeout_s"):
                await env.step({"role": "assistant", "content": "step 0"})
        (stats,) = await pool.actor_stats()
        assert stats["leases"] == 0 and (pool.metrics.failed, pool.metrics.reclaimed) == (1, 1)


def test_a_custom_resource_no_node_offers_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="openclaw_gui"):
        pool_of("gui")
