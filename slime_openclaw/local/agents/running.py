"""What ``agents eval`` and ``agents train`` run: the policy, the services, the summary.

``run_eval`` serves the policy (the embedded engine on ``--model`` or the prepared tiny
policy, or an engine at ``--engine-url`` whose ``/get_model_info`` names its tokenizer),
plays the episodes through the gateway and returns ``episodes``, ``success_rate``,
``mean_outcome``, ``turns_recorded`` (recorded only with ``--journal``). ``run_train``
prepares the policy, runs local/agents/loop.py in the work directory (a fresh run each
time) and writes ``summary.json`` and ``curve.png`` there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.envs import BUILTIN, EnvSpec
from slime_openclaw.errors import ConfigError
from slime_openclaw.local.agents import command
from slime_openclaw.local.agents.loop import evaluate, run_training


def policy_dir(args: argparse.Namespace, spec: EnvSpec) -> Path:
    """``--model`` or the prepared tiny policy of a built-in environment (built once, cached)."""
    if args.model:
        path = Path(args.model)
        if not (path / "config.json").is_file():
            raise ConfigError(f"--model {path}: not a model directory (no config.json)")
        return path
    if spec.name not in BUILTIN:
        raise ConfigError(f"environment {spec.name!r} has no prepared policy: pass --model DIR")
    from slime_openclaw.local.agents.pretrain import prepare_agent_policy

    print(f"preparing the tiny {spec.name} policy (cached after the first run)...", flush=True)
    return prepare_agent_policy(spec, seed=args.seed, threads=2)


async def _engine_tokenizer(url: str) -> Path:
    from slime_openclaw.engine.client import EngineClient
    from slime_openclaw.errors import EngineError

    try:
        async with EngineClient(url) as engine:
            info = await engine.model_info()
    except EngineError as exc:
        raise ConfigError(f"--engine-url {url}: {exc.message}") from None
    path = info.get("tokenizer_path") or info.get("model_path")
    if not path or not Path(path).is_dir():
        raise ConfigError(f"--engine-url {url}: its tokenizer path {path!r} is not here; pass --model DIR as well")
    return Path(path)


@contextlib.asynccontextmanager
async def _served(args: argparse.Namespace, policy: Path | None, config: OpenClawConfig) -> AsyncIterator[str]:
    """The gateway URL in front of the policy for ``eval`` (engine started here unless given).

    ``policy`` is resolved before the event loop starts: preparing it runs its own loop.
    """
    from slime_openclaw.engine.child import embedded_engine
    from slime_openclaw.live import live_service

    with contextlib.ExitStack() as stack:
        if args.engine_url:
            engine_url = args.engine_url
            tokenizer = Path(args.model) if args.model else await _engine_tokenizer(engine_url)
        else:
            assert policy is not None
            tokenizer = policy
            engine_url = stack.enter_context(embedded_engine(tokenizer, max_running=16))
        async with live_service(config, engine_url=engine_url, tokenizer_dir=tokenizer, port=0,
                                record_only=True) as service:
            yield service.url


def cycled(tasks: list[dict[str, Any]], episodes: int) -> list[dict[str, Any]]:
    """``episodes`` tasks, cycling through ``tasks`` (both ``eval --episodes`` and ``train --eval-episodes``)."""
    return list(itertools.islice(itertools.cycle(tasks), episodes))


def run_eval(args: argparse.Namespace, spec: EnvSpec, config: OpenClawConfig) -> dict[str, Any]:
    """``agents eval`` (see the module docstring); prints one line, returns the summary."""
    from slime_openclaw.journal.sqlite import SqliteJournal

    if args.tasks:
        from slime_openclaw.envs import read_tasks

        tasks = read_tasks(args.tasks)
    else:
        tasks = command.split_tasks(spec, None, args.seed)[1]
    chosen = cycled(tasks, args.episodes)
    values = config.to_mapping()
    values["openclaw_journal_path"] = str(Path(args.journal).resolve()) if args.journal else ":memory:"
    run_config = OpenClawConfig.from_mapping(values)
    settings = command.settings_from(args, spec, run_config, Path("."), [], chosen)

    policy = None if args.engine_url else policy_dir(args, spec)

    async def go() -> dict[str, Any]:
        async with _served(args, policy, run_config) as url:
            return await evaluate(url, settings, "eval", record=bool(args.journal))

    result = asyncio.run(go())
    turns = 0
    if args.journal:
        with SqliteJournal(args.journal, create=False) as journal:
            turns = sum(1 for r in journal.iter_turns() if r.turn.session_id.startswith("eval-eval-"))
    summary = {"env": spec.name, **result, "turns_recorded": turns}
    print(f"{spec.name}: success rate {summary['success_rate']:.3f} over {summary['episodes']} episodes, "
          f"mean outcome {summary['mean_outcome']:.3f}, environment failures {summary['env_failures']}, "
          f"requests failed {summary['requests_failed']}, "
          f"turns recorded {turns}")
    return summary


def run_train(args: argparse.Namespace, spec: EnvSpec, config: OpenClawConfig) -> dict[str, Any]:
    """``agents train`` (see the module docstring); prints the table, returns the summary."""
    from slime_openclaw.local.demo.report import plot_curve, write_summary_json

    train, evals = command.split_tasks(spec, args.tasks, args.seed)
    if not train or not evals:
        raise ConfigError("need tasks in both splits (train and eval); give tasks a \"split\" field")
    workdir = Path(args.workdir) if args.workdir else command.default_workdir(spec, args.method, args.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    command.clear(workdir)
    chosen = cycled(evals, args.eval_episodes)
    settings = command.settings_from(args, spec, config, workdir, train, chosen)
    policy = policy_dir(args, spec)
    printer = command.ProgressPrinter()
    try:
        summary = asyncio.run(run_training(settings, policy, printer))
    finally:
        printer.finish()
    summary = {**summary, "policy": str(policy), "workdir": str(workdir)}
    write_summary_json(workdir / "summary.json", summary)
    plot_curve(workdir / "curve.png", {settings.method: summary["curve"]}, f"{spec.name}: success on eval tasks",
               xlabel="training episodes", ylabel="success rate (eval)")
    print(command.summary_table(summary))
    print(f"curve: {workdir / 'curve.png'}  summary: {workdir / 'summary.json'}")
    return summary

