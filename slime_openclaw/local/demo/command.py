"""``slime-openclaw demo``: the whole loop on one CPU machine with simulated users.

Prepares the tiny policy (cached; ~2-3 minutes the first time), starts the embedded engine,
the gateway with the signal workers, and the local trainer, drives the simulated users
through the gateway with the real ``openai`` client while printing progress, and ends with
a summary table (preference score before -> after, interactions, training steps, requests
served / failed, turns recorded / samples produced / lost) and a learning-curve PNG.

Everything lives in a work directory (``--workdir``; default
``$XDG_DATA_HOME/slime-openclaw/demo/<method>-seed<seed>``): ``journal.sqlite``,
``checkpoints/``, ``progress.json``, ``curve.png``, ``summary.json``. Running the same
command again continues a killed run where it stopped (a finished one starts over, as does
``--fresh``). The loop
itself is demo_loop.py, the display demo_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

from slime_openclaw.errors import ConfigError
from slime_openclaw.local.demo.loop import METHOD_CHOICES, DemoSettings
from slime_openclaw.paths import data_dir

WORK_FILES = ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "progress.json", "checkpoints",
              "topk", "curve.png", "summary.json")


def default_workdir(method: str, seed: int) -> Path:
    """``$XDG_DATA_HOME/slime-openclaw/demo/<method>-seed<seed>`` (else ``~/.local/share/...``)."""
    return data_dir() / "demo" / f"{method}-seed{seed}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slime-openclaw demo``."""
    d = DemoSettings(workdir=Path("."))
    parser.add_argument("--method", choices=METHOD_CHOICES, default=d.method,
                        help=f"training signal (default {d.method})")
    parser.add_argument("--interactions", type=int, default=d.interactions,
                        help=f"training interactions (simulated sessions) (default {d.interactions})")
    parser.add_argument("--users", type=int, default=d.users,
                        help=f"simulated users talking at the same time (default {d.users})")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the users' problems and sampling")
    parser.add_argument("--workdir", help="work directory (default: under the user data directory)")
    parser.add_argument("--fresh", action="store_true", help="start over: delete the work directory's run first")
    parser.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON here")
    parser.add_argument("--eval-per-persona", type=int, default=d.eval_per_persona,
                        help=f"evaluation sessions per persona and round (default {d.eval_per_persona})")
    parser.add_argument("--eval-every", type=int, default=d.eval_every,
                        help=f"training interactions between evaluation rounds; 0: before/after only "
                             f"(default {d.eval_every})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"samples per training step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"trainer learning rate (default {d.lr})")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens,
                        help=f"completion budget per reply (default {d.max_tokens})")
    parser.add_argument("--policy", help="prepared policy directory to start from (default: the cached one, "
                                         "prepared on first use)")


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    """Validated settings of the command line."""
    checks = {"--interactions": args.interactions >= 1, "--users": args.users >= 1,
              "--eval-per-persona": args.eval_per_persona >= 1, "--eval-every": args.eval_every >= 0,
              "--batch-size": args.batch_size >= 1, "--lr": args.lr > 0, "--max-tokens": args.max_tokens >= 1}
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ConfigError(f"out of range: {', '.join(bad)} (counts >= 1, --eval-every >= 0, --lr > 0)")
    policy = Path(args.policy) if args.policy else None
    if policy is not None and not (policy / "config.json").is_file():
        raise ConfigError(f"--policy {policy} is not a model directory")
    workdir = Path(args.workdir) if args.workdir else default_workdir(args.method, args.seed)
    return DemoSettings(workdir=workdir, method=args.method, interactions=args.interactions, users=args.users,
                        seed=args.seed, eval_per_persona=args.eval_per_persona, eval_every=args.eval_every,
                        batch_size=args.batch_size, lr=args.lr, max_tokens=args.max_tokens, policy_dir=policy)


def clear_workdir(workdir: Path) -> None:
    """Delete the demo's files in ``workdir`` (nothing else)."""
    for name in WORK_FILES:
        path = workdir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _finished(workdir: Path) -> bool:
    """True when ``workdir`` holds a completed run (a killed one is continued instead)."""
    import json

    path = workdir / "progress.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("finished"))
    except (OSError, ValueError, AttributeError):
        return False


def _say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> int:
    """Prepare, run (or continue) the loop, print the summary, write the curve and JSON."""
    from slime_openclaw.local.demo import loop as demo_loop
    from slime_openclaw.local.demo import report as demo_report

    settings = settings_from_args(args)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # checkpoint writes would draw a bar per training step
    if not args.fresh and _finished(settings.workdir):
        _say(f"the run in {settings.workdir} finished earlier; starting a fresh one (--workdir keeps runs apart)")
    if args.fresh or _finished(settings.workdir):
        clear_workdir(settings.workdir)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    _say(f"work directory: {settings.workdir}")
    if settings.policy_dir is None:
        _say("preparing the tiny policy (cached; the first time takes ~2-3 minutes)...")

    def pretrain_progress(step: int, loss: float) -> None:
        if step % 100 == 0:
            _say(f"  pre-training step {step + 1}/{settings.recipe.steps} loss {loss:.3f}")

    policy = demo_loop.prepare(settings, pretrain_progress)
    _say(f"policy: {policy}")
    progress = demo_report.ProgressLine(sys.stdout)
    try:
        summary = asyncio.run(demo_loop.run_demo(settings, policy, progress))
    finally:
        progress.finish()
    curve_path = settings.workdir / "curve.png"
    demo_report.plot_curve(curve_path, {settings.method: summary["curve"]})
    demo_report.write_summary_json(settings.workdir / "summary.json", summary)
    if args.summary_json:
        demo_report.write_summary_json(args.summary_json, summary)
    _say("")
    _say(demo_report.summary_table(summary))
    _say(f"learning curve: {curve_path}")
    return 0
