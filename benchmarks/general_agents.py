"""General-agents benchmark: outcome-only vs PRM + outcome vs combine (with hints), same seeds.

Each (method, seed) is one ``agents train`` loop (local/agents/loop.py: embedded engine
child, gateway, the agents' signal stage, local trainer) in a fresh temporary work
directory, from the same cached pre-trained tiny policy, with the same episode budget
(``--rounds`` x ``--tasks-per-round`` x ``--group-size``; the seed picks the train tasks
and the sampling seeds) and the same eval tasks (cycled past the split's 60; the i-th eval
episode draws the same way before and after, so each run's before/after is paired). It
prints, per method, the mean ± standard deviation over seeds of the eval success rate and
mean outcome before and after, and the training steps.

The reference reports that adding process rewards helps; this script reports what it
measures, whichever way it comes out.

Usage: ``python benchmarks/general_agents.py [--env toolcall] [--methods outcome,prm,combine]
[--seeds 0,1,2] [--rounds 3] [--tasks-per-round 4] [--group-size 4] [--eval-episodes 24]
[--lr 2e-4] [--batch-size 16] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from slime_openclaw.agents.stage import AGENT_METHODS
from slime_openclaw.envs import EnvSpec, builtin_tasks
from slime_openclaw.local.agents.loop import AgentTrainSettings, run_training
from slime_openclaw.local.agents.pretrain import prepare_agent_policy
from slime_openclaw.local.agents.running import cycled


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--env", default="toolcall")
    parser.add_argument("--methods", default=",".join(AGENT_METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks-per-round", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=24)
    parser.add_argument("--lr", type=float, default=AgentTrainSettings.lr)
    parser.add_argument("--batch-size", type=int, default=AgentTrainSettings.batch_size)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    bad = [m for m in args.methods.split(",") if m not in AGENT_METHODS]
    if bad:
        parser.error(f"unknown methods {bad}; choose from {list(AGENT_METHODS)}")
    return args


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.pstdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    spec = EnvSpec(args.env)
    policy = prepare_agent_policy(spec, threads=2)
    evals = cycled(builtin_tasks(args.env, "eval"), args.eval_episodes)
    train = builtin_tasks(args.env, "train")
    results: dict[str, list[dict[str, Any]]] = {}
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
                settings = AgentTrainSettings(env=spec, workdir=Path(tmp), train_tasks=train, eval_tasks=evals,
                                              method=method, rounds=args.rounds, tasks_per_round=args.tasks_per_round,
                                              group_size=args.group_size, eval_every=0, seed=seed, lr=args.lr,
                                              batch_size=args.batch_size)
                summary = asyncio.run(run_training(settings, policy))
            results.setdefault(method, []).append(summary)
            print(f"{method} seed {seed}: success {summary['success_before']:.3f} -> {summary['success_after']:.3f}, "
                  f"{summary['train_steps']} steps, {summary['elapsed_s']} s", file=sys.stderr, flush=True)
    budget = args.rounds * args.tasks_per_round * args.group_size
    print(f"\n{args.env}: {budget} training episodes per run, {len(evals)} eval episodes, seeds {args.seeds}, "
          f"lr {args.lr}, batch {args.batch_size}")
    print(f"{'method':8s}  {'success before':>16s}  {'success after':>16s}  {'outcome after':>16s}  steps")
    for method, runs in results.items():
        print(f"{method:8s}  {_spread([r['success_before'] for r in runs]):>16s}  "
              f"{_spread([r['success_after'] for r in runs]):>16s}  "
              f"{_spread([r['mean_outcome_after'] for r in runs]):>16s}  "
              f"{statistics.fmean(r['train_steps'] for r in runs):.0f}")
    if args.json:
        print(json.dumps({m: [{k: v for k, v in r.items() if k != "curve"} for r in runs]
                          for m, runs in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


