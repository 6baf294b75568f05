"""Task files: JSON lines, one object per task, handed to ``Environment.reset`` as read.

Blank lines are skipped. Anything else that is not a JSON object is an error naming the
file and line (``tasks.jsonl:3: ...``), raised as ``TaskError`` (a ``ConfigError``: the
CLI prints it as one line and exits 2). What a task must contain is the environment's
business; built-ins check their own keys in ``reset`` and raise ``TaskError`` too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from slime_openclaw.errors import ConfigError


class TaskError(ConfigError):
    """A task file or a task object is malformed."""


def iter_tasks(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the tasks of a JSON-lines file in order; ``TaskError`` with file:line on a bad line."""
    file = Path(path)
    try:
        handle = file.open(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(f"tasks file not found: {file}") from None
    except OSError as exc:
        raise TaskError(f"cannot read tasks file {file}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield _parse_line(line, f"{file}:{number}")


def read_tasks(path: str | Path) -> list[dict[str, Any]]:
    """All tasks of a JSON-lines file; a file without any task is an error."""
    tasks = list(iter_tasks(path))
    if not tasks:
        raise TaskError(f"{path}: no tasks (expected one JSON object per line)")
    return tasks


def write_tasks(path: str | Path, tasks: Iterable[dict[str, Any]]) -> int:
    """Write tasks as JSON lines (the shape ``read_tasks`` reads); returns how many."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for task in tasks:
            handle.write(json.dumps(task, ensure_ascii=False) + "\n")
            count += 1
    return count


def _parse_line(line: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise TaskError(f"{where}: a task must be a JSON object, got {type(value).__name__}")
    return value


def require(task: dict[str, Any], key: str, kind: type | tuple[type, ...], env: str) -> Any:
    """``task[key]`` checked to be of ``kind``; ``TaskError`` naming the task otherwise."""
    if key not in task:
        raise TaskError(f"{env} task {task.get('id', '?')!r}: missing key {key!r}")
    value = task[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        names = "/".join(k.__name__ for k in _as_tuple(kind))
        raise TaskError(f"{env} task {task.get('id', '?')!r}: {key!r} must be {names}, got {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
