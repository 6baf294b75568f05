"""``slime-openclaw agents harness mini-swe-agent|openclaw``: one episode of an outside harness.

Picks a task (``--tasks FILE``, else the built-in generator's ``--split``; ``--task-index``),
prepares its workspace, runs the harness there against ``--gateway`` with the session id
(``--session-id``, else ``<harness>-<task id>-<hex>``) as ``X-Session-Id``, grades what it
left (swe: hidden tests in a clean copy; terminal: checks in a fresh sandbox) and posts the
outcome to ``<gateway>/v1/sessions/<session id>/outcome``. Prints one line; ``--summary-json``
also writes the summary (session, score, passed, harness exit status, gateway answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from slime_openclaw.envs import builtin_tasks, read_tasks
from slime_openclaw.errors import ConfigError
from slime_openclaw.harnesses import workspace as ws
from slime_openclaw.harnesses.gateway import new_session_id, post_outcome
from slime_openclaw.harnesses.mini_swe import run_mini
from slime_openclaw.harnesses.openclaw import run_openclaw
from slime_openclaw.harnesses.runs import HarnessRun

HARNESSES = {"mini-swe-agent": "swe", "openclaw": "terminal"}
"""Each harness and the environment whose tasks it gets by default."""


def add_parser(actions: Any) -> None:
    """The ``harness`` action of ``agents``."""
    p = actions.add_parser("harness", help="one episode of mini-swe-agent or OpenClaw through the gateway, graded",
                           description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("harness", choices=sorted(HARNESSES), help="the outside harness to run, unmodified")
    p.add_argument("--gateway", required=True, metavar="URL", help="the gateway's base URL (with or without /v1)")
    p.add_argument("--model", default="tiny", help="the gateway's served model name (tiny)")
    p.add_argument("--api-key", default="", help="the gateway's API key, if it has one")
    p.add_argument("--env", choices=ws.ENVS, help="task family (mini-swe-agent: swe, openclaw: terminal)")
    p.add_argument("--tasks", metavar="FILE", help="JSON-lines tasks (default: the built-in generator's)")
    p.add_argument("--split", choices=("train", "eval"), default="eval", help="built-in split (eval)")
    p.add_argument("--task-index", type=int, default=0, help="which task of the list (0)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    p.add_argument("--session-id", help="the X-Session-Id to send (default: <harness>-<task id>-<hex>)")
    p.add_argument("--workdir", metavar="DIR", help="keep the workspace and the harness's files here")
    p.add_argument("--step-limit", type=int, default=20, help="mini-swe-agent: model calls at most (20)")
    p.add_argument("--max-tokens", type=int, default=1024, help="openclaw: completion tokens per request (1024)")
    p.add_argument("--context-window", type=int, default=65536, help="openclaw: the model's context (65536)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the harness may run (1800)")
    p.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "plain"), help="grading sandbox")
    p.add_argument("--harness-bin", metavar="PATH", help="the harness's CLI (default: found as documented)")
    p.add_argument("--summary-json", metavar="PATH", help="also write the summary here")


def pick_task(args: argparse.Namespace, env: str) -> dict[str, Any]:
    """The ``--task-index``-th task of ``--tasks`` or of the built-in ``--split``."""
    tasks = read_tasks(args.tasks) if args.tasks else builtin_tasks(env, args.split, seed=args.seed)
    if not 0 <= args.task_index < len(tasks):
        raise ConfigError(f"--task-index {args.task_index}: there are {len(tasks)} tasks (0..{len(tasks) - 1})")
    return tasks[args.task_index]


async def episode(args: argparse.Namespace, env: str, task: dict[str, Any], root: Path) -> dict[str, Any]:
    """Prepare, run the harness, grade, post the outcome; the summary."""
    session = args.session_id or new_session_id(args.harness, task)
    space = ws.prepare(env, task, root / "workspace")
    started = time.monotonic()
    common = {"gateway": args.gateway, "model": args.model, "session_id": session, "scratch": root / "harness",
              "api_key": args.api_key, "timeout": args.timeout, "binary": args.harness_bin}
    run: HarnessRun
    if args.harness == "mini-swe-agent":
        run = await run_mini(space, step_limit=args.step_limit, **common)
    else:
        run = await run_openclaw(space, max_tokens=args.max_tokens, context_window=args.context_window, **common)
    outcome = await ws.grade(space, isolation=args.isolation)
    outcome.details["harness"] = {"name": args.harness, "exit_code": run.exit_code, **run.details,
                                  "seconds": round(time.monotonic() - started, 1)}
    answer = await asyncio.to_thread(post_outcome, args.gateway, session, outcome, api_key=args.api_key)
    return {"harness": args.harness, "env": env, "task": task.get("id") or task.get("instance_id"),
            "session_id": answer.get("session_id", session), "client_session_id": session, "score": outcome.score,
            "passed": outcome.passed, "recorded": answer.get("recorded"), "harness_exit_code": run.exit_code,
            **{k: v for k, v in run.details.items() if k != "final_text"}, "workdir": str(root),
            "output_tail": run.output_tail if run.exit_code != 0 else ""}


def run(args: argparse.Namespace) -> int:
    """``agents harness``: one graded episode, its outcome posted; exit 0 when it was recorded."""
    for key in ("step_limit", "max_tokens", "context_window"):
        if getattr(args, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1")
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    env = args.env or HARNESSES[args.harness]
    task = pick_task(args, env)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="slime-openclaw-harness-"))
    if args.workdir and root.exists() and any(root.iterdir()):
        raise ConfigError(f"--workdir {root}: not empty")
    try:
        summary = asyncio.run(episode(args, env, task, root))
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    if not args.workdir:
        summary["workdir"] = None
    print(f"{args.harness} on {env} task {summary['task']}: score {summary['score']:.3f} "
          f"(passed {summary['passed']}), session {summary['session_id']}, harness exit {summary['harness_exit_code']}"
          f"{'' if summary['recorded'] else ' (outcome was already recorded)'}")
    if summary["output_tail"]:
        print(summary["output_tail"][-1500:])
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0
