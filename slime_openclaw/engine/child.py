"""The embedded engine as a child process whose life is tied to its parent's.

``EngineChild`` starts ``slime-openclaw engine`` on a loopback port and stops it. The child
must never outlive its parent (a ``kill -9`` of the gateway would otherwise leave it holding
its port and memory), so it is tied two ways, both set up by ``tie_to_parent`` in the child:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (through ctypes): the kernel signals the
  child the moment the parent thread that started it dies;
- everywhere, the child's stdin is a pipe whose other end only the parent holds: a thread
  in the child reads it, and end-of-file (the parent is gone, however it died) stops it.

The engine's bearer key reaches the child through its environment (``ENGINE_KEY_ENV``,
removed from it on start), never its command line, which any local user can read. What
restarts the child when it dies is gateway/supervisor.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from slime_openclaw.errors import EngineError

log = logging.getLogger(__name__)

ENGINE_KEY_ENV = "SLIME_OPENCLAW_ENGINE_KEY"
"""The embedded engine's bearer key, handed to the child in its environment."""
PARENT_ENV = "SLIME_OPENCLAW_PARENT_PID"
"""Set for a child that must exit with its parent (the pid it was started by)."""
_PR_SET_PDEATHSIG = 1


def tie_to_parent() -> None:
    """In the child: exit when the parent dies (``PARENT_ENV`` set), by signal or stdin EOF."""
    expected = os.environ.pop(PARENT_ENV, None)
    if expected is None:
        return
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != expected:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_exit_on_stdin_eof, name="parent-watch", daemon=True).start()


def _exit_on_stdin_eof() -> None:
    with contextlib.suppress(OSError, ValueError):
        while os.read(sys.stdin.fileno(), 4096):
            pass
    os.kill(os.getpid(), signal.SIGTERM)  # the engine's own SIGTERM handler shuts it down


def engine_key_from_env() -> str | None:
    """In the child: the key its parent passed (removed from the environment so nothing inherits it)."""
    return os.environ.pop(ENGINE_KEY_ENV, None) or None


class EngineChild:
    """``slime-openclaw engine`` on ``127.0.0.1``, started and stopped by this process."""

    def __init__(self, model: Path, max_running: int, *, api_key: str | None = None, port: int = 0) -> None:
        self.model = model
        self.max_running = max_running
        self.api_key = api_key
        self.port = port
        """0 until the first start picked a free port; restarts reuse it (the URL stays valid)."""
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The engine's base URL (after the first start)."""
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[str]:
        """Start the process (fast: call it from the thread that stays alive, see the module doc)."""
        command = [sys.executable, "-m", "slime_openclaw.cli", "engine", "--model", str(self.model),
                   "--host", "127.0.0.1", "--port", str(self.port), "--max-running", str(self.max_running)]
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        env.pop(ENGINE_KEY_ENV, None)
        if self.api_key:
            env[ENGINE_KEY_ENV] = self.api_key
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        return self.process

    def wait_listening(self) -> str:
        """Block until the spawned child says it listens; returns its URL (raises ``EngineError`` if it died)."""
        process = self.process
        assert process is not None and process.stdout is not None
        line = process.stdout.readline()  # "engine listening on http://127.0.0.1:PORT"
        if "listening on " not in line:
            code = process.wait(30)
            raise EngineError(f"embedded engine did not start (exit code {code})")
        self.port = int(line.rsplit(":", 1)[1])
        threading.Thread(target=_drain, args=(process.stdout,), name="engine-stdout", daemon=True).start()
        log.info("embedded engine started (pid %d, port %d)", process.pid, self.port)
        return self.url

    def start(self) -> str:
        """Spawn and wait until it listens; returns its URL."""
        self.spawn()
        try:
            return self.wait_listening()
        except BaseException:
            self.stop()
            raise

    def exit_code(self) -> int | None:
        """None while the child runs (or was never started), else how it ended."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; closes our end of its stdin."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> EngineChild:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(stream: object) -> None:
    with contextlib.suppress(OSError, ValueError):
        for _ in stream:  # type: ignore[attr-defined]
            pass


@contextlib.contextmanager
def embedded_engine(model: Path, max_running: int, *, api_key: str | None = None) -> Iterator[str]:
    """Start the embedded engine on a free loopback port; yields its URL; stops it on exit."""
    with EngineChild(model, max_running, api_key=api_key) as child:
        yield child.url
