"""The agents' slime path with real slime ``Sample``s: one episode per sample through the gateway,
one Sample per step sharing ``rollout_id``, exact tokens and log-probs; (group, step) normalization."""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

import pytest

from slime_openclaw.engine.child import embedded_engine
from slime_openclaw.envs import EnvSpec
from slime_openclaw.local.agents.pretrain import FAST_AGENT_RECIPE, prepare_agent_policy

pytestmark = pytest.mark.slime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_generate_returns_one_sample_per_step_and_the_hook_normalizes(tmp_path: Path, cleanup_runtime: None) -> None:
    from slime.utils.types import Sample

    from slime_openclaw.slime import agent_generate
    from slime_openclaw.slime.agent_rewards import post_process_rewards

    policy = prepare_agent_policy(EnvSpec("toolcall"), recipe=FAST_AGENT_RECIPE, cache_root=tmp_path / "cache")
    task = {"id": "t1", "question": "What is 2 + 3?", "answer": "5", "solution_code": "print(2 + 3)"}
    with embedded_engine(policy, max_running=4) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        args = argparse.Namespace(
            hf_checkpoint=str(policy), sglang_router_ip=host, sglang_router_port=int(port), custom_config_path=None,
            openclaw_agent_env="toolcall", openclaw_agent_method="prm", openclaw_agent_max_turns=3,
            openclaw_agent_normalization="group_step", openclaw_journal_path=str(tmp_path / "j.sqlite"),
            openclaw_method="binary", openclaw_gateway_port=free_port(), advantage_estimator="grpo", reward_key=None)
        sources = [Sample(index=i, group_index=0, rollout_id=i, prompt="", metadata={"task": task}) for i in range(2)]
        outs = [asyncio.run(agent_generate.generate(args, s, {"max_new_tokens": 48, "temperature": 1.0}))
                for s in sources]
        journal = agent_generate.runtime(args).journal
        steps = []
        for source, out in zip(sources, outs, strict=True):
            assert isinstance(out, list) and out, "an episode gives at least its first step"
            assert {s.rollout_id for s in out} == {source.rollout_id} and {s.group_index for s in out} == {0}
            for s in out:
                meta = s.metadata[agent_generate.AGENT_METADATA]
                turn = journal.get(f"{meta['episode']}:{meta['step']}").turn
                assert s.tokens == list(turn.prompt_ids) + list(turn.response_ids)
                assert s.response_length == len(turn.response_ids) == len(s.loss_mask)
                assert s.rollout_log_probs == list(turn.response_log_probs)
                assert s.reward == pytest.approx(meta["raw_reward"])
                assert journal.get_outcome(meta["episode"]).score == meta["outcome"]
            steps += out
        raw, rewards = post_process_rewards(args, steps)
        assert raw == [s.reward for s in steps]
        firsts = [r for s, r in zip(steps, rewards, strict=True) if s.metadata["openclaw_agent"]["step"] == 0]
        assert len(firsts) == 2 and (sum(firsts) == pytest.approx(0.0, abs=1e-5))


def test_an_episode_whose_first_request_failed_is_a_removed_sample_the_reward_hook_takes(
        tmp_path: Path, cleanup_runtime: None) -> None:
    """Nothing listens on the router's port: the episode has no step, and its sample must
    still carry a reward (slime keeps aborted samples of a finished group in the batch and
    runs the reward hook over it) and be removed (its loss mask zeroed)."""
    from slime.utils.types import Sample

    from slime_openclaw.local.model.tiny_model import ensure_default_model
    from slime_openclaw.slime import agent_generate
    from slime_openclaw.slime.agent_rewards import post_process_rewards

    args = argparse.Namespace(
        hf_checkpoint=str(ensure_default_model()), sglang_router_ip="127.0.0.1", sglang_router_port=free_port(),
        custom_config_path=None, openclaw_agent_env="toolcall", openclaw_agent_method="outcome",
        openclaw_agent_max_turns=3, openclaw_agent_normalization="group_step",
        openclaw_journal_path=str(tmp_path / "j.sqlite"), openclaw_method="binary",
        openclaw_gateway_port=free_port(), advantage_estimator="grpo", reward_key=None)
    task = {"id": "t1", "question": "What is 2 + 3?", "answer": "5", "solution_code": "print(2 + 3)"}
    source = Sample(index=0, group_index=0, rollout_id=0, prompt="", metadata={"task": task})
    out = asyncio.run(agent_generate.generate(args, source, {"max_new_tokens": 16, "temperature": 1.0}))
    assert out == [source] and out[0] is source and source.status == Sample.Status.ABORTED
    assert source.remove_sample is True and source.reward == 0.0
    assert post_process_rewards(args, out) == ([0.0], [0.0])


def test_prompt_data_loads_with_slimes_own_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("ray") is None:  # slime.utils.data imports ray for its rollout helpers only
        monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    from slime.utils.data import Dataset

    from slime_openclaw.cli import main
    from slime_openclaw.envs import builtin_tasks
    from slime_openclaw.slime.agent_generate import task_of
    from slime_openclaw.slime.recipe import load_recipe

    flags = load_recipe("terminal")["slime"]
    out = tmp_path / "terminal-train.jsonl"
    assert main(["agents", "prompt-data", "--env", "terminal", "-o", str(out)]) == 0
    data = Dataset(str(out), tokenizer=None, processor=None, max_length=None, prompt_key=flags["input-key"],
                   metadata_key=flags["metadata-key"])
    tasks = builtin_tasks("terminal", "train")
    assert [task_of(s) for s in data.samples] == tasks
    assert [s.prompt for s in data.samples] == [t["instruction"] for t in tasks]
