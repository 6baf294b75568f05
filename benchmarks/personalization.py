"""Personalization benchmark: binary RL vs OPD vs combine (and top-K OPD) on the same seeds.

Each (method, seed) is one full embedded loop (demo_loop.run_demo: embedded engine child,
gateway, rule judges + correction hints + the policy as teacher, local trainer, simulated
student/teacher/tool-user personas) in a fresh temporary work directory, from the same
cached pre-trained policy, with the same interaction budget and the same evaluation
problems (train off, fixed seeds). It reports, per method, the mean ± standard deviation
over seeds of the evaluation score before and after ``--interactions`` interactions and the
interactions until an evaluation round first reached ``--threshold`` (runs that never
reached it are counted and left out of the mean), as a table, a JSON file and a plot of
the mean curves (the spread is in the table).

The paper reports that combining binary RL and OPD beats either alone; this script reports
what it measures, whichever way it comes out.

Usage: ``python benchmarks/personalization.py [--methods binary,opd,combine,opd_topk]
[--seeds 0,1,2] [--interactions 120] [--eval-every 40] [--eval-per-persona 12]
[--threshold 0.5] [--out-dir DIR] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from slime_openclaw.local.demo.loop import METHOD_CHOICES, DemoSettings, prepare, run_demo, seeds_list
from slime_openclaw.local.demo.report import plot_curve
from slime_openclaw.paths import data_dir


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--methods", default="binary,opd,combine,opd_topk")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--interactions", type=int, default=120)
    parser.add_argument("--eval-every", type=int, default=40)
    parser.add_argument("--eval-per-persona", type=int, default=12)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out-dir", help="where the table, JSON and plot go (default: under the user data dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    bad = [m for m in _csv(args.methods) if m not in METHOD_CHOICES]
    if bad:
        parser.error(f"unknown methods {bad}; choose from {list(METHOD_CHOICES)}")
    return args


def to_threshold(curve: list[dict[str, Any]], threshold: float) -> int | None:
    """Interactions at the first evaluation round scoring at least ``threshold`` (None: never)."""
    return next((int(p["interactions"]) for p in curve if p["score"] >= threshold), None)


def _mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def aggregate(runs: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Per-method rows: scores before/after, the change, interactions to the threshold."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        reached = [t for t in (to_threshold(r["curve"], threshold) for r in mine) if t is not None]
        rows.append({
            "method": method, "seeds": len(mine),
            "before": _mean_std([r["score_before"] for r in mine]),
            "after": _mean_std([r["score_after"] for r in mine]),
            "change": _mean_std([r["score_after"] - r["score_before"] for r in mine]),
            "to_threshold": _mean_std([float(t) for t in reached], 0),
            "reached": f"{len(reached)}/{len(mine)}",
            "steps": _mean_std([float(r["train_steps"]) for r in mine], 1),
            "failed_requests": sum(r["requests_failed"] for r in mine),
        })
    return rows


def table(rows: list[dict[str, Any]], threshold: float, interactions: int) -> str:
    head = ("method", "seeds", "score before", f"score after {interactions}", "change",
            f"interactions to {threshold:g}", "reached", "train steps", "failed req")
    keys = ("method", "seeds", "before", "after", "change", "to_threshold", "reached", "steps", "failed_requests")
    cells = [head] + [tuple(str(row[k]) for k in keys) for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells)


def mean_curves(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Mean score per evaluation point and method (points aligned by position)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        curves = [r["curve"] for r in runs if r["method"] == method]
        length = min(len(c) for c in curves)
        out[method] = [{"interactions": curves[0][i]["interactions"],
                        "score": statistics.fmean(c[i]["score"] for c in curves)} for i in range(length)]
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per checkpoint write otherwise
    methods, seeds = _csv(args.methods), seeds_list(args.seeds)
    out_dir = Path(args.out_dir or data_dir() / "bench" / "personalization")
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = prepare(DemoSettings(workdir=out_dir))
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="openclaw-personalization-") as tmp:
        for seed in seeds:
            for method in methods:
                settings = DemoSettings(workdir=Path(tmp) / f"{method}-{seed}", method=method, seed=seed,
                                        interactions=args.interactions, eval_every=args.eval_every,
                                        eval_per_persona=args.eval_per_persona)
                t0 = time.monotonic()
                summary = asyncio.run(run_demo(settings, policy))
                runs.append(summary)
                print(f"{method:<9} seed {seed}: {summary['score_before']:.3f} -> {summary['score_after']:.3f} "
                      f"({summary['train_steps']} steps, {time.monotonic() - t0:.0f}s)", flush=True)
    rows = aggregate(runs, args.threshold)
    print()
    print(table(rows, args.threshold, args.interactions))
    print(f"\n{len(runs)} runs in {time.monotonic() - started:.0f}s; policy {policy}")
    plot_curve(out_dir / "personalization.png", mean_curves(runs),
               title=f"Mean preference score over seeds {args.seeds}")
    (out_dir / "personalization.json").write_text(json.dumps({"args": vars(args), "rows": rows, "runs": runs},
                                                             indent=2) + "\n", encoding="utf-8")
    print(f"plot: {out_dir / 'personalization.png'}; data: {out_dir / 'personalization.json'}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
