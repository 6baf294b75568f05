"""``--prompt-data`` for the agent recipes: tasks as the JSON lines slime's ``Dataset`` reads.

One line per task, ``{"prompt": <its instruction>, "metadata": <the task object>}``: slime
reads the prompt under ``--input-key prompt`` and hands the ``--metadata-key metadata``
object to every ``Sample`` unchanged, where ``agent_generate.task_of`` takes it as the task
(recipes/terminal.yaml and toolcall.yaml set both keys). The prompt is only what slime logs
and length-filters; the episode's real opening is the environment's ``reset``. Written by
``slime-openclaw agents prompt-data`` (local/agents/command.py); slime itself is not needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slime_openclaw.errors import ConfigError
from slime_openclaw.files import write_text_atomically

INPUT_KEY = "prompt"
METADATA_KEY = "metadata"
PROMPT_FIELDS = ("instruction", "question", "prompt", "problem_statement", "issue")
"""Task fields tried in order for the prompt text (the built-ins use the first two)."""


def prompt_text(task: dict[str, Any]) -> str:
    """The task's instruction for slime's prompt column, else the task as JSON."""
    for key in PROMPT_FIELDS:
        value = task.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return json.dumps(task, ensure_ascii=False, sort_keys=True)


def prompt_row(task: dict[str, Any]) -> dict[str, Any]:
    """One line of ``--prompt-data``."""
    return {INPUT_KEY: prompt_text(task), METADATA_KEY: task}


def write_prompt_data(path: str | Path, tasks: Iterable[dict[str, Any]]) -> int:
    """Write the rows for ``tasks`` to ``path`` (``.jsonl``, as slime requires), atomically; returns the count."""
    target = Path(path)
    if target.suffix != ".jsonl":
        raise ConfigError(f"{target}: slime reads --prompt-data only from .jsonl (or .parquet) files; name it *.jsonl")
    if not target.parent.is_dir():
        raise ConfigError(f"{target}: the directory {target.parent} does not exist")
    rows = [prompt_row(task) for task in tasks]
    if not rows:
        raise ConfigError("no tasks to write (the split is empty)")
    write_text_atomically(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return len(rows)
