"""A workspace directory and an isolated way to run shell commands in it.

Two isolation modes, reported as ``Sandbox.mode``:

- ``bwrap`` (bubblewrap): a new user, PID, network, IPC and UTS namespace; the process
  runs as ``nobody`` with no capabilities and sees only read-only system directories
  (``/usr``, ``/etc`` essentials), a private ``/tmp``, and the workspace at
  ``/workspace``; no network; the whole namespace dies with the command.
- ``plain``: a subprocess in the workspace with rlimits, a cleared environment and
  ``HOME`` set to the workspace; when we run as root it drops to ``nobody`` (so it cannot
  read our files or write the system). Escaped processes are hunted by a marker in their
  environment, which a determined program can remove: this mode is weaker, and says so.

Both apply the same rlimits (memory, file size, CPU) and per-command deadlines, and no
process survives its command (``process.run_process``). Commands are ``bash -c`` runs in
a fresh shell each: state carries over through files only. Nothing outside the sandbox
is visible to it unless bound for one run (``run(binds=...)``), which is how hidden
checks reach the workspace after the episode. Reused by every process-based
environment (terminal, tool-call, later SWE).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slime_openclaw.envs.process import ResourceLimits, RunResult, run_process
from slime_openclaw.errors import ConfigError

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd",
    "/etc/group", "/etc/nsswitch.conf", "/etc/localtime", "/etc/mime.types", "/etc/bash.bashrc",
    "/etc/profile", "/etc/inputrc", "/etc/python3.11", "/etc/ssl",
)
_MARKER = "SLIME_OPENCLAW_SANDBOX"
ISOLATION_MODES = ("auto", "bwrap", "plain")


@dataclass(frozen=True)
class Limits:
    """Per-command limits of a sandbox."""

    timeout: float = 10.0
    """Seconds a command may run before its process group is killed."""
    max_output: int = 4000
    """Bytes of output kept (head and tail, with a marker in between)."""
    flood_limit: int = 4 * 1024 * 1024
    """Bytes of output after which the command is killed."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS)."""
    file_mb: int = 64
    """Largest file a process may write (RLIMIT_FSIZE)."""
    processes: int = 256
    """Processes at once (RLIMIT_NPROC; only where the sandbox user is ours alone)."""


@functools.lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Whether bubblewrap is installed and can create its namespaces here."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    argv = [exe, *_bwrap_base(), "--", "/bin/true"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def resolve_isolation(isolation: str) -> str:
    """``auto`` -> ``bwrap`` where it works, else ``plain``; a forced unavailable mode is an error."""
    if isolation not in ISOLATION_MODES:
        raise ConfigError(f"isolation {isolation!r}: expected one of {', '.join(ISOLATION_MODES)}")
    if isolation == "auto":
        return "bwrap" if bwrap_works() else "plain"
    if isolation == "bwrap" and not bwrap_works():
        raise ConfigError("isolation 'bwrap': bubblewrap is missing or cannot create namespaces here")
    return isolation


def _bwrap_base() -> list[str]:
    args = ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return args


class Sandbox:
    """One workspace and the commands run in it; ``close()`` removes everything."""

    def __init__(self, *, isolation: str = "auto", limits: Limits | None = None):
        self.mode = resolve_isolation(isolation)
        self.limits = limits or Limits()
        self._marker = secrets.token_hex(8)
        self._drop_to = _nobody() if self.mode == "plain" and os.geteuid() == 0 else None
        self._root = Path(tempfile.mkdtemp(prefix="slime-openclaw-"))
        self._root.chmod(0o711)
        self.host_workspace = self._root / "workspace"
        self._host_tmp = self._root / "tmp"
        for path in (self.host_workspace, self._host_tmp):
            path.mkdir(mode=0o700)
            self._own(path)
        self.closed = False

    @property
    def workdir(self) -> str:
        """The workspace path as commands see it."""
        return "/workspace" if self.mode == "bwrap" else str(self.host_workspace)

    def describe(self) -> dict[str, Any]:
        """What isolation is in force (for ``Outcome.details`` and summaries)."""
        lim = self.limits
        return {"isolation": self.mode, "timeout_s": lim.timeout, "memory_mb": lim.memory_mb,
                "max_output": lim.max_output, "user": "nobody" if self.mode == "bwrap" or self._drop_to else "self"}

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        stdin: bytes | str | None = None,
        binds: Mapping[str, Path] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """``bash -c command`` in the workspace; ``binds`` maps an env var to a host dir shown read-only."""
        if self.closed:
            raise RuntimeError("sandbox is closed")
        data = stdin.encode() if isinstance(stdin, str) else stdin
        argv, variables = self._command(command, binds or {}, env or {})
        lim = self.limits
        rlimits = ResourceLimits(
            memory_bytes=lim.memory_mb << 20, file_bytes=lim.file_mb << 20,
            cpu_seconds=int(timeout or lim.timeout) + 2,
            processes=lim.processes if self._drop_to else None,
        )
        popen: dict[str, Any] = {}
        if self._drop_to is not None:
            popen = {"user": self._drop_to[0], "group": self._drop_to[1], "extra_groups": []}
        return await run_process(
            argv, cwd=str(self.host_workspace), env=variables, timeout=timeout or lim.timeout,
            max_output=lim.max_output, flood_limit=lim.flood_limit, stdin=data, limits=rlimits,
            popen_kwargs=popen, after_exit=self._hunt if self.mode == "plain" else None,
        )

    async def write_file(self, path: str, content: str) -> RunResult:
        """Write ``content`` to ``path`` (relative to the workspace) as the sandbox user."""
        quoted = shlex.quote(path)
        return await self.run(f'mkdir -p -- "$(dirname -- {quoted})" && cat > {quoted}',
                              stdin=content)

    def clone(self, limits: Limits | None = None) -> Sandbox:
        """A new sandbox (same mode; these limits, else the same) holding a copy of this workspace."""
        twin = Sandbox(isolation=self.mode, limits=limits or self.limits)
        shutil.rmtree(twin.host_workspace)
        shutil.copytree(self.host_workspace, twin.host_workspace, symlinks=True)
        if twin._drop_to is not None:
            for path in [twin.host_workspace, *twin.host_workspace.rglob("*")]:
                os.lchown(path, *twin._drop_to)
        return twin

    def make_private_dir(self, files: Mapping[str, str]) -> Path:
        """A fresh host dir outside the workspace holding ``files`` (readable by the sandbox user)."""
        where = self._root / f"private-{secrets.token_hex(8)}"
        where.mkdir(mode=0o755)
        for rel, text in files.items():
            target = (where / rel).resolve()
            if where.resolve() not in target.parents:
                raise ValueError(f"file path {rel!r} leaves its directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            target.chmod(0o755 if text.startswith("#!") else 0o644)
        for path in [where, *where.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        return where

    async def close(self) -> None:
        """Kill what might remain and remove the workspace; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.mode == "plain":
            self._hunt()
        shutil.rmtree(self._root, ignore_errors=True)

    def _command(self, command: str, binds: Mapping[str, Path], env: Mapping[str, str]) -> tuple[list[str], dict]:
        home = self.workdir
        variables = {"PATH": _PATH, "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb", **env}
        if self.mode == "bwrap":
            exe = shutil.which("bwrap") or "bwrap"
            argv = [exe, *_bwrap_base(), "--bind", str(self.host_workspace), "/workspace", "--chdir", "/workspace",
                    "--clearenv"]
            for name, host in binds.items():
                inside = f"/run/{name.lower()}"
                argv += ["--ro-bind", str(host), inside, "--setenv", name, inside]
            for key, value in variables.items():
                argv += ["--setenv", key, value]
            return [*argv, "--", "/bin/bash", "--noprofile", "--norc", "-c", command], {}
        variables.update({name: str(host) for name, host in binds.items()})
        variables.update({"TMPDIR": str(self._host_tmp), _MARKER: self._marker})
        return ["/bin/bash", "--noprofile", "--norc", "-c", command], variables

    def _own(self, path: Path) -> None:
        if self._drop_to is not None:
            os.chown(path, *self._drop_to)

    def _hunt(self) -> None:
        """Kill processes carrying this sandbox's marker or working inside it (plain mode)."""
        needle = f"{_MARKER}={self._marker}".encode()
        root = str(self._root)
        inside = root + os.sep
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                ours = needle in (entry / "environ").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
                ours = ours or cwd == root or cwd.startswith(inside)
            except OSError:
                continue
            if ours:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)


def _nobody() -> tuple[int, int]:
    try:
        record = pwd.getpwnam("nobody")
        return record.pw_uid, record.pw_gid
    except KeyError:
        return 65534, 65534
