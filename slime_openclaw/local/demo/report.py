"""What ``slime-openclaw demo`` shows: the progress line, the summary table, the JSON, the curve.

``ProgressLine`` renders the running demo (phase, interactions, training steps, weight
version, current preference score) on one updating line when the stream is a terminal,
else as a line per change (throttled). ``summary_table`` and ``verdict`` turn the summary
dict of demo_loop.py into text, ``write_summary_json`` writes it atomically, and
``plot_curve`` draws the learning curve with matplotlib's Agg backend (no display needed).
Nothing here runs the demo.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from slime_openclaw.local.demo.loop import Live

SUMMARY_KEYS = ("method", "score_before", "score_after", "interactions", "train_steps", "weight_version",
                "requests_served", "requests_failed", "turns_recorded", "samples_produced", "samples_lost")
"""The keys ``--summary-json`` always writes (more may follow)."""
MIN_CHANGE = 0.05
"""A score change smaller than this is reported as "no clear change" (the evaluation's noise)."""


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_text(live: Live) -> str:
    """One line describing the running demo."""
    state = live.state
    done = state.interactions_done if state else 0
    score = live.current_score
    before = state.score_before if state else None
    parts = [f"{_bar(done, live.total)} {done}/{live.total} interactions",
             f"steps {live.train_steps}", f"weights v{live.weight_version}",
             # live: first replies of the last 30 training sessions; "before" is the evaluation
             f"recent score {'-' if score is None else f'{score:.2f}'}"
             + ("" if before is None else f" (eval before {before:.2f})"),
             f"{time.monotonic() - live.started:4.0f}s", live.phase]
    return " | ".join(parts)


class ProgressLine:
    """Prints progress: one rewritten line on a terminal, else a line per change at most every ``every_s``."""

    def __init__(self, stream: TextIO, tty: bool | None = None, every_s: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._last_key: tuple[Any, ...] = ()
        self._last_phase = ""
        self._last_time = 0.0
        self._written = False

    def __call__(self, live: Live) -> None:
        done = live.state.interactions_done if live.state else 0
        key = (live.phase, done, live.train_steps, live.weight_version)
        now = time.monotonic()
        if key == self._last_key:
            return
        if not self.tty and live.phase == self._last_phase and now - self._last_time < self.every_s:
            return
        text = progress_text(live)
        self.stream.write("\r\x1b[2K" + text if self.tty else text + "\n")
        self.stream.flush()
        self._last_key, self._last_phase, self._last_time, self._written = key, live.phase, now, True

    def finish(self) -> None:
        """End the updating line (terminal only)."""
        if self.tty and self._written:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def verdict(summary: dict[str, Any]) -> str:
    """One honest sentence about the score change."""
    before, after = summary.get("score_before"), summary.get("score_after")
    if before is None or after is None:
        return "no evaluation"
    delta = after - before
    if abs(delta) < MIN_CHANGE:
        return f"no clear change ({delta:+.3f}, below the evaluation's noise of ~{MIN_CHANGE})"
    return f"the preference score {'rose' if delta > 0 else 'FELL'} by {delta:+.3f}"


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-run table."""
    before, after = summary.get("score_before"), summary.get("score_after")
    rows = [
        ("method", summary.get("method")),
        ("preference score", f"{_fmt(before)} -> {_fmt(after)}   ({verdict(summary)})"),
        ("interactions", summary.get("interactions")),
        ("training steps", summary.get("train_steps")),
        ("weight version served", summary.get("weight_version")),
        ("requests served / failed", f"{summary.get('requests_served')} / {summary.get('requests_failed')}"),
        ("turns recorded / samples produced / lost",
         f"{summary.get('turns_recorded')} / {summary.get('samples_produced')} / {summary.get('samples_lost')}"),
        ("turns still pending", summary.get("turns_pending")),
        ("restarts", summary.get("restarts")),
        ("elapsed (this work directory)", f"{summary.get('elapsed_s')} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {_fmt(value)}" for name, value in rows]
    curve = summary.get("curve") or []
    if curve:
        lines.append("learning curve (evaluation rounds):")
        lines += [f"  after {p['interactions']:>4} interactions, weights v{p['weight_version']:<3} "
                  f"score {p['score']:.3f}  " + " ".join(f"{k}={v:.2f}" for k, v in p.get("per_persona", {}).items())
                  for p in curve]
    return "\n".join(lines)


def write_summary_json(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write the summary as JSON, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def plot_curve(path: str | os.PathLike[str], curves: dict[str, Sequence[dict[str, Any]]],
               title: str = "Preference score of first responses", *, xlabel: str = "training interactions",
               ylabel: str = "preference score (evaluation)") -> None:
    """Points' ``score`` against their ``interactions``, one line per label (Agg backend, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    try:
        for label, points in curves.items():
            xs = [p["interactions"] for p in points]
            ys = [p["score"] for p in points]
            axes.plot(xs, ys, marker="o", label=label)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_ylim(0.0, 1.0)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=100)
    finally:
        plt.close(figure)
