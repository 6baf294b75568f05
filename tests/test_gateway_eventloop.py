"""gateway/eventloop.py: ``serve --event-loop``: uvloop when installed, asyncio's loop otherwise,
and the whole serving path (gateway, engine client, journal) on uvloop."""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp
import openai
import pytest

from slime_openclaw.errors import ConfigError
from slime_openclaw.gateway import eventloop, serve
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # ``import uvloop`` now raises ImportError


def test_auto_falls_back_to_asyncio_and_uvloop_is_then_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    assert eventloop.loop_factory("auto") is None and eventloop.loop_name("auto") == "asyncio"

    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(loop_type(), loop="auto").startswith("asyncio")
    with pytest.raises(ConfigError, match="slime-openclaw\\[fast\\]"):
        eventloop.run(loop_type(), loop="uvloop")
    with pytest.raises(ConfigError, match="one of auto, uvloop, asyncio"):
        eventloop.loop_factory("trio")


def test_uvloop_is_taken_when_installed() -> None:
    pytest.importorskip("uvloop")

    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.loop_name("auto") == "uvloop"
    assert eventloop.run(loop_type(), loop="auto").startswith("uvloop")
    assert eventloop.run(loop_type(), loop="asyncio").startswith("asyncio")


def test_serve_refuses_uvloop_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--engine-url", "http://127.0.0.1:1", "--event-loop", "uvloop"])
    with pytest.raises(ConfigError, match="uvloop"):
        serve.run(args)


def test_the_gateway_serves_and_records_on_uvloop() -> None:
    """Streamed and whole answers through the real app, EngineClient and a SQLite journal, all on uvloop."""
    pytest.importorskip("uvloop")
    from transformers import AutoTokenizer

    model = tiny_model_dir()
    answer = AutoTokenizer.from_pretrained(model).encode("Bonjour!<|im_end|>", add_special_tokens=False)

    async def main() -> tuple[str, str, str]:
        async with served(ScriptedEngine(lambda ids: answer, chunk_size=1)) as engine_url:
            parser = argparse.ArgumentParser()
            serve.add_arguments(parser)
            args = parser.parse_args(["--engine-url", engine_url, "--tokenizer", str(model), "--port", "0",
                                      "--served-model-name", "tiny", "--journal", ":memory:"])
            async with serve.serving(args, engine_url, None) as base, \
                    openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as api:
                messages = [{"role": "user", "content": "Salut"}]
                whole = await api.chat.completions.create(model="tiny", messages=messages)
                stream = await api.chat.completions.create(model="tiny", messages=messages, stream=True)
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                async with aiohttp.ClientSession() as http, \
                        http.get(f"{base.removesuffix('/v1')}/metrics") as response:
                    metrics = await response.text()
            return whole.choices[0].message.content or "", text, metrics

    whole, streamed, metrics = eventloop.run(main(), loop="uvloop")
    assert whole == streamed == "Bonjour!"
    assert "openclaw_gateway_turns_recorded_total 2" in metrics
