"""Grading a ``swe`` episode: the hidden tests, run in a second, clean copy of the base.

A task becomes a ``SweSpec``: the base repository as a tar archive, the hidden tests
(files written over the tree, or a SWE-bench ``test_patch`` applied to it), the
``FAIL_TO_PASS`` and ``PASS_TO_PASS`` node ids and the paths the agent may not change.
Grading takes the agent's diff (``git diff`` against the base commit, made in a copy of
its workspace), drops the parts that touch protected paths (the hidden tests' files,
``conftest.py``, pytest configuration, modules that would shadow pytest), applies the
rest with ``git apply`` to a fresh sandbox holding the base, puts the hidden tests over
it, and runs ``python3 -m pytest -rA`` on the hidden tests' files there. A test counts as
passing when pytest reports it PASSED or XFAIL; one that is missing counts as failing.

pytest reaches the sandbox as a read-only directory on ``PYTHONPATH`` (``pytest_files``:
pytest and its runtime requirements, copied from the installed distributions), so the
same ``python3 -m pytest`` works for the agent and for the grader in both isolation modes.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import Requirement

from slime_openclaw.envs.sandbox import Limits, Sandbox
from slime_openclaw.envs.tasks import TaskError

PROTECTED_NAMES = frozenset({"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml",
                             "sitecustomize.py", "usercustomize.py"})
"""File names whose edits by the agent never reach the grader (they configure or hook pytest)."""
PROTECTED_TOP = frozenset({"pytest.py", "_pytest", "pluggy", "py.py", "iniconfig", "packaging", "pygments"})
"""Top-level names that would shadow the grader's pytest."""
GIT = "git -c safe.directory='*' -c core.quotePath=false -c user.name=swe -c user.email=swe@localhost"
DIFF_SCRIPT = (
    'idx="$(mktemp)" && export GIT_INDEX_FILE="$idx" && {git} read-tree {base} && {git} add -A . '
    "&& {git} diff --cached --binary --no-renames --no-color --no-ext-diff {base}"
)
_STATUS = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED) (\S.*)$")
_OUTPUT_CAP = 8 << 20


@dataclass(frozen=True)
class SweSpec:
    """One SWE task, normalized from a generated task or a SWE-bench-shaped row."""

    issue: str
    """The issue text shown to the agent."""
    base_tar: bytes
    """The base repository's files (no tests the agent must not see)."""
    fail_to_pass: list[str]
    """Node ids that fail on the base and must pass after the fix."""
    pass_to_pass: list[str]
    """Node ids that pass on the base and must keep passing."""
    hidden_files: dict[str, str] = field(default_factory=dict)
    """Test files written over the tree before grading (generated tasks)."""
    test_patch: str = ""
    """A unified diff adding the hidden tests (SWE-bench rows)."""

    @property
    def hidden_paths(self) -> set[str]:
        """Paths the hidden tests occupy (the agent's edits to them are dropped)."""
        return set(self.hidden_files) | set(patch_paths(self.test_patch))

    @property
    def test_files(self) -> list[str]:
        """The files pytest is run on (one per node id's file part, in order)."""
        return list(dict.fromkeys(node.split("::")[0] for node in self.fail_to_pass + self.pass_to_pass))


def spec_from_task(task: Mapping[str, Any]) -> SweSpec:
    """A ``SweSpec`` from a generated task (``files``) or a SWE-bench row (``repo``)."""
    name = task.get("instance_id") or task.get("id") or "?"
    f2p, p2p = node_ids(task, "FAIL_TO_PASS", name), node_ids(task, "PASS_TO_PASS", name)
    if not f2p:
        raise TaskError(f"swe task {name!r}: 'FAIL_TO_PASS' is empty")
    if "repo" in task:
        issue = _text(task, "problem_statement", name)
        test_patch = _text(task, "test_patch", name)
        return SweSpec(issue, git_archive(task, name), f2p, p2p, test_patch=test_patch)
    issue = _text(task, "issue", name)
    files, hidden = _files(task, "files", name), _files(task, "hidden_tests", name)
    if not hidden:
        raise TaskError(f"swe task {name!r}: 'hidden_tests' is empty")
    return SweSpec(issue, tar_of(files), f2p, p2p, hidden_files=hidden)


def node_ids(task: Mapping[str, Any], key: str, name: str) -> list[str]:
    """A list of pytest node ids, given as a list or a JSON string (SWE-bench stores both)."""
    value = task.get(key, [])
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise TaskError(f"swe task {name!r}: {key!r} is not a JSON list") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TaskError(f"swe task {name!r}: {key!r} must be a list of pytest node ids")
    return [v.strip() for v in value]


def _text(task: Mapping[str, Any], key: str, name: str) -> str:
    value = task.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"swe task {name!r}: {key!r} must be a non-empty string")
    return value


def _files(task: Mapping[str, Any], key: str, name: str) -> dict[str, str]:
    files = task.get(key) or {}
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise TaskError(f"swe task {name!r}: {key!r} must map paths to text")
    for path in files:
        if not path or path.startswith("/") or ".." in PurePosixPath(path).parts:
            raise TaskError(f"swe task {name!r}: {key!r} path {path!r} must be relative, inside the repository")
    return files


def git_archive(task: Mapping[str, Any], name: str) -> bytes:
    """The tree of ``base_commit`` in the local git repository ``repo``, as a tar archive."""
    repo, commit = _text(task, "repo", name), _text(task, "base_commit", name)
    if not Path(repo).is_dir():
        raise TaskError(f"swe task {name!r}: repository {repo!r} is not a directory")
    run = subprocess.run(["git", "-C", repo, "archive", "--format=tar", f"{commit}^{{tree}}"],
                         capture_output=True, timeout=120, check=False)
    if run.returncode != 0:
        why = run.stderr.decode(errors="replace").strip().splitlines()
        raise TaskError(f"swe task {name!r}: cannot read {commit!r} of {repo!r}: {why[-1] if why else 'git failed'}")
    return run.stdout


def tar_of(files: Mapping[str, str]) -> bytes:
    """A tar archive of text files (deterministic: fixed times and modes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(files):
            data = files[path].encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o755 if files[path].startswith("#!") else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def unpack(sandbox: Sandbox, archive: bytes, timeout: float) -> None:
    """Extract ``archive`` into the workspace as the sandbox user."""
    result = await sandbox.run("tar -xf - --no-same-owner --no-same-permissions", stdin=archive, timeout=timeout)
    if result.exit_code != 0:
        raise TaskError(f"swe: cannot unpack the repository: {result.output.strip()[-300:]}")


def patch_paths(patch: str) -> list[str]:
    """The paths a unified git diff touches (both sides of each ``diff --git`` header)."""
    paths: list[str] = []
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            paths += [p for p in _header_paths(line[len("diff --git "):]) if p not in paths]
        elif line.startswith(("--- a/", "+++ b/")):
            path = line[6:].split("\t")[0]
            if path not in paths:
                paths.append(path)
    return paths


def _header_paths(rest: str) -> list[str]:
    """``a/P b/Q`` -> [P, Q]; unparseable (quoted) headers -> [rest] so they stay protected."""
    if rest.startswith("a/") and " b/" in rest:
        half = (len(rest) - 3) // 2
        if rest[half + 1:half + 4] == " b/" and rest[2:half + 1] == rest[half + 4:]:
            return [rest[2:half + 1]]
        first, _, second = rest[2:].partition(" b/")
        return [first, second]
    return [rest]


def protected(path: str, hidden: set[str]) -> bool:
    """Whether the agent's change to ``path`` is dropped before grading."""
    parts = PurePosixPath(path).parts
    return path in hidden or not parts or parts[-1] in PROTECTED_NAMES or parts[0] in PROTECTED_TOP


def split_patch(patch: str, hidden: set[str]) -> tuple[str, list[str]]:
    """The agent's diff without its protected files; returns (kept diff, dropped paths)."""
    chunks = re.split(r"(?m)^(?=diff --git )", patch)
    kept, dropped = [], []
    for chunk in chunks:
        if not chunk.startswith("diff --git "):
            continue
        paths = _header_paths(chunk.splitlines()[0][len("diff --git "):])
        if any(protected(p, hidden) or '"' in p for p in paths):
            dropped += paths
        else:
            kept.append(chunk)
    return "".join(kept), dropped


@functools.lru_cache(maxsize=1)
def pytest_files() -> dict[str, Path]:
    """pytest and its runtime requirements: ``relative path -> installed file``, sources and
    their compiled ``__pycache__`` files (kept only where they match the source's mtime)."""
    files: dict[str, Path] = {}
    pending, seen = ["pytest"], set()
    while pending:
        name = pending.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        dist = metadata.distribution(name)
        for entry in dist.files or []:
            rel = str(entry)
            if not rel.startswith("..") and ".dist-info" not in rel and rel.endswith((".py", ".typed", ".pyc")):
                files[rel] = Path(str(dist.locate_file(entry)))
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(req.name)
    return {rel: path for rel, path in files.items() if path.is_file()}


def pytest_binds(sandbox: Sandbox) -> dict[str, Path]:
    """``binds`` that put pytest on ``PYTHONPATH`` inside ``sandbox`` (hard links, else copies)."""
    where = sandbox.make_private_dir({})
    for rel, source in pytest_files().items():
        target = where / rel
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True)
            for parent in [target.parent, *target.parent.relative_to(where).parents]:
                (where / parent).chmod(0o755)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
            target.chmod(0o644)
    return {"PYTHONPATH": where}


PY_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


def parse_report(output: str) -> dict[str, str]:
    """``node id -> status`` from pytest's ``-rA`` short summary."""
    statuses: dict[str, str] = {}
    for line in output.splitlines():
        match = _STATUS.match(line.strip())
        if match and match.group(1) != "SKIPPED":
            node = match.group(2).split(" - ")[0].strip()
            statuses.setdefault(node, match.group(1))
    return statuses


@dataclass(frozen=True)
class Grade:
    """The hidden tests' results for one diff."""

    results: dict[str, bool]
    """Node id -> passed, FAIL_TO_PASS first."""
    details: dict[str, Any]
    """What was applied and dropped, pytest's exit code and the tail of its output."""

    @property
    def score(self) -> float:
        return sum(self.results.values()) / len(self.results)


async def workspace_diff(sandbox: Sandbox, base: str, timeout: float) -> tuple[str | None, str]:
    """The agent's diff against ``base`` (made in a throwaway copy); (None, why) when it fails."""
    twin = sandbox.clone(limits=Limits(timeout=timeout, max_output=_OUTPUT_CAP, flood_limit=_OUTPUT_CAP,
                                       memory_mb=sandbox.limits.memory_mb))
    try:
        result = await twin.run(DIFF_SCRIPT.format(git=GIT, base=base))
    finally:
        await twin.close()
    if result.exit_code != 0 or result.truncated:
        return None, "the workspace diff could not be made: " + result.output.strip()[-300:]
    return result.output, ""


async def grade(spec: SweSpec, patch: str, *, isolation: str, limits: Limits, timeout: float) -> Grade:
    """Run the hidden tests on the base with ``patch`` (minus protected files) applied."""
    kept, dropped = split_patch(patch, spec.hidden_paths)
    details: dict[str, Any] = {"patch_bytes": len(patch.encode()), "dropped_paths": dropped}
    grader = Sandbox(isolation=isolation, limits=Limits(timeout=timeout, max_output=_OUTPUT_CAP,
                                                        flood_limit=_OUTPUT_CAP, memory_mb=limits.memory_mb))
    started = time.monotonic()
    try:
        await unpack(grader, spec.base_tar, timeout)
        details["applied"] = await _apply(grader, kept) if kept.strip() else True
        await _install_tests(grader, spec)
        files = " ".join(shlex.quote(f) for f in spec.test_files)
        run = await grader.run(f"exec python3 -m pytest -p no:cacheprovider -rA --tb=short -q {files}",
                               binds=pytest_binds(grader), env=PY_ENV)
    finally:
        await grader.close()
    statuses = parse_report(run.output) if details["applied"] else {}
    results = {n: statuses.get(n) in ("PASSED", "XFAIL") for n in spec.fail_to_pass + spec.pass_to_pass}
    details.update(pytest_exit_code=run.exit_code, timed_out=run.timed_out, seconds=round(time.monotonic() - started, 2),
                   output_tail=run.output[-2000:])
    return Grade(results, details)


async def _apply(grader: Sandbox, patch: str) -> bool:
    result = await grader.run(f"{GIT} apply --whitespace=nowarn -", stdin=patch)
    return result.exit_code == 0


async def _install_tests(grader: Sandbox, spec: SweSpec) -> None:
    if spec.hidden_files:
        await unpack(grader, tar_of(spec.hidden_files), grader.limits.timeout)
    if spec.test_patch.strip():
        result = await grader.run(f"{GIT} apply --whitespace=nowarn -", stdin=spec.test_patch)
        if result.exit_code != 0:
            raise TaskError(f"swe: the test patch does not apply to the base: {result.output.strip()[-300:]}")

