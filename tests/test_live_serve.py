"""``slime-openclaw serve --config/--method`` and the slime-side ``start_services``.

A bad ``--config`` is one line on stderr and exit code 2 (a real subprocess, before any
engine starts); ``--method none`` records only; a method from ``--config`` or ``--method``
runs the signal workers on the journal, which defaults to the user data directory; inside
slime's rollout process the live service runs in a background thread on the rollout's journal.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import yaml

from slime_openclaw.cli import main
from slime_openclaw.config import OpenClawConfig
from slime_openclaw.gateway import serve
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.slime.services import start_services
from slime_openclaw.types import TurnState
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served


def test_unknown_config_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("openclaw_jugde_votes: 5\n")
    done = subprocess.run([sys.executable, "-m", "slime_openclaw.cli", "serve", "--embedded", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("slime-openclaw serve: unknown config key(s): openclaw_jugde_votes "
                                  "(did you mean openclaw_judge_votes?)")


@pytest.mark.parametrize("content,fragment", [
    ("openclaw_method: ppo\n", "openclaw_method: must be one of"),
    ("openclaw_judge_mode: llm\n", "needs at least one judge"),
    ("- not a mapping\n", "top level must be a mapping"),
])
def test_invalid_config_values_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            content: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    assert main(["serve", "--engine-url", "http://127.0.0.1:1", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
async def engine_url() -> AsyncIterator[str]:
    from transformers import AutoTokenizer

    answer = AutoTokenizer.from_pretrained(tiny_model_dir()).encode("Sure.<|im_end|>", add_special_tokens=False)
    async with served(ScriptedEngine(lambda ids: answer)) as url:
        yield url


async def two_turns(base: str) -> None:
    """A session: a question, then "Thanks!" (its next state, rated +1 by the rule judge)."""
    async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as api:
        history = [{"role": "user", "content": "Hi"}]
        out = await api.chat.completions.create(model="tiny", messages=history)
        history += [{"role": "assistant", "content": out.choices[0].message.content},
                    {"role": "user", "content": "Thanks!"}]
        await api.chat.completions.create(model="tiny", messages=history)


async def turn_state(path: Path, key: str, want: TurnState, timeout_s: float = 10.0) -> TurnState:
    """The turn's state once it is ``want`` (or whatever it is when ``timeout_s`` ran out)."""
    with SqliteJournal(path, create=False) as journal:
        for _ in range(int(timeout_s / 0.05)):
            record = journal.get(key)
            if record is not None and record.state is want:
                break
            await asyncio.sleep(0.05)
        record = journal.get(key)
        assert record is not None
        return record.state


async def test_method_none_records_only_in_the_default_journal(
        engine_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    args = parse("--engine-url", engine_url, "--tokenizer", str(tiny_model_dir()), "--served-model-name", "tiny",
                 "--port", "0", "--method", "none")
    async with serve.serving(args, engine_url, None) as base:
        await two_turns(base)
        await asyncio.sleep(0.5)  # a worker would have judged it by now
    path = tmp_path / "data" / "slime-openclaw" / "journal.sqlite"
    with SqliteJournal(path, create=False) as journal:
        states = [r.state for r in journal.iter_turns()]
        assert states == [TurnState.OBSERVED, TurnState.SERVED]
        assert journal.stats().samples_by_state["ready"] == 0


@pytest.mark.parametrize("flag", ["config", "method"])
async def test_a_method_runs_the_signal_workers(engine_url: str, tmp_path: Path, flag: str) -> None:
    journal = tmp_path / "j.sqlite"
    config = tmp_path / "openclaw.yaml"
    config.write_text(yaml.safe_dump({"openclaw_method": "binary" if flag == "config" else "opd"}))
    extra = ("--config", str(config)) if flag == "config" else ("--config", str(config), "--method", "binary")
    args = parse("--engine-url", engine_url, "--tokenizer", str(tiny_model_dir()), "--served-model-name", "tiny",
                 "--port", "0", "--journal", str(journal), *extra)
    async with serve.serving(args, engine_url, None) as base:
        await two_turns(base)
        assert await turn_state(journal, next(iter(_keys(journal))), TurnState.READY) is TurnState.READY
    with SqliteJournal(journal, create=False) as store:
        (sample,) = store.drain(10)
        assert (sample.method.value, sample.reward, sample.teacher_log_probs) == ("binary", 1.0, None)


def _keys(path: Path) -> list[str]:
    with SqliteJournal(path, create=False) as journal:
        return [r.turn.key for r in journal.iter_turns()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_start_services_runs_the_live_service_in_a_thread(engine_url: str, tmp_path: Path) -> None:
    host, port = engine_url.rsplit(":", 1)
    args = argparse.Namespace(sglang_router_ip=host.removeprefix("http://"), sglang_router_port=int(port),
                              hf_checkpoint=str(tiny_model_dir()), sglang_model_routers={})
    config = OpenClawConfig.from_mapping({"openclaw_method": "binary", "openclaw_gateway_model_name": "tiny",
                                          "openclaw_gateway_port": free_port(),
                                          "openclaw_journal_path": str(tmp_path / "j.sqlite")})
    with SqliteJournal(config.journal.path) as journal:
        live = start_services(config, args, journal)
        try:
            assert live.url == f"http://127.0.0.1:{config.gateway.port}/v1"
            await two_turns(live.url)
            for _ in range(200):
                if journal.stats().samples_by_state["ready"] == 1:
                    break
                await asyncio.sleep(0.05)
            metrics = live.metrics()
            assert metrics["openclaw/samples_ready"] == 1.0 and metrics["openclaw/signals_ready"] == 1.0
            assert metrics["openclaw/gateway_turns_recorded"] == 2.0
        finally:
            live.close()
        assert live.metrics() == {}
        assert journal.stats().turns_by_state["ready"] == 1  # the caller's journal is still open
        with pytest.raises(openai.APIConnectionError):
            await two_turns(live.url)
