"""A task's workspace for a harness that works in its own directory, and its grading.

``prepare(env, task, directory)`` writes what the agent may see and returns a
``Workspace`` (the prompt to give the harness); ``grade(workspace)`` measures what the
agent left there exactly as an environment episode is measured:

- ``swe``: the base repository as a fresh git repository (``envs.swe.checkout``); the
  agent's whole diff against the base commit is graded by the hidden tests in a second,
  clean copy (``envs.swe.grade_patch``), so editing the tests in the workspace changes
  nothing;
- ``terminal``: the task's files (``envs.terminal.prepare_workspace``); the hidden checks
  run on a copy of the directory in a fresh sandbox (``envs.terminal.grade_workspace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slime_openclaw.envs.base import Outcome
from slime_openclaw.errors import ConfigError

ENVS = ("swe", "terminal")
"""Environments whose tasks a harness can work on in a directory of its own."""


@dataclass(frozen=True)
class Workspace:
    """A prepared task: where the agent works and what it is asked."""

    env: str
    task: dict[str, Any]
    directory: Path
    prompt: str
    base: str = ""
    """The base commit (swe): the agent's diff is taken against it."""


def prepare(env: str, task: dict[str, Any], directory: Path) -> Workspace:
    """Write the task's visible part into the empty ``directory``."""
    if env == "swe":
        from slime_openclaw.envs.swe import checkout
        from slime_openclaw.envs.swe_grading import spec_from_task

        prompt = spec_from_task(task).issue
        return Workspace(env, task, directory, prompt, base=checkout(task, directory))
    if env == "terminal":
        from slime_openclaw.envs.terminal import prepare_workspace

        return Workspace(env, task, directory, prepare_workspace(task, directory))
    raise ConfigError(f"--env {env!r}: a harness works on {' or '.join(ENVS)} tasks")


async def grade(workspace: Workspace, *, isolation: str = "auto") -> Outcome:
    """The outcome of what the agent left in the workspace (see the module doc)."""
    if workspace.env == "swe":
        from slime_openclaw.envs.swe import grade_patch, workspace_patch

        return await grade_patch(workspace.task, workspace_patch(workspace.directory, workspace.base),
                                 isolation=isolation)
    from slime_openclaw.envs.terminal import grade_workspace

    return await grade_workspace(workspace.task, workspace.directory, isolation=isolation)
