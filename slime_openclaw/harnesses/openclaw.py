"""OpenClaw (npm ``openclaw``) as an unmodified general-agent harness: ``openclaw agent --local``.

One isolated installation per episode under the scratch directory (its own ``HOME``,
state directory and config file): the only model provider is the gateway
(``api: openai-completions``, ``headers: {X-Session-Id: <session>}`` so the episode stays
one session), the agent's workspace is the task's workspace (``skipBootstrap``: OpenClaw
writes none of its own files there), and OpenClaw's own tools, ``exec`` among them, act
in it. ``make openclaw`` installs the CLI at ``.cache/openclaw/bin/openclaw``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from slime_openclaw.envs.process import run_process
from slime_openclaw.harnesses.gateway import api_base
from slime_openclaw.harnesses.runs import HarnessRun, find_cli
from slime_openclaw.harnesses.workspace import Workspace

PROVIDER = "slime"


def openclaw_binary(explicit: str | None = None) -> str:
    """``explicit``, ``$OPENCLAW_BIN``, ``openclaw`` on ``PATH`` or ``.cache/openclaw/bin/openclaw`` here."""
    return find_cli("the OpenClaw CLI", explicit, [os.environ.get("OPENCLAW_BIN"), shutil.which("openclaw"),
                                                   str(Path(".cache/openclaw/bin/openclaw").resolve())],
                    "`make openclaw` installs it (Node 24 and openclaw from npm)")


def openclaw_config(gateway: str, model: str, session_id: str, workspace: Path, *, api_key: str,
                    context_window: int, max_tokens: int) -> dict[str, Any]:
    """An OpenClaw config whose only model is the gateway, sending the session id."""
    entry = {"id": model, "name": model, "reasoning": False, "input": ["text"],
             "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
             "contextWindow": context_window, "maxTokens": max_tokens}
    return {
        "agents": {"defaults": {"model": {"primary": f"{PROVIDER}/{model}"}, "workspace": str(workspace),
                                "skipBootstrap": True}},
        "models": {"mode": "merge", "providers": {PROVIDER: {
            "baseUrl": api_base(gateway), "apiKey": api_key or "sk-local", "api": "openai-completions",
            "timeoutSeconds": 600, "headers": {"X-Session-Id": session_id}, "models": [entry],
        }}},
    }


async def run_openclaw(workspace: Workspace, *, gateway: str, model: str, session_id: str, scratch: Path,
                       api_key: str = "", context_window: int = 65536, max_tokens: int = 1024,
                       timeout: float = 1800, binary: str | None = None) -> HarnessRun:
    """One ``openclaw agent --local`` turn with the task as its message; what it answered."""
    for sub in ("home", "state"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    config = scratch / "openclaw.json"
    config.write_text(json.dumps(openclaw_config(gateway, model, session_id, workspace.directory, api_key=api_key,
                                                 context_window=context_window, max_tokens=max_tokens), indent=2))
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
    env = keep | {"HOME": str(scratch / "home"), "OPENCLAW_STATE_DIR": str(scratch / "state"),
                  "OPENCLAW_CONFIG_PATH": str(config), "NO_COLOR": "1"}
    argv = [openclaw_binary(binary), "agent", "--local", "--session-id", session_id, "--message", workspace.prompt,
            "--json"]
    result = await run_process(argv, cwd=str(workspace.directory), env=env, timeout=timeout,
                               max_output=200000, flood_limit=64 << 20)
    return HarnessRun(result.exit_code, result.output[-4000:], _answer_facts(result.output))


def _answer_facts(output: str) -> dict[str, Any]:
    """The final text of OpenClaw's ``--json`` answer (the last JSON object it printed)."""
    start = output.rfind("\n{")
    for text in (output[start + 1:] if start >= 0 else "", output[output.find("{"):] if "{" in output else ""):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        meta = data.get("meta") or {} if isinstance(data, dict) else {}
        return {"final_text": str(meta.get("finalAssistantRawText", ""))[:2000]}
    return {"final_text": None}
