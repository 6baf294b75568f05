"""The gateway inside a slime run: where it listens, where its address is written, which
router is the policy, and that it starts when slime builds its RolloutManager.

``start_services`` runs for real (gateway and signal workers in a thread, in front of the
scripted engine over HTTP); slime itself is not needed: its parsed arguments are a
``Namespace`` with the fields slime fills in.
"""

from __future__ import annotations

import argparse
import json
import socket
import stat
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.slime import address, rollout
from slime_openclaw.slime.model_args import megatron_model_args
from slime_openclaw.slime.services import policy_model, resolve_endpoint, start_services
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slime_args(engine_url: str, run_dir: Path, **extra: Any) -> argparse.Namespace:
    host, port = engine_url.rsplit(":", 1)
    run_dir.mkdir(parents=True, exist_ok=True)
    return argparse.Namespace(sglang_router_ip=host.removeprefix("http://"), sglang_router_port=int(port),
                              hf_checkpoint=str(tiny_model_dir()), sglang_model_routers={},
                              custom_config_path=str(run_dir / "openclaw.yaml"), **extra)


def gateway_config(tmp_path: Path, **keys: Any) -> OpenClawConfig:
    return OpenClawConfig.from_mapping({"openclaw_method": "binary", "openclaw_gateway_model_name": "tiny",
                                        "openclaw_gateway_port": free_port(),
                                        "openclaw_journal_path": str(tmp_path / "j.sqlite"), **keys})


@pytest.fixture
async def engine() -> Any:
    from transformers import AutoTokenizer

    answer = AutoTokenizer.from_pretrained(tiny_model_dir()).encode(
        "Sure, here is a rather long answer.<|im_end|>", add_special_tokens=False)
    scripted = ScriptedEngine(lambda ids: answer)
    async with served(scripted) as url:
        yield scripted, url


async def test_address_file_names_the_gateway_and_training_limits_apply(engine: Any, tmp_path: Path) -> None:
    scripted, url = engine
    args = slime_args(url, tmp_path / "run", rollout_max_response_len=3, rollout_max_context_len=None)
    config = gateway_config(tmp_path)
    with SqliteJournal(config.journal.path) as journal:
        live = start_services(config, args, journal)
        try:
            record = json.loads((tmp_path / "run" / "gateway.json").read_text())
            async with openai.AsyncOpenAI(base_url=record["url"], api_key="x", max_retries=0) as api:
                out = await api.chat.completions.create(model=record["model"], max_tokens=100000,
                                                        messages=[{"role": "user", "content": "Hi"}])
        finally:
            live.close()
    assert record["url"] == live.url == f"http://127.0.0.1:{config.gateway.port}/v1"
    assert (record["host"], record["port"], record["api_key"]) == ("127.0.0.1", config.gateway.port, "none")
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 3
    assert scripted.requests[0].sampling.max_new_tokens == 3


async def test_node_bind_needs_a_key_and_the_file_holds_only_its_reference(
        engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="openclaw_gateway_host: node is not loopback"):
        gateway_config(tmp_path, openclaw_gateway_host="node")
    _, url = engine
    monkeypatch.setattr(address, "node_ip", lambda: "127.0.0.2")  # stands in for the node's IP (still local)
    monkeypatch.setenv("GW_KEY", "s3cret-key")
    config = gateway_config(tmp_path, openclaw_gateway_host="node", openclaw_gateway_api_key_env="GW_KEY")
    args = slime_args(url, tmp_path / "run")
    with SqliteJournal(config.journal.path) as journal:
        live = start_services(config, args, journal)
        try:
            path = tmp_path / "run" / "gateway.json"
            record = json.loads(path.read_text())
            async with openai.AsyncOpenAI(base_url=record["url"], api_key="s3cret-key", max_retries=0) as api:
                models = await api.models.list()
            async with openai.AsyncOpenAI(base_url=record["url"], api_key="wrong", max_retries=0) as api:
                with pytest.raises(openai.AuthenticationError):
                    await api.models.list()
        finally:
            live.close()
    assert record["url"] == f"http://127.0.0.2:{config.gateway.port}/v1" and record["api_key"] == "env:GW_KEY"
    assert "s3cret" not in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [m.id for m in models.data] == ["tiny"]


def test_an_inline_key_is_referenced_not_written(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, openclaw_gateway_host="0.0.0.0", openclaw_gateway_api_key="inline-key")
    record = address.address(config, "http://0.0.0.0:4321/v1")
    assert record["api_key"] == "config:openclaw_gateway_api_key" and "inline-key" not in json.dumps(record)
    assert record["host"] == address.node_ip() != "0.0.0.0" and record["port"] == 4321


def test_the_data_source_starts_the_runtime_when_slime_builds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []

    class Runtime:
        def close(self) -> None:
            started.append("closed")

    monkeypatch.setattr(rollout, "_start_runtime", lambda args: started.append(args) or Runtime())
    args = argparse.Namespace(rollout_batch_size=1, rollout_function_path=rollout.guards.PERSONAL_ROLLOUT)
    try:
        source = rollout.LiveDataSource(args)  # what RolloutManager.__init__ does via --data-source-path
        assert started == [args]
        assert rollout.runtime(args) is rollout.runtime(args) and started == [args]  # the rollout call reuses it
        source.save(3)
        source.load(3)
        assert len(source) == 0 and source.get_samples(4) == []
    finally:
        rollout.shutdown()
    assert started[-1] == "closed"
    rollout.LiveDataSource(argparse.Namespace())  # arguments of no run (slime's contract check): nothing starts
    assert started[-1] == "closed"
    with pytest.raises(ConfigError, match="has no prompts for --rollout-function-path slime.rollout"):
        rollout.LiveDataSource(argparse.Namespace(rollout_function_path="slime.rollout.sglang_rollout.generate_rollout"))


def test_the_rollout_function_refuses_args_none() -> None:
    with pytest.raises(ConfigError, match="args=None"):
        rollout.generate_rollout(None, 0, None)


def write_sglang(tmp_path: Path, models: list[dict[str, Any]]) -> str:
    path = tmp_path / "sglang.yaml"
    path.write_text(yaml.safe_dump({"sglang": models}))
    return str(path)


def test_policy_resolves_by_name_not_by_position(tmp_path: Path) -> None:
    judge = {"name": "judge", "model_path": "/models/judge", "update_weights": False}
    actor = {"name": "actor", "model_path": "/models/policy"}
    args = argparse.Namespace(sglang_config=write_sglang(tmp_path, [judge, actor]), hf_checkpoint="/models/policy",
                              sglang_router_ip="10.0.0.1", sglang_router_port=1,  # the first model's router
                              sglang_model_routers={"judge": ("10.0.0.1", 1), "actor": ("10.0.0.2", 2)})
    assert policy_model(args) == "actor" and resolve_endpoint("policy", args) == "http://10.0.0.2:2"
    args.sglang_config = write_sglang(tmp_path, [judge, {"name": "pol", "model_path": "/models/policy"}])
    assert policy_model(args) == "pol"  # slime's rule: update_weights unset, model_path the HF checkpoint
    args.sglang_config = write_sglang(tmp_path, [judge, {"name": "pol", "update_weights": True,
                                                         "server_groups": [{"model_path": "/x"}]}])
    assert policy_model(args) == "pol"
    args.sglang_config = write_sglang(tmp_path, [judge, {"name": "other", "model_path": "/models/other"}])
    with pytest.raises(ConfigError, match="cannot tell the policy among judge, other"):
        policy_model(args)
    assert policy_model(argparse.Namespace()) is None


def test_mistral_is_not_offered_automatic_flags() -> None:
    config = {"model_type": "mistral", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
              "intermediate_size": 128, "vocab_size": 100}
    with pytest.raises(ConfigError, match="supported: llama, qwen2, qwen3"):
        megatron_model_args(config)


def test_an_unwritable_run_directory_costs_the_file_not_the_gateway(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    args = argparse.Namespace(custom_config_path=str(blocked / "openclaw.yaml"))
    record = address.publish(gateway_config(tmp_path), "http://127.0.0.1:5555/v1", args)
    assert record["url"] == "http://127.0.0.1:5555/v1" and not (blocked / "gateway.json").exists()
    assert address.address_file(argparse.Namespace(custom_config_path=None)) is None  # no run directory: no file


def test_live_flags_only_with_the_live_rollout(tmp_path: Path) -> None:
    from slime_openclaw.slime.recipe import compose, load_recipe
    from tests.test_launch import QWEN3, hf_dir

    checkpoint = hf_dir(tmp_path / "hf", QWEN3)
    for name, live in (("combine", True), ("terminal", False)):
        command = compose(load_recipe(name), hf_checkpoint=checkpoint, run_dir=tmp_path / name,
                          train_script="train_async.py", model_args=[]).command
        pairs = {(command[i], command[i + 1]) for i in range(len(command) - 1)}
        assert (("--router-policy", "manual") in pairs) is live
        assert (("--data-source-path", "slime_openclaw.slime.rollout.LiveDataSource") in pairs) is live
