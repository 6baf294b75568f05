"""mini-swe-agent (PyPI ``mini-swe-agent``, its ``mini`` CLI) as an unmodified harness.

mini's own ``mini.yaml`` (its ``bash`` tool, the local environment) plus one generated
config file: the model is ``openai/<served model>`` through litellm at the gateway
(``model_kwargs.api_base``, ``api_key``, and ``extra_headers: {X-Session-Id: <session>}``,
which litellm sends on every request, so the gateway keeps the episode one session), the
local environment's ``cwd`` is the task's workspace, and ``agent.step_limit`` bounds the
episode. mini runs its commands in the workspace itself (its local environment is not
sandboxed); grading happens afterwards in a sandbox (``workspace.grade``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from slime_openclaw.envs.process import run_process
from slime_openclaw.harnesses.gateway import api_base
from slime_openclaw.harnesses.runs import HarnessRun, find_cli
from slime_openclaw.harnesses.workspace import Workspace


def mini_binary(explicit: str | None = None) -> str:
    """``explicit``, else the ``mini`` next to this Python, else ``mini`` on ``PATH``."""
    return find_cli("mini-swe-agent's `mini`", explicit, [str(Path(sys.executable).with_name("mini")), shutil.which("mini")],
                    "pip install mini-swe-agent (setup.py's [test] extra has it)")


def mini_config(gateway: str, model: str, session_id: str, workspace: Path, *, api_key: str,
                step_limit: int, command_timeout: int) -> dict[str, Any]:
    """The config merged over ``mini.yaml``: the gateway as the model, the workspace as cwd."""
    return {
        "model": {"model_name": f"openai/{model}", "cost_tracking": "ignore_errors",
                  "model_kwargs": {"api_base": api_base(gateway), "api_key": api_key or "sk-local",
                                   "extra_headers": {"X-Session-Id": session_id}}},
        "environment": {"cwd": str(workspace), "timeout": command_timeout},
        "agent": {"step_limit": step_limit, "cost_limit": 0},
    }


async def run_mini(workspace: Workspace, *, gateway: str, model: str, session_id: str, scratch: Path,
                   api_key: str = "", step_limit: int = 20, command_timeout: int = 60, timeout: float = 1800,
                   binary: str | None = None) -> HarnessRun:
    """Run ``mini`` once on the prepared workspace; its exit status and trajectory facts."""
    scratch.mkdir(parents=True, exist_ok=True)
    config = scratch / "harness.yaml"
    config.write_text(json.dumps(mini_config(gateway, model, session_id, workspace.directory, api_key=api_key,
                                             step_limit=step_limit, command_timeout=command_timeout)))
    trajectory = scratch / "trajectory.json"
    argv = [mini_binary(binary), "-m", f"openai/{model}", "-t", workspace.prompt, "-y", "--exit-immediately",
            "-c", "mini.yaml", "-c", str(config), "-o", str(trajectory)]
    env = {**os.environ, "MSWEA_GLOBAL_CONFIG_DIR": str(scratch / "mini-config"), "MSWEA_CONFIGURED": "true",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MSWEA_COST_TRACKING": "ignore_errors", "NO_COLOR": "1"}
    result = await run_process(argv, cwd=str(workspace.directory), env=env, timeout=timeout,
                               max_output=20000, flood_limit=64 << 20)
    return HarnessRun(result.exit_code, result.output[-4000:], _trajectory_facts(trajectory))


def _trajectory_facts(path: Path) -> dict[str, Any]:
    """mini's exit status and how many model calls it made, from its trajectory file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"exit_status": "no_trajectory"}
    info = data.get("info") or {}
    stats = info.get("model_stats") or {}
    return {"exit_status": info.get("exit_status"), "api_calls": stats.get("api_calls"),
            "messages": len(data.get("messages") or [])}
