"""Test support for the stock-client end-to-end tests: the real OpenClaw CLI and ``serve --embedded``.

``openclaw_or_skip()`` finds the CLI that ``make openclaw`` installs (Node 24 and OpenClaw from
the npm registry into ``.cache/openclaw``; ``$OPENCLAW_BIN`` overrides) and skips, saying why,
only when it is not there. ``OpenClawHome`` is one isolated OpenClaw installation (its own
HOME, state directory and config file) whose only model provider is the gateway under test.
``serve_embedded`` runs ``slime-openclaw serve --embedded`` in its own process group on a free
port and always stops it. ``long_context_model()`` is the tiny model with a context long
enough for OpenClaw's ~26k-token prompt (same weights: positions are RoPE).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slime_openclaw.local.model.tiny_model import TinyModelSpec, ensure_default_model

REPO = Path(__file__).resolve().parents[1]
OPENCLAW_BIN = Path(os.environ.get("OPENCLAW_BIN") or REPO / ".cache" / "openclaw" / "bin" / "openclaw")
LONG_CONTEXT = 65536
"""Context of the long tiny model: OpenClaw's prompt is ~26k tokens with its tokenizer."""
PROVIDER = "slime"
MODEL = "tiny"


def openclaw_or_skip() -> Path:
    """The OpenClaw CLI, or skip the test with the reason it is missing."""
    if not os.access(OPENCLAW_BIN, os.X_OK):
        pytest.skip(f"OpenClaw CLI not installed at {OPENCLAW_BIN}: `make openclaw` installs it "
                    "(needs npm and the npm registry); `make test` tries and warns when it cannot")
    return OPENCLAW_BIN


def long_context_model() -> Path:
    """The cached tiny model (seed 0) declaring a ``LONG_CONTEXT``-token context."""
    return ensure_default_model(spec=TinyModelSpec(max_position_embeddings=LONG_CONTEXT))


@contextmanager
def serve_embedded(journal: Path, *extra: str, model: Path | None = None) -> Iterator[str]:
    """``serve --embedded`` on ``model`` (the long tiny model by default); yields the base URL (``.../v1``)."""
    command = [sys.executable, "-m", "slime_openclaw.cli", "serve", "--embedded", "--journal", str(journal),
               "--port", "0", "--model", str(model or long_context_model()), "--served-model-name", MODEL,
               "--log-level", "WARNING", *extra]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert "listening on " in line, f"serve did not start (exit code {child.poll()})"
        url = line.split("listening on ", 1)[1].split()[0].rstrip("/")
        yield url if url.endswith("/v1") else url + "/v1"
    finally:
        stop_group(child)


def stop_group(child: subprocess.Popen[str], grace_s: float = 30.0) -> None:
    """SIGTERM the child's process group (the gateway and its engine), SIGKILL what is left after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            child.wait(wait_s)
            if sig is signal.SIGTERM:
                with suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)  # the engine child, if it outlived the gateway
                return


def provider_config(base_url: str, *, workspace: Path, max_tokens: int, prompt_cache_key: bool) -> dict[str, Any]:
    """An OpenClaw config whose default (and only) model is the gateway, as README shows it."""
    model: dict[str, Any] = {
        "id": MODEL, "name": "slime-openclaw tiny", "reasoning": False, "input": ["text"],
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
        "contextWindow": LONG_CONTEXT, "maxTokens": max_tokens,
    }
    if prompt_cache_key:
        model["compat"] = {"supportsPromptCacheKey": True}
    return {
        "agents": {"defaults": {"model": {"primary": f"{PROVIDER}/{MODEL}"}, "workspace": str(workspace)}},
        "models": {"mode": "merge", "providers": {PROVIDER: {
            "baseUrl": base_url, "apiKey": "sk-local", "api": "openai-completions", "timeoutSeconds": 600,
            "models": [model],
        }}},
    }


@dataclass(frozen=True)
class OpenClawHome:
    """One isolated OpenClaw: its own HOME, state directory and config file under ``root``."""

    root: Path
    binary: Path

    def configure(self, config: dict[str, Any]) -> None:
        for sub in ("home", "state", "workspace"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "openclaw.json").write_text(json.dumps(config, indent=2))

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
        return keep | {"HOME": str(self.root / "home"), "OPENCLAW_STATE_DIR": str(self.root / "state"),
                       "OPENCLAW_CONFIG_PATH": str(self.root / "openclaw.json"), "NO_COLOR": "1"}

    def run_agent(self, session_id: str, message: str, *, timeout_s: float = 420) -> subprocess.CompletedProcess[str]:
        """``openclaw agent --local --session-id ID --message TEXT --json``, whatever its exit code."""
        return subprocess.run(
            [str(self.binary), "agent", "--local", "--session-id", session_id, "--message", message, "--json"],
            capture_output=True, text=True, env=self.env(), cwd=self.root / "workspace", timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    def agent(self, session_id: str, message: str, *, timeout_s: float = 420) -> dict[str, Any]:
        """One turn that must succeed; its ``--json`` result."""
        done = self.run_agent(session_id, message, timeout_s=timeout_s)
        assert done.returncode == 0, f"openclaw agent exited {done.returncode}: {why_failed(done.stderr)}"
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def why_failed(stderr: str) -> str:
    """The lines of OpenClaw's log that say why a turn failed (the provider's status and error)."""
    telling = [line for line in stderr.splitlines() if any(m in line for m in ("Reason:", "rawError=", "status="))]
    return "\n".join(telling) or stderr[-2000:]


def final_text(result: dict[str, Any]) -> str:
    """The assistant text OpenClaw got back for a turn (from ``--json``'s meta)."""
    return str(result["meta"].get("finalAssistantRawText", ""))
