"""The slime generate function's side of the environment pool, without slime: episodes leased
from the configured pool, an environment failure returned as an aborted, removed sample whose
turns the journal discards with the reason, the pool's figures on /metrics and in the rollout log."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from slime_openclaw.agents.driver import DriverSettings
from slime_openclaw.config import OpenClawConfig
from slime_openclaw.envs import EnvSpec
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.journal.memory import MemoryJournal
from slime_openclaw.slime import agent_generate, agent_metrics
from slime_openclaw.types import TurnState
from tests.gateway_fakes import reply_ids, running_gateway
from tests.scripted_engine import ScriptedEngine

PROBE = "slime_openclaw.envs.pool.probe.ProbeEnv"


def runtime(journal: MemoryJournal, env: EnvSpec, metrics: GatewayMetrics) -> agent_generate.AgentRuntime:
    config = OpenClawConfig.from_mapping({"openclaw_agent_method": "outcome", "openclaw_env_max_in_flight": 2})
    live = SimpleNamespace(service=SimpleNamespace(gateway_metrics=metrics))
    return agent_generate.AgentRuntime(config, live, journal, env, {})


async def test_an_environment_failure_is_an_aborted_removed_sample_never_trained() -> None:
    journal, metrics = MemoryJournal(), GatewayMetrics()
    rt = runtime(journal, EnvSpec(PROBE, {"fail_at": 1}), metrics)
    engine = ScriptedEngine(lambda prompt: reply_ids("step 0"))
    async with running_gateway(engine, journal=journal) as (api, _):
        settings = DriverSettings(base_url=str(api.base_url), model="tiny", api_key="unused", max_turns=4)
        episode = await agent_generate._play(rt, {"steps": 3}, settings, "ep-f", "0")
    assert episode.env_failed and "fails at step 1" in episode.error and journal.get_outcome("ep-f") is None
    sample = SimpleNamespace(index=0, group_index=0, metadata={"task": {"steps": 3}}, status=None, reward=None,
                             remove_sample=False)
    out = agent_generate._env_failed(rt, argparse.Namespace(), sample, episode, False, "ABORTED")
    assert out is sample and (sample.status, sample.remove_sample, sample.reward) == ("ABORTED", True, 0.0)
    assert sample.metadata[agent_generate.ENV_FAILURE_METADATA]["episode"] == "ep-f"
    assert agent_generate.task_of(sample) == {"steps": 3}  # a retry plays the same task
    for index in (0, 1):
        turn = journal.get(f"ep-f:{index}")
        assert turn.state is TurnState.DISCARDED and turn.discard_reason.startswith("environment failure")
    assert 'openclaw_env_pool_failed_total{pool="local"} 1' in metrics.render()
    extra: dict[str, float] = {}
    agent_generate._RUNTIME, saved = rt, agent_generate._RUNTIME
    try:
        assert agent_metrics.log_rollout_data(0, None, [sample], extra, 1.0) is False
    finally:
        agent_generate._RUNTIME = saved
    assert extra["openclaw/env_failed_episodes"] == 1.0 and extra["openclaw/env_pool_failed"] == 1.0
    assert extra["openclaw/env_pool_steps"] == 1.0 and extra["openclaw/env_pool_running"] == 0.0
