"""The embedded engine child of a real ``serve --embedded``: tied to the gateway's life,
supervised, and closed to callers without its per-run key.

- ``kill -9`` of the gateway: the child exits within seconds and frees its port.
- ``kill -9`` of the child: the gateway answers 503 ``engine_restarting`` with ``Retry-After``
  and ``/healthz`` says ``restarting`` until the supervisor has a new child up; then it serves.
- The child refuses ``/generate``, ``/pause_generation`` and weight updates without the key;
  the key is in its (owner-only) environment, not on its command line; the gateway's own
  requests carry it; no client-facing message names the child's address.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slime_openclaw.engine.child import ENGINE_KEY_ENV
from tests.helpers_model import tiny_model_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]
GATEWAY_KEY = "gateway-key"
CHAT = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
STARTED = re.compile(r"embedded engine started \(pid (\d+), port (\d+)\)")


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> dict:
        return json.loads(self.text)


def http(method: str, url: str, body: dict | None = None, key: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return Reply(r.status, dict(r.headers), r.read().decode())
    except urllib.error.HTTPError as r:
        return Reply(r.code, dict(r.headers), r.read().decode())


@dataclass
class Serve:
    process: subprocess.Popen
    url: str
    log: list[str] = field(default_factory=list)

    def child(self, after: int = 0, deadline_s: float = 120.0) -> tuple[int, int]:
        """(pid, port) of the engine child the gateway reported starting after ``after`` earlier starts."""
        return wait_for(lambda: next(iter([(int(m[1]), int(m[2])) for m in
                                           (STARTED.search(line) for line in self.log) if m][after:]), None),
                        deadline_s, "engine child start")

    def post(self, path: str, body: dict, key: str | None = GATEWAY_KEY) -> Reply:
        return http("POST", f"{self.url}{path}", body, key)

    def health(self) -> Reply:
        return http("GET", f"{self.url.removesuffix('/v1')}/healthz")


def wait_for(probe: Callable[[], object], deadline_s: float, what: str) -> object:
    deadline = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def serve(tmp_path: Path) -> Iterator[Serve]:
    command = [sys.executable, "-m", "slime_openclaw.cli", "serve", "--embedded", "--port", "0",
               "--journal", str(tmp_path / "journal.sqlite"), "--model", str(tiny_model_dir()),
               "--served-model-name", "tiny", "--api-key", GATEWAY_KEY, "--log-level", "INFO"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        assert "listening on " in line, f"serve did not start (exit code {process.poll()})"
        assert "127.0.0.1:" not in line.split("listening on ", 1)[1].split(maxsplit=1)[1]  # no engine address
        running = Serve(process, line.split("listening on ", 1)[1].split()[0])
        threading.Thread(target=lambda: running.log.extend(process.stderr), daemon=True).start()  # type: ignore[arg-type]
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.wait(30)
        with suppress(ProcessLookupError):  # nothing of the group outlives the test
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def engine_key(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    [entry] = [e for e in environ if e.startswith(ENGINE_KEY_ENV.encode() + b"=")]
    return entry.split(b"=", 1)[1].decode()


def test_kill_9_of_the_gateway_takes_the_engine_child_with_it(tmp_path: Path) -> None:
    with serve(tmp_path) as gateway:
        pid, port = gateway.child()
        assert gateway.post("/chat/completions", CHAT).status_code == 200  # the gateway sends the engine's key

        key = engine_key(pid)
        assert key and key not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        engine = f"http://127.0.0.1:{port}"
        for path, body in [("/generate", {"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 1}}),
                           ("/pause_generation", {}), ("/update_weights_from_disk", {"model_path": "/nowhere"})]:
            assert http("POST", engine + path, body).status_code == 401
            assert http("POST", engine + path, body, key="wrong").status_code == 401
        assert http("GET", engine + "/health", key=key).status_code == 200

        os.kill(gateway.process.pid, signal.SIGKILL)
        gateway.process.wait(10)
        started = time.monotonic()
        wait_for(lambda: not alive(pid), 15.0, "the engine child to exit after kill -9 of the gateway")
        assert time.monotonic() - started < 15.0
        wait_for(lambda: not port_open(port), 5.0, "the engine port to close")


def test_a_dead_engine_child_is_restarted_and_serving_resumes(tmp_path: Path) -> None:
    with serve(tmp_path) as gateway:
        pid, port = gateway.child()
        assert gateway.post("/chat/completions", CHAT).status_code == 200
        os.kill(pid, signal.SIGKILL)

        def restarting() -> Reply | None:
            r = gateway.health()
            return r if r.json().get("engine_state") == "restarting" else None

        health = wait_for(restarting, 10.0, "/healthz to report the restart")
        assert isinstance(health, Reply) and health.status_code == 503
        refused = gateway.post("/chat/completions", CHAT)
        if refused.status_code == 503:  # still restarting (the usual case: a start takes seconds)
            assert refused.json()["error"]["code"] == "engine_restarting"
            assert int(refused.headers["Retry-After"]) >= 1
            assert str(port) not in refused.text
        else:
            assert refused.status_code == 200

        new_pid, new_port = gateway.child(after=1)
        assert new_pid != pid and new_port == port and not alive(pid)
        body = wait_for(lambda: gateway.health().json() if gateway.health().status_code == 200 else None,
                        60.0, "/healthz to be ok again")
        assert isinstance(body, dict) and body["engine_state"] == "running" and body["engine_restarts"] == 1
        answer = gateway.post("/chat/completions", CHAT)
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["role"] == "assistant"
    assert not alive(new_pid)


def test_the_stdin_fallback_stops_a_child_whose_parent_is_gone() -> None:
    """The portable half of the tie alone (no parent-death signal): EOF on stdin stops the child."""
    script = ("import threading, time\n"
              "from slime_openclaw.engine.child import _exit_on_stdin_eof\n"
              "threading.Thread(target=_exit_on_stdin_eof, daemon=True).start()\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert child.poll() is None
        assert child.stdin is not None
        child.stdin.close()  # what the parent's death does to the pipe
        assert child.wait(10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
