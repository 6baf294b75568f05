"""Running one command with a deadline, bounded output and no survivors.

``run_process`` starts a program in a new session (its own process group), captures
stdout and stderr merged, keeps the head and the tail of the output up to a limit with a
marker in between, and kills the whole process group when the deadline passes, when the
output passes a hard limit (a flood), and in any case once the program exits, so a
background job cannot outlive its command. It knows nothing about isolation: the caller
(``sandbox``) builds the argv, environment and resource limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_POLL = 0.05


@dataclass(frozen=True)
class RunResult:
    """What one command did."""

    output: str
    """stdout and stderr merged, decoded as UTF-8 (invalid bytes replaced), truncated with a marker."""
    exit_code: int | None
    """Exit status (negative: killed by that signal); None when it was killed for time or output."""
    timed_out: bool = False
    """It ran past its deadline and its process group was killed."""
    truncated: bool = False
    """Part of the output was dropped (the marker says how many bytes)."""
    flooded: bool = False
    """It wrote more than the hard output limit and was killed."""
    seconds: float = 0.0
    """Wall-clock duration."""


def bounded_text(fd: int, limit: int) -> tuple[str, int]:
    """The first and last ``limit // 2`` bytes of file ``fd`` with a marker; returns (text, dropped)."""
    size = os.fstat(fd).st_size
    head_limit = limit - limit // 2
    if size <= limit:
        return os.pread(fd, size, 0).decode("utf-8", errors="replace"), 0
    head = os.pread(fd, head_limit, 0).decode("utf-8", errors="replace")
    tail_start = max(head_limit, size - limit // 2)
    tail = os.pread(fd, size - tail_start, tail_start).decode("utf-8", errors="replace")
    dropped = size - head_limit - (size - tail_start)
    return f"{head}\n[... {dropped} bytes of output truncated ...]\n{tail}", dropped


@dataclass(frozen=True)
class ResourceLimits:
    """rlimits applied to the started program (inherited by everything it starts)."""

    memory_bytes: int | None = None
    """RLIMIT_AS: address space per process."""
    file_bytes: int | None = None
    """RLIMIT_FSIZE: largest file a process may write."""
    cpu_seconds: int | None = None
    """RLIMIT_CPU: CPU time per process."""
    processes: int | None = None
    """RLIMIT_NPROC: processes of the running user (set only when that user is ours alone)."""

    def apply(self) -> None:
        """Set the limits in the current process (called in the child before exec)."""
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        for which, value in (
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_FSIZE, self.file_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NPROC, self.processes),
        ):
            if value is not None:
                resource.setrlimit(which, (value, value))


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    timeout: float,
    max_output: int,
    flood_limit: int,
    stdin: bytes | None = None,
    limits: ResourceLimits | None = None,
    popen_kwargs: Mapping[str, Any] | None = None,
    after_exit: Callable[[], None] | None = None,
) -> RunResult:
    """Run ``argv`` to completion or to its deadline; never leaves its process group alive.

    Output goes to an unlinked temporary file (no pipe a background job could hold open;
    nothing on disk a sandboxed program could find). ``after_exit`` runs once the group is
    killed (the sandbox uses it to hunt processes that left the group with ``setsid``).
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as inp:
        if stdin is not None:
            inp.write(stdin)
            inp.seek(0)
        starting = asyncio.ensure_future(asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=inp if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limits.apply if limits is not None else None,
            **dict(popen_kwargs or {}),
        ))
        try:
            proc = await asyncio.shield(starting)
        except asyncio.CancelledError:  # cancelled while starting: it may run already, so end it
            with contextlib.suppress(Exception):
                late = await starting
                _kill_group(late.pid)
                if after_exit is not None:
                    after_exit()
                await _reap(asyncio.ensure_future(late.wait()))
            raise
        waiter = asyncio.ensure_future(proc.wait())
        try:
            timed_out, flooded = await _watch(waiter, out.fileno(), started + timeout, flood_limit)
        finally:
            _kill_group(proc.pid)
            if after_exit is not None:
                after_exit()
            await _reap(waiter)
        output, dropped = bounded_text(out.fileno(), max_output)
    if timed_out:
        output += f"\n[timed out after {timeout:g} s; the command and its process group were killed]"
    if flooded:
        output += f"\n[more than {flood_limit} bytes of output; the command was killed]"
    return RunResult(
        output=output,
        exit_code=None if timed_out or flooded else proc.returncode,
        timed_out=timed_out,
        truncated=dropped > 0,
        flooded=flooded,
        seconds=time.monotonic() - started,
    )


async def _watch(waiter: asyncio.Future, fd: int, deadline: float, flood_limit: int) -> tuple[bool, bool]:
    """Wait for exit until the deadline, checking the output size; returns (timed_out, flooded)."""
    loop = asyncio.get_running_loop()
    while not waiter.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True, False
        await asyncio.wait({waiter}, timeout=min(_POLL, remaining))
        if not waiter.done() and os.fstat(fd).st_size > flood_limit:
            return False, True
    return False, False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _reap(waiter: asyncio.Future) -> None:
    """Collect the killed process (SIGKILL cannot be ignored; the bound is a safety net)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiter), timeout=10.0)
    if not waiter.done():
        waiter.cancel()
