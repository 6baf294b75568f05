"""``slime-openclaw agents list|eval|train``: general agents on the embedded default.

- ``list``: each built-in environment's short name and dotted path;
- ``harness mini-swe-agent|openclaw --gateway URL``: one episode of an outside harness,
  graded and its outcome posted (slime_openclaw/harnesses/command.py);
- ``prompt-data --env E [--tasks FILE] [--split train|eval] -o FILE.jsonl``: the split's
  tasks as slime's ``--prompt-data`` for the agent recipes (slime/prompt_data.py);
- ``eval --env E [--tasks FILE] --episodes N [--model DIR | --engine-url URL] [--journal F]``:
  success rate and mean outcome over N episodes of the eval split (or the file's tasks);
  with ``--journal`` the episodes are recorded there (turns and outcomes);
- ``train --env E [--tasks FILE] [--method outcome|prm|combine]``: the tiny policy pre-trained
  once (cached) on the family's synthetic trajectories, evaluated, trained online through
  the gateway with the local trainer, evaluated again: progress line, summary table,
  success-rate curve PNG and ``summary.json`` in the work directory.

Bad input is a one-line message and a non-zero exit (cli.py); nothing here is a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

from slime_openclaw.agents.stage import AGENT_METHODS
from slime_openclaw.config import OpenClawConfig
from slime_openclaw.envs import BUILTIN, EnvSpec, builtin_tasks, read_tasks
from slime_openclaw.envs.splits import split_of
from slime_openclaw.errors import ConfigError
from slime_openclaw.local.agents.loop import AgentTrainSettings, Progress
from slime_openclaw.paths import data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``list``, ``eval`` and ``train`` actions."""
    actions = parser.add_subparsers(dest="agents_action", metavar="ACTION", required=True)
    actions.add_parser("list", help="built-in environments: short name and dotted path")
    from slime_openclaw.harnesses import command as harness_command

    harness_command.add_parser(actions)
    data = actions.add_parser("prompt-data", help="write a split's tasks as slime --prompt-data JSON lines",
                              description="write a split's tasks as slime --prompt-data JSON lines "
                                          '({"prompt": instruction, "metadata": task}, one per task)')
    data.add_argument("--env", required=True, help="terminal, toolcall, or package.module.Class")
    data.add_argument("--tasks", metavar="FILE", help="JSON-lines tasks (default: the built-in generator's)")
    data.add_argument("--split", choices=("train", "eval"), default="train", help="which split (train)")
    data.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    data.add_argument("-o", "--output", required=True, metavar="FILE.jsonl", help="where to write")
    d = AgentTrainSettings(env=EnvSpec("terminal"), workdir=Path("."), train_tasks=(), eval_tasks=())
    for name, help_text in (("eval", "success rate of a policy on an environment's eval tasks"),
                            ("train", "pre-train (cached), evaluate, train online, evaluate again")):
        p = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--env", required=True, help="terminal, toolcall, swe, gui, or package.module.Class")
        p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help="environment argument")
        p.add_argument("--tasks", metavar="FILE", help="JSON-lines tasks (default: the built-in generator's)")
        p.add_argument("--model", metavar="DIR", help="policy checkpoint (default: the prepared tiny policy)")
        p.add_argument("--config", metavar="YAML", help="openclaw_* settings (judges, openclaw_agent_* weights)")
        p.add_argument("--summary-json", metavar="PATH", help="also write the summary here")
        p.add_argument("--concurrency", type=int, default=d.concurrency, help=f"episodes at once ({d.concurrency})")
        p.add_argument("--max-turns", type=int, default=d.max_turns, help=f"agent turns per episode ({d.max_turns})")
        p.add_argument("--temperature", type=float, default=d.temperature,
                       help=f"sampling temperature of the policy ({d.temperature})")
        p.add_argument("--seed", type=int, default=0,
                       help="seed of the prepared tiny policy (another seed prepares another one), of the "
                            "built-in tasks and of the sampling (0)")
        if name == "eval":
            p.add_argument("--episodes", type=int, required=True, help="episodes to run (tasks cycle)")
            p.add_argument("--engine-url", help="an engine (SGLang protocol) already serving the policy")
            p.add_argument("--journal", metavar="FILE", help="record the episodes (turns, outcomes) in this journal")
        else:
            p.add_argument("--method", choices=AGENT_METHODS, default=d.method, help=f"step rewards ({d.method})")
            p.add_argument("--rounds", type=int, default=d.rounds, help=f"training rounds ({d.rounds})")
            p.add_argument("--tasks-per-round", type=int, default=d.tasks_per_round)
            p.add_argument("--group-size", type=int, default=d.group_size, help="episodes per task (the group)")
            p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate of the local trainer ({d.lr:g})")
            p.add_argument("--batch-size", type=int, default=d.batch_size,
                           help=f"samples (steps) per trainer update ({d.batch_size})")
            p.add_argument("--kl-coef", type=float, default=d.kl_coef,
                           help=f"KL-to-reference penalty, low_var_kl as slime's --kl-loss-coef ({d.kl_coef:g})")
            p.add_argument("--eval-episodes", type=int, default=120,
                           help="eval episodes before and after (120; the eval tasks cycle)")
            p.add_argument("--workdir", metavar="DIR", help="journal, checkpoints, curve (default under XDG data)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    if args.agents_action == "list":
        for name, path in sorted(BUILTIN.items()):
            print(f"{name:10s} {path}")
        return 0
    if args.agents_action == "harness":
        from slime_openclaw.harnesses import command as harness_command

        return harness_command.run(args)
    if args.agents_action == "prompt-data":
        return write_prompt_data(args)
    for key in ("concurrency", "max_turns", "episodes", "rounds", "tasks_per_round", "group_size", "eval_episodes",
                "batch_size"):
        if getattr(args, key, 1) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1")
    spec = EnvSpec.parse(args.env, args.env_arg)
    config = OpenClawConfig.from_file(args.config) if args.config else OpenClawConfig()
    from slime_openclaw.local.agents import running

    summary = running.run_eval(args, spec, config) if args.agents_action == "eval" else \
        running.run_train(args, spec, config)
    if args.summary_json:
        from slime_openclaw.local.demo.report import write_summary_json

        write_summary_json(args.summary_json, summary)
    return 0


def write_prompt_data(args: argparse.Namespace) -> int:
    """``prompt-data``: the chosen split of ``--tasks`` or of the generator, as slime's prompt data."""
    from slime_openclaw.slime import prompt_data

    spec = EnvSpec.parse(args.env, [])
    train, evals = split_tasks(spec, args.tasks, args.seed)
    count = prompt_data.write_prompt_data(args.output, train if args.split == "train" else evals)
    print(f"{args.output}: {count} {args.split} tasks of {spec.name} "
          f"(--input-key {prompt_data.INPUT_KEY} --metadata-key {prompt_data.METADATA_KEY})")
    return 0


def split_tasks(spec: EnvSpec, path: str | None, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) tasks: the file's (its ``split`` field, else a hash of the task) or the generator's."""
    if path is None:
        return builtin_tasks(spec.name, "train", seed=seed), builtin_tasks(spec.name, "eval", seed=seed)
    tasks = read_tasks(path)
    parts: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for task in tasks:
        split = task.get("split") if task.get("split") in parts else split_of({k: v for k, v in task.items()})
        parts[str(split)].append(task)
    return parts["train"], parts["eval"]


def default_workdir(spec: EnvSpec, method: str, seed: int) -> Path:
    """``$XDG_DATA_HOME/slime-openclaw/agents/<env>-<method>-seed<seed>``."""
    return data_dir() / "agents" / f"{spec.name.rsplit('.', 1)[-1].lower()}-{method}-seed{seed}"


class ProgressPrinter:
    """One updating line on a terminal, else a line per phase or per tenth of the episodes."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty, self.last = self.stream.isatty(), ("", -1)

    def __call__(self, p: Progress) -> None:
        step = p.episodes * 10 // max(1, p.total)
        key = (p.phase, p.episodes if self.tty else step)
        if key == self.last:
            return
        self.last = key
        success = "-" if p.success is None else f"{p.success:.2f}"
        text = (f"[{p.phase}] episodes {p.episodes}/{p.total}  train steps {p.train_steps}  "
                f"eval success {success}  {p.elapsed:.0f}s")
        self.stream.write("\r\x1b[2K" + text if self.tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-run table of ``agents train``."""
    rows = [("environment", summary["env"]), ("method", summary["method"]),
            ("success rate", f"{summary['success_before']:.3f} -> {summary['success_after']:.3f}"
                             f"  ({summary['eval_episodes']} eval episodes)"),
            ("mean outcome", f"{summary['mean_outcome_before']:.3f} -> {summary['mean_outcome_after']:.3f}"),
            ("training episodes", summary["episodes"]), ("training steps", summary["train_steps"]),
            ("requests failed", summary["requests_failed"]),
            ("turns recorded / samples / lost", f"{summary['turns_recorded']} / {summary['samples_produced']} / "
                                                f"{summary['samples_lost']}"),
            ("elapsed", f"{summary['elapsed_s']} s")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def clear(workdir: Path) -> None:
    """Start a training run over: remove what an earlier run left in ``workdir``."""
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)


def settings_from(args: argparse.Namespace, spec: EnvSpec, config: OpenClawConfig, workdir: Path,
                  train: list[dict[str, Any]], evals: list[dict[str, Any]]) -> AgentTrainSettings:
    """The run's settings from the command line."""
    base = AgentTrainSettings(env=spec, workdir=workdir, train_tasks=train, eval_tasks=evals, config=config)
    if not 0.0 < args.temperature <= 2.0:
        raise ConfigError(f"--temperature must be in (0, 2], got {args.temperature}")
    values: dict[str, Any] = {"concurrency": args.concurrency, "max_turns": args.max_turns, "seed": args.seed,
                              "temperature": args.temperature}
    if hasattr(args, "lr") and not (args.lr > 0 and args.lr < 1):
        raise ConfigError(f"--lr must be in (0, 1), got {args.lr}")
    if hasattr(args, "kl_coef") and not 0 <= args.kl_coef < 1e3:
        raise ConfigError(f"--kl-coef must be in [0, 1000), got {args.kl_coef}")
    for key in ("method", "rounds", "tasks_per_round", "group_size", "lr", "batch_size", "kl_coef"):
        if hasattr(args, key):
            values[key] = getattr(args, key)
    return dataclasses.replace(base, **values)
