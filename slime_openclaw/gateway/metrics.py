"""Gateway metrics in the Prometheus text exposition format, written by hand (no client library).

Counters and gauges live in one ``GatewayMetrics`` object owned by the app (no process-global
registry, so tests and several apps in one process never share state). It records numbers
only, never request text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Histogram:
    """A cumulative-bucket histogram (``_bucket``, ``_sum``, ``_count``)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str) -> list[str]:
        """Exposition lines for this histogram."""
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.total:.6f}")
        out.append(f"{name}_count {self.count}")
        return out


@dataclass
class GatewayMetrics:
    """Everything ``GET /metrics`` reports."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(endpoint, HTTP status) -> count."""
    latency: Histogram = field(default_factory=Histogram)
    """Seconds from request arrival to the last byte of a chat completion."""
    first_token: Histogram = field(default_factory=Histogram)
    """Seconds from request arrival to the first generated token."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    resumes: int = 0
    """Resubmissions after an engine abort (weight updates)."""
    turns_recorded: int = 0
    next_states: Counter[str] = field(default_factory=Counter)
    """Next states attached, by kind, plus ``break`` for recorded continuity breaks."""
    sessions_open: int = 0
    overloaded: int = 0
    stream_errors: int = 0
    recorder_errors: int = 0
    """Recorder calls that raised."""
    turn_key_collisions: int = 0
    """Turns not recorded because their key already held another turn (also in ``recorder_errors``)."""
    unrecorded: int = 0
    """Answers withheld (error to the client) because their turn could not be recorded."""
    journal_ok: int = 1
    """1 while the journal can record, 0 while its storage is failing."""
    collectors: list[Callable[[], str]] = field(default_factory=list)
    """More exposition text appended to ``render()`` (the environment pool's metrics)."""

    def render(self) -> str:
        """The exposition text."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)

        def scalar(name: str, kind: str, help_text: str, value: int) -> None:
            metric(name, kind, help_text, [f"{name} {value}"])

        metric("openclaw_gateway_requests_total", "counter", "HTTP requests by endpoint and status.",
               [f'openclaw_gateway_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())])
        metric("openclaw_gateway_request_seconds", "histogram", "Chat completion latency.",
               self.latency.lines("openclaw_gateway_request_seconds"))
        metric("openclaw_gateway_first_token_seconds", "histogram", "Time to first generated token.",
               self.first_token.lines("openclaw_gateway_first_token_seconds"))
        scalar("openclaw_gateway_prompt_tokens_total", "counter", "Prompt tokens sent to the engine.", self.prompt_tokens)
        scalar("openclaw_gateway_completion_tokens_total", "counter", "Tokens generated.", self.completion_tokens)
        scalar("openclaw_gateway_in_flight", "gauge", "Chat completions being served.", self.in_flight)
        scalar("openclaw_gateway_resumes_total", "counter", "Generations resumed after an engine abort.", self.resumes)
        scalar("openclaw_gateway_turns_recorded_total", "counter", "Turns handed to the recorder.", self.turns_recorded)
        metric("openclaw_gateway_next_states_total", "counter", "Next states attached, by kind.",
               [f'openclaw_gateway_next_states_total{{kind="{k}"}} {n}' for k, n in sorted(self.next_states.items())])
        scalar("openclaw_gateway_sessions_open", "gauge", "Open sessions.", self.sessions_open)
        scalar("openclaw_gateway_overloaded_total", "counter", "Requests refused with 429.", self.overloaded)
        scalar("openclaw_gateway_stream_errors_total", "counter", "Streams ended by an error event.", self.stream_errors)
        scalar("openclaw_gateway_recorder_errors_total", "counter", "Recorder calls that failed.", self.recorder_errors)
        scalar("openclaw_gateway_turn_key_collisions_total", "counter",
               "Turns not recorded: their key already held another turn.", self.turn_key_collisions)
        scalar("openclaw_gateway_unrecorded_total", "counter", "Answers withheld: their turn could not be recorded.",
               self.unrecorded)
        scalar("openclaw_gateway_journal_ok", "gauge", "1 while the journal can record, 0 while it is failing.",
               self.journal_ok)
        return "\n".join(lines) + "\n" + "".join(collect() for collect in self.collectors)
