"""The real mini-swe-agent (PyPI, its ``mini`` CLI via litellm) against the gateway: one session.

mini-swe-agent's default configuration (``mini.yaml``: a ``bash`` tool, the local
environment in a scratch workspace) runs unmodified against ``serve`` in front of a scripted
policy that first answers without a tool call (mini-swe-agent drops that reply from its
history and appends a format-error message), then creates the file the task asks for, then
submits. Every request must be served and recorded, and the three turns must be one session:
the format error is turn 0's next state (its reply dropped), the tool result turn 1's.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from slime_openclaw.gateway import serve
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.types import FinishReason, NextStateKind
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served
from tests.test_live_serve import parse

if importlib.util.find_spec("minisweagent") is None:  # not imported here: importing it writes ~/.config
    pytest.skip("mini-swe-agent is not installed (setup.py's [test] extras have it)", allow_module_level=True)

pytestmark = pytest.mark.clients

TASK = "Create a file hello.txt containing the word hello."
MAKE_FILE = "echo hello > hello.txt && cat hello.txt"
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


def tool_call(command: str) -> str:
    return '<tool_call>\n' + json.dumps({"name": "bash", "arguments": {"command": command}}) + '\n</tool_call><|im_end|>'


def scripted_policy(tokenizer: object) -> ScriptedEngine:
    """No tool call at first; after the format error, create the file; after its output, submit."""
    encode = tokenizer.encode  # type: ignore[attr-defined]
    decode = tokenizer.decode  # type: ignore[attr-defined]

    def script(prompt_ids: tuple[int, ...]) -> list[int]:
        prompt = decode(list(prompt_ids))
        if '"output": "hello\\n"' in prompt:
            answer = "Done." + tool_call(SUBMIT)
        elif "Tool call error" in prompt or "No tool calls found" in prompt:
            answer = "I will create the file." + tool_call(MAKE_FILE)
        else:
            answer = "Let me think about this first.<|im_end|>"
        return list(encode(answer, add_special_tokens=False))
    return ScriptedEngine(script)


def mini_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "MSWEA_GLOBAL_CONFIG_DIR": str(home), "MSWEA_CONFIGURED": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MSWEA_COST_TRACKING": "ignore_errors", "NO_COLOR": "1"}


async def run_mini(base_url: str, workspace: Path, home: Path, trajectory: Path) -> tuple[int, str]:
    command = [str(Path(sys.executable).with_name("mini")), "-m", "openai/tiny", "-t", TASK, "-y",
               "--exit-immediately", "-c", "mini.yaml", "-c", f"model.model_kwargs.api_base={base_url}",
               "-c", "model.model_kwargs.api_key=sk-local", "-c", "agent.step_limit=6", "-o", str(trajectory)]
    child = await asyncio.create_subprocess_exec(*command, cwd=workspace, env=mini_env(home),
                                                 stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(child.communicate(), 180)
    return child.returncode or 0, out.decode(errors="replace")


async def test_mini_swe_agent_runs_through_the_gateway_as_one_session(tmp_path: Path) -> None:
    engine = scripted_policy(AutoTokenizer.from_pretrained(tiny_model_dir()))
    journal = tmp_path / "journal.sqlite"
    workspace, home = tmp_path / "workspace", tmp_path / "home"
    workspace.mkdir()
    home.mkdir()
    async with served(engine) as engine_url:
        args = parse("--engine-url", engine_url, "--tokenizer", str(tiny_model_dir()), "--served-model-name", "tiny",
                     "--port", "0", "--journal", str(journal), "--method", "none")
        async with serve.serving(args, engine_url, None) as base_url:
            code, output = await run_mini(base_url, workspace, home, tmp_path / "trajectory.json")
    assert code == 0, output[-3000:]
    assert (workspace / "hello.txt").read_text() == "hello\n"
    trajectory = json.loads((tmp_path / "trajectory.json").read_text())
    assert trajectory["info"]["exit_status"] == "Submitted", trajectory["info"]
    assert len(engine.requests) == 3
    with SqliteJournal(journal, create=False) as reader:
        turns = sorted(reader.iter_turns(), key=lambda r: (r.turn.session_id, r.turn.turn_index))
    assert len(turns) == 3 and len({r.turn.session_id for r in turns}) == 1, [r.turn.key for r in turns]
    assert [r.turn.turn_index for r in turns] == [0, 1, 2]
    dropped, made_file, _ = turns
    assert dropped.next_state is not None and dropped.next_state.kind is NextStateKind.USER
    assert dropped.next_state.reply_dropped and dropped.next_state.continuous
    assert "No tool calls found" in str(dropped.next_state.messages[0]["content"])
    assert dropped.turn.response_message["content"] == "Let me think about this first."
    assert made_file.turn.response_message["tool_calls"][0]["function"]["name"] == "bash"
    assert made_file.next_state is not None and made_file.next_state.kind is NextStateKind.TOOL
    assert '"output": "hello\\n"' in str(made_file.next_state.messages[0]["content"])
    assert not made_file.next_state.reply_dropped and made_file.turn.finish_reason is FinishReason.TOOL_CALLS
