"""LiteLLM's proxy as the peer path of benchmarks/gateway_overhead.py (``--peer litellm``).

The proxy (PyPI ``litellm[proxy]``) runs from a virtual environment of its own,
``.cache/litellm-proxy`` (``make bench-peer`` makes it): installed into the project's
environment, ``litellm[proxy]`` pins older litellm, huggingface-hub and rich than the project
uses, so it stays out of ``make test``'s environment. It serves one model, ``tiny``, routed to
the OpenAI-compatible face of the same scripted engine (overhead_paths/children.py), one
uvicorn worker, and logs every call to a SQLite file of its own through a LiteLLM custom
callback (its built-in store is Postgres, which this machine has not): the peer's
counterpart of the gateway's journal. LiteLLM logs after the answer left (its callbacks
run in the background), where the gateway commits before the final chunk.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".cache" / "litellm-proxy"
MASTER_KEY = f"sk-{secrets.token_hex(16)}"
"""The proxy's key (it refuses to start without one); the load generator sends it."""

CALLBACK = '''"""Logs every LiteLLM proxy call to a SQLite file (written by benchmarks/overhead_paths/peer.py)."""
import json
import os
import sqlite3

from litellm.integrations.custom_logger import CustomLogger


class SqliteLog(CustomLogger):
    def __init__(self):
        super().__init__()
        self.db = sqlite3.connect(os.environ["PEER_LOG_DB"], isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS calls (id TEXT, model TEXT, messages TEXT, response TEXT, "
                        "started REAL, ended REAL)")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        response = response_obj.model_dump_json() if hasattr(response_obj, "model_dump_json") else str(response_obj)
        self.db.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)", (
            kwargs.get("litellm_call_id"), kwargs.get("model"), json.dumps(kwargs.get("messages"), default=str),
            response, start_time.timestamp(), end_time.timestamp()))


handler = SqliteLog()
'''


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_litellm(venv: Path, engine_url: str, workdir: Path, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start the proxy in front of ``engine_url``'s OpenAI face; (process, base URL) once it answers."""
    python = python_of(venv)
    if not python.exists():
        raise SystemExit(f"--peer litellm needs LiteLLM's proxy in {venv}: run `make bench-peer` "
                         f"(python3 -m venv {venv} && {venv}/bin/pip install 'litellm[proxy]')")
    (workdir / "peer_log.py").write_text(CALLBACK)
    (workdir / "litellm.yaml").write_text(
        "model_list:\n  - model_name: tiny\n    litellm_params:\n      model: openai/tiny\n"
        f"      api_base: {engine_url}/v1\n      api_key: none\n"
        "litellm_settings:\n  callbacks: peer_log.handler\n  drop_params: true\n")
    port = _free_port()
    env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "PEER_LOG_DB": str(workdir / "peer_log.sqlite"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_LOG": "ERROR", "PYTHONPATH": str(workdir)}
    with open(workdir / "litellm.log", "wb") as log:  # the child keeps its own descriptor
        child = subprocess.Popen([str(python), "-m", "litellm.proxy.proxy_cli", "--config",
                                  str(workdir / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(port),
                                  "--num_workers", "1"], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"LiteLLM's proxy exited ({child.returncode}); see {workdir / 'litellm.log'}:\n"
                             + (workdir / "litellm.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2) as answer:
                if answer.status == 200:
                    return child, url
        except OSError:
            time.sleep(0.5)
    child.kill()
    raise SystemExit(f"LiteLLM's proxy did not answer within {timeout:.0f}s")


def calls_logged(workdir: Path) -> int:
    """Calls the proxy's callback logged so far."""
    path = workdir / "peer_log.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


if __name__ == "__main__":  # a smoke check: python benchmarks/overhead_paths/peer.py ENGINE_URL
    proc, base = start_litellm(DEFAULT_VENV, sys.argv[1], Path(sys.argv[2]))
    print(base)
    proc.terminate()
