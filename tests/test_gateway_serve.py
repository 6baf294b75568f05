"""``slime-openclaw serve``: refuses unsafe binds, serves in front of an engine URL with the
tokenizer of a model directory, and in ``--embedded`` mode starts and stops its own engine."""

from __future__ import annotations

import argparse

import openai
import pytest

from slime_openclaw.config import GatewayConfig, OpenClawConfig
from slime_openclaw.engine.child import embedded_engine
from slime_openclaw.errors import ConfigError
from slime_openclaw.gateway import serve
from slime_openclaw.gateway.app import body_limit
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("argv,message", [
    (("--engine-url", "http://127.0.0.1:1", "--host", "0.0.0.0"), "without an API key"),
    (("--engine-url", "http://127.0.0.1:1", "--model", "/nonexistent/model"), "not a directory"),
])
def test_bad_configuration_is_a_config_error(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        serve.run(parse(*argv))


def test_gateway_settings_are_the_config_section_with_the_flags_on_top() -> None:
    section = OpenClawConfig.from_mapping({"openclaw_gateway_max_inflight": 7, "openclaw_gateway_idle_timeout_s": 3.0,
                                           "openclaw_gateway_allowed_hosts": ["a.lan"]}).gateway
    settings = serve.build_config(parse("--engine-url", "http://x", "--max-sessions", "9", "--allowed-host", "b.lan",
                                        "--body-timeout", "4"), "tiny", 4096, section)
    assert (settings.max_concurrency, settings.idle_timeout, settings.max_sessions) == (7, 3.0, 9)
    assert settings.allowed_hosts == ("b.lan",) and settings.body_timeout == 4.0
    assert settings.chat.max_context_tokens == 4096 and body_limit(settings) == (1 << 20) + 32 * 4096
    defaults = serve.build_config(parse("--engine-url", "http://x"), "tiny")
    assert (defaults.max_concurrency, defaults.max_sessions) == (GatewayConfig().max_inflight, 10_000)
    with pytest.raises(ConfigError, match="openclaw_gateway_idle_timeout_s"):
        serve.build_config(parse("--engine-url", "http://x", "--idle-timeout", "0"), "tiny")


def test_source_is_required() -> None:
    with pytest.raises(SystemExit):
        parse("--port", "1")


async def test_serving_in_front_of_an_engine_url() -> None:
    model = tiny_model_dir()
    from transformers import AutoTokenizer

    answer = AutoTokenizer.from_pretrained(model).encode("Bonjour!<|im_end|>", add_special_tokens=False)
    async with served(ScriptedEngine(lambda ids: answer)) as engine_url:
        args = parse("--engine-url", engine_url, "--tokenizer", str(model), "--served-model-name", "tiny-fr",
                     "--port", "0", "--api-key", "secret", "--journal", ":memory:")
        async with serve.serving(args, engine_url, None) as base, \
                openai.AsyncOpenAI(base_url=base, api_key="secret", max_retries=0) as api:
            out = await api.chat.completions.create(model="tiny-fr", messages=[{"role": "user", "content": "Salut"}])
            assert out.choices[0].message.content == "Bonjour!"
            assert [m.id for m in (await api.models.list()).data] == ["tiny-fr"]


@pytest.mark.slow
async def test_embedded_engine_child_serves_and_stops() -> None:
    model = tiny_model_dir()
    args = parse("--embedded", "--port", "0", "--journal", ":memory:")
    with embedded_engine(model, max_running=2) as engine_url:
        async with serve.serving(args, engine_url, model) as base, \
                openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as api:
            assert [m.id for m in (await api.models.list()).data] == [model.name]
            out = await api.chat.completions.create(model=model.name, max_tokens=3,
                                                    messages=[{"role": "user", "content": "hi"}])
            assert out.usage.completion_tokens <= 3
    import aiohttp

    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{engine_url}/health")
