"""``agents harness mini-swe-agent``: the real, unmodified ``mini`` CLI on a generated swe task.

The gateway serves a scripted policy; the documented command prepares the task's
workspace (the base repository as a git checkout, no hidden tests), runs ``mini`` there
against the gateway with ``X-Session-Id`` on every request (litellm's ``extra_headers``),
grades its diff with the hidden tests in a clean copy and posts the outcome. Every request
must be served and recorded, the episode one session, and the outcome on that session:
1.0 for a policy that fixes the bug, and only the ``PASS_TO_PASS`` share for one that
rewrites the tests so they pass in its workspace.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from slime_openclaw.envs import builtin_tasks
from slime_openclaw.gateway import serve
from slime_openclaw.journal.sqlite import SqliteJournal
from tests.helpers_model import tiny_model_dir
from tests.scripted_engine import ScriptedEngine, served
from tests.test_live_serve import parse

if importlib.util.find_spec("minisweagent") is None:  # not imported here: importing it writes ~/.config
    pytest.skip("mini-swe-agent is not installed (setup.py's [test] extras have it)", allow_module_level=True)

pytestmark = pytest.mark.clients

TASK = builtin_tasks("swe", "eval")[0]  # discounted() adds the percentage instead of taking it off
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
CHEAT = ("printf 'def test_discount():\\n    pass\\n\\ndef test_full_discount():\\n    pass\\n' "
         "> tests/test_prices.py && echo EDITED")


def tool_call(command: str) -> str:
    return "<tool_call>\n" + json.dumps({"name": "bash", "arguments": {"command": command}}) + "\n</tool_call><|im_end|>"


def scripted_policy(edit: str) -> ScriptedEngine:
    """Run ``edit`` first; once its output (``EDITED``) is back, submit."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())

    def script(prompt_ids: tuple[int, ...]) -> list[int]:
        prompt = tokenizer.decode(list(prompt_ids))
        done = '"output": "EDITED\\n"' in prompt  # the edit's output came back as a tool result
        answer = "Submitting." + tool_call(SUBMIT) if done else "I will edit the code." + tool_call(edit)
        return list(tokenizer.encode(answer, add_special_tokens=False))
    return ScriptedEngine(script)


async def run_harness(engine: ScriptedEngine, tmp_path: Path) -> tuple[dict, list, object]:
    journal = tmp_path / "journal.sqlite"
    async with served(engine) as engine_url:
        args = parse("--engine-url", engine_url, "--tokenizer", str(tiny_model_dir()), "--served-model-name", "tiny",
                     "--port", "0", "--journal", str(journal), "--method", "none")
        async with serve.serving(args, engine_url, None) as base_url:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "slime_openclaw.cli", "agents", "harness", "mini-swe-agent",
                "--gateway", base_url, "--model", "tiny", "--env", "swe", "--split", "eval", "--task-index", "0",
                "--session-id", "mini-episode-1", "--step-limit", "6", "--workdir", str(tmp_path / "run"),
                "--summary-json", str(tmp_path / "summary.json"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(child.communicate(), 300)
    assert child.returncode == 0, out.decode(errors="replace")[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    with SqliteJournal(journal, create=False) as reader:
        turns = sorted(reader.iter_turns(), key=lambda r: r.turn.turn_index)
        outcome = reader.get_outcome(summary["session_id"])
    return summary, turns, outcome


def edit_command() -> str:
    fix = TASK["solution"][0]
    assert "(100 - percent)" in fix
    return fix + "\necho EDITED"


async def test_mini_swe_agent_fixes_a_generated_task_and_its_outcome_is_on_the_session(tmp_path: Path) -> None:
    engine = scripted_policy(edit_command())
    summary, turns, outcome = await run_harness(engine, tmp_path)
    assert summary["exit_status"] == "Submitted" and summary["harness_exit_code"] == 0, summary
    assert len(engine.requests) == 2 and len(turns) == 2, [r.turn.key for r in turns]
    assert {r.turn.session_id for r in turns} == {summary["session_id"]}
    assert [r.turn.turn_index for r in turns] == [0, 1]
    first = turns[0]
    assert first.turn.response_message["tool_calls"][0]["function"]["name"] == "bash"
    assert first.next_state is not None and "EDITED" in str(first.next_state.messages[0]["content"])
    assert TASK["issue"].splitlines()[0] in str(first.turn.messages)
    assert outcome is not None and outcome.score == 1.0 and outcome.passed is True
    assert {t["name"] for t in outcome.details["tests"]} == set(TASK["FAIL_TO_PASS"] + TASK["PASS_TO_PASS"])
    assert "(100 - percent)" in outcome.details["patch"]
    assert outcome.details["harness"]["name"] == "mini-swe-agent"
    assert outcome.details["harness"]["exit_status"] == "Submitted"
    assert (tmp_path / "run" / "workspace" / "shipping" / "prices.py").read_text().count("(100 - percent)") == 1


async def test_rewriting_the_tests_in_its_workspace_does_not_pass(tmp_path: Path) -> None:
    summary, turns, outcome = await run_harness(scripted_policy(CHEAT), tmp_path)
    assert summary["exit_status"] == "Submitted" and len(turns) == 2
    assert outcome is not None and outcome.passed is False
    assert outcome.score == pytest.approx(len(TASK["PASS_TO_PASS"]) / 3)
    assert "tests/test_prices.py" in outcome.details["dropped_paths"]
