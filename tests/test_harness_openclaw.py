"""``agents harness openclaw``: the real OpenClaw CLI on a generated terminal task, graded.

The gateway serves a scripted policy that answers OpenClaw's ~26k-token prompt with a call
of OpenClaw's own ``exec`` tool, then with a final answer once the tool's output is back.
The documented command prepares the task's workspace, runs ``openclaw agent --local`` there
(provider ``headers: {X-Session-Id}``), runs the task's hidden checks on a copy of the
workspace in a fresh sandbox and posts the outcome. Every request must be served and
recorded as one session holding the outcome; the command really ran in the workspace.

Needs the CLI from ``make openclaw`` (``make test`` runs it); skips saying so without it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from slime_openclaw.envs import builtin_tasks
from slime_openclaw.gateway import serve
from slime_openclaw.journal.sqlite import SqliteJournal
from tests.openclaw_harness import long_context_model, openclaw_or_skip
from tests.scripted_engine import ScriptedEngine, served
from tests.test_live_serve import parse

pytestmark = [pytest.mark.slow, pytest.mark.clients]

TASK = builtin_tasks("terminal", "eval")[0]  # write a word to answer.txt


def scripted_policy(model: Path, command: str) -> ScriptedEngine:
    """``exec(command)`` first; once a tool result with ``WROTE`` is in the prompt, a final answer."""
    tokenizer = AutoTokenizer.from_pretrained(model)

    def script(prompt_ids: tuple[int, ...]) -> list[int]:
        prompt = tokenizer.decode(list(prompt_ids))
        if "WROTE" in prompt.split("<tool_response>", 1)[-1] and "<tool_response>" in prompt:
            answer = "The file is written.<|im_end|>"
        else:
            call = json.dumps({"name": "exec", "arguments": {"command": command}})
            answer = f"I will write the file.<tool_call>\n{call}\n</tool_call><|im_end|>"
        return list(tokenizer.encode(answer, add_special_tokens=False))
    return ScriptedEngine(script)


async def test_openclaw_solves_a_terminal_task_and_its_outcome_is_on_the_session(tmp_path: Path) -> None:
    binary = openclaw_or_skip()
    model = long_context_model()
    command = TASK["solution"][0] + " && echo WROTE"
    engine = scripted_policy(model, command)
    journal = tmp_path / "journal.sqlite"
    async with served(engine) as engine_url:
        args = parse("--engine-url", engine_url, "--tokenizer", str(model), "--served-model-name", "tiny",
                     "--port", "0", "--journal", str(journal), "--method", "none")
        async with serve.serving(args, engine_url, None) as base_url:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "slime_openclaw.cli", "agents", "harness", "openclaw", "--gateway", base_url,
                "--model", "tiny", "--env", "terminal", "--split", "eval", "--task-index", "0",
                "--session-id", "openclaw-episode-1", "--max-tokens", "128", "--harness-bin", str(binary),
                "--workdir", str(tmp_path / "run"), "--summary-json", str(tmp_path / "summary.json"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(child.communicate(), 900)
    assert child.returncode == 0, out.decode(errors="replace")[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["harness_exit_code"] == 0, summary
    with SqliteJournal(journal, create=False) as reader:
        turns = sorted(reader.iter_turns(), key=lambda r: r.turn.turn_index)
        outcome = reader.get_outcome(summary["session_id"])
    assert len(engine.requests) == len(turns) == 2, [r.turn.key for r in turns]
    assert {r.turn.session_id for r in turns} == {summary["session_id"]}
    call = turns[0].turn.response_message["tool_calls"][0]["function"]
    assert call["name"] == "exec" and json.loads(call["arguments"])["command"] == command
    assert turns[0].next_state is not None and "WROTE" in json.dumps(turns[0].next_state.messages)
    assert TASK["instruction"] in json.dumps(turns[0].turn.messages)
    assert (tmp_path / "run" / "workspace" / "answer.txt").read_text().split() == TASK["solution"][0].split()[1:2]
    assert outcome is not None and outcome.score == 1.0 and outcome.passed is True
    assert [c["name"] for c in outcome.details["checks"]] == [c["name"] for c in TASK["checks"]]
    assert outcome.details["harness"]["name"] == "openclaw"
