"""``slime-openclaw engine`` as a real child process, and its refusals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_model import tiny_model_path  # noqa: F401  (pytest fixture)

from slime_openclaw import cli
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import GenerateRequest, SamplingParams
from slime_openclaw.types import FinishReason


@pytest.mark.slow
async def test_engine_command_serves_and_stops_on_sigterm(tiny_model_path: Path) -> None:  # noqa: F811
    command = [sys.executable, "-m", "slime_openclaw.cli", "engine", "--model", str(tiny_model_path), "--port", "0"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("engine listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        async with EngineClient(url) as client:
            assert await client.health()
            sampling = SamplingParams(temperature=0.0, max_new_tokens=3, ignore_eos=True)
            out = await client.generate(GenerateRequest(input_ids=(1, 2, 3), sampling=sampling))
        assert len(out.output_ids) == 3 and out.finish_reason is FinishReason.LENGTH
        child.send_signal(signal.SIGTERM)
        assert child.wait(15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--host", "0.0.0.0"], "without --api-key"), (["--max-running", "0"], "at least 1")],
)
def test_engine_command_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cli.main(["engine", "--model", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_engine_command_reports_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["engine", "--model", str(tmp_path / "nowhere")]) == 2
    assert "no config.json" in capsys.readouterr().err
