"""What an environment pool reports: running, queued, reclaimed, failed, step latency.

One ``PoolMetrics`` per pool. ``render()`` is Prometheus text (the gateway appends it to
``GET /metrics`` when the slime generate function runs episodes through a pool);
``rollout()`` is the flat ``openclaw/env_pool_*`` dict slime logs with its rollout
metrics. Numbers only, never a task or a message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from slime_openclaw.gateway.metrics import Histogram

WINDOW = 4096
"""Recent step latencies kept for the p50/p99 of ``rollout()``."""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class PoolMetrics:
    """Gauges and counters of one pool (see the module docstring)."""

    kind: str = "local"
    running: int = 0
    """Episodes holding an environment now."""
    queued: int = 0
    """Episodes waiting for a slot (back-pressure)."""
    leased: int = 0
    """Leases granted since the pool started."""
    reclaimed: int = 0
    """Leases whose environment was taken back: missed heartbeats, a dead actor, a call past its time limit."""
    failed: int = 0
    """Episodes ended as an environment failure."""
    actors: int = 0
    """Ray actors hosting environments now (0 for the local pool)."""
    steps: int = 0
    running_peak: int = 0
    """Most episodes holding an environment at once since the last ``rollout(reset_peaks=True)``."""
    queued_peak: int = 0
    """Most episodes waiting for a slot at once since then."""
    step_seconds: Histogram = field(default_factory=Histogram)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def enter(self, queued: int = 0, running: int = 0) -> None:
        """Count episodes into (positive) or out of (negative) the queue and the running set."""
        self.queued += queued
        self.running += running
        self.queued_peak = max(self.queued_peak, self.queued)
        self.running_peak = max(self.running_peak, self.running)

    def observe_step(self, seconds: float) -> None:
        """One step's latency as the driver saw it (call to answer)."""
        self.steps += 1
        self.step_seconds.observe(seconds)
        self.recent.append(seconds)

    def render(self) -> str:
        """Prometheus exposition text of these metrics."""
        label = f'{{pool="{self.kind}"}}'
        lines: list[str] = []
        for name, kind, help_text, value in (
            ("running", "gauge", "Episodes holding an environment.", self.running),
            ("queued", "gauge", "Episodes waiting for an environment slot.", self.queued),
            ("actors", "gauge", "Ray actors hosting environments.", self.actors),
            ("leased_total", "counter", "Environment leases granted.", self.leased),
            ("reclaimed_total", "counter", "Leases reclaimed (missed heartbeats, dead actor, call timeout).",
             self.reclaimed),
            ("failed_total", "counter", "Episodes ended as an environment failure.", self.failed),
        ):
            metric = f"openclaw_env_pool_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", f"{metric}{label} {value}"]
        metric = "openclaw_env_pool_step_seconds"
        lines += [f"# HELP {metric} Environment step latency seen by the driver.", f"# TYPE {metric} histogram"]
        lines += [line.replace(metric + "_bucket{", metric + "_bucket{" + label[1:-1] + ",", 1)
                  if "_bucket{" in line else line.replace(" ", label + " ", 1)
                  for line in self.step_seconds.lines(metric)]
        return "\n".join(lines) + "\n"

    def rollout(self, reset_peaks: bool = False) -> dict[str, float]:
        """Flat ``openclaw/env_pool_*`` metrics for slime's rollout log; ``reset_peaks`` starts
        the next rollout's peaks from the current gauges."""
        recent = list(self.recent)
        out = {
            "openclaw/env_pool_running": float(self.running),
            "openclaw/env_pool_running_peak": float(self.running_peak),
            "openclaw/env_pool_queued": float(self.queued),
            "openclaw/env_pool_queued_peak": float(self.queued_peak),
            "openclaw/env_pool_actors": float(self.actors),
            "openclaw/env_pool_leased": float(self.leased),
            "openclaw/env_pool_reclaimed": float(self.reclaimed),
            "openclaw/env_pool_failed": float(self.failed),
            "openclaw/env_pool_steps": float(self.steps),
            "openclaw/env_pool_step_latency_p50_s": percentile(recent, 0.5),
            "openclaw/env_pool_step_latency_p99_s": percentile(recent, 0.99),
        }
        if reset_peaks:
            self.running_peak, self.queued_peak = self.running, self.queued
        return out
