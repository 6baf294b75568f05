"""The teacher query: log-probs of the exact response tokens under a hint-enhanced context.

Teacher context: the turn's original request messages with the accepted hint added in one
of two documented ways (``HintPlacement``):
- ``user_append`` (default): appended to the last user message, after a blank line and the
  marker line ``HINT_MARKER``; with no user message the hint falls back to ``system``;
- ``system``: appended to the leading system message (blank line, marker, hint), or a new
  leading system message holding the marker and the hint when there is none.
The messages are rendered with the chat template (tools included, generation prompt on),
giving ``teacher_prompt_ids``.

Scoring is one ``/generate`` call with ``input_ids = teacher_prompt_ids + response_ids``,
``max_new_tokens = 0``, ``return_logprob = True``, ``logprob_start_len =
len(teacher_prompt_ids) - 1`` and, with top-K, ``top_logprobs_num = K``. The off-by-one:
SGLang never returns a log-prob for the token *at* ``logprob_start_len`` (it computes
log-probs from the logits at positions ``s..L-2``, i.e. for tokens ``s+1..L-1``; the entry
for token ``s`` is a ``None`` pad, or absent in older releases). Starting one position before
the response therefore covers every response token, and the trailing ``len(response_ids)``
entries are exactly ``log p(response_ids[j] | teacher_prompt + response_ids[:j])`` under
either convention. Fewer entries, or a missing value inside the span, is an error; a test
checks the alignment against the model's own forward pass through the embedded engine.

Weight updates: when slime pauses the engine to load new weights, SGLang ends a scoring call
with ``finish_reason: abort`` and the log-probs computed so far (too few). Such an answer is
never aligned: the call is sent again under the gateway's own ``ResumePolicy`` for aborted
generation (back-off from 0.05 s doubling up to its ``max_backoff``), until the engine scores
it; an engine that keeps aborting for ``abort_stall_s`` makes the teacher unavailable
(``JudgeUnavailable``: the turn is retried later, never dropped). The call carries the turn's
session as its routing key (``X-SMG-Routing-Key``), so it reaches the engine that holds the
session's prefix.

Temperature: by default the turn's own sampling temperature (the student's log-prob
convention of engine/protocol.py, so teacher and rollout log-probs are comparable); a fixed
value may be configured. Which engine is the teacher (frozen reference or current policy)
is the caller's choice of ``engine``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slime_openclaw.engine.protocol import Engine, GenerateOutput, GenerateRequest, SamplingParams
from slime_openclaw.errors import JudgeError
from slime_openclaw.gateway.generation import ResumePolicy
from slime_openclaw.signals.judge import JudgeUnavailable
from slime_openclaw.signals.judge_backends import ChatRendererLike, RetryPolicy, call_with_retries
from slime_openclaw.types import FinishReason, Message, Turn

log = logging.getLogger(__name__)


HINT_MARKER = "[Hint learned from hindsight]"
"""The line that introduces a hint inside the teacher context."""


class HintPlacement(str, enum.Enum):
    """Where the hint goes in the teacher context."""

    USER_APPEND = "user_append"
    SYSTEM = "system"


def _append_text(content: Any, addition: str) -> Any:
    if isinstance(content, list):
        return [*content, {"type": "text", "text": addition}]
    text = "" if content is None else str(content)
    return f"{text}\n\n{addition}" if text else addition


def add_hint(
    messages: tuple[Message, ...] | list[Message], hint: str, placement: HintPlacement = HintPlacement.USER_APPEND
) -> list[Message]:
    """A copy of ``messages`` with ``hint`` placed as the module docstring says."""
    result = [dict(m) for m in messages]
    note = f"{HINT_MARKER}\n{hint}"
    if placement is HintPlacement.USER_APPEND:
        for index in range(len(result) - 1, -1, -1):
            if result[index].get("role") == "user":
                result[index]["content"] = _append_text(result[index].get("content"), note)
                return result
    if result and result[0].get("role") == "system":
        result[0]["content"] = _append_text(result[0].get("content"), note)
        return result
    return [{"role": "system", "content": note}, *result]


@dataclass(frozen=True)
class TeacherResult:
    """Teacher log-probs aligned one-to-one with a turn's response ids."""

    log_probs: tuple[float, ...]
    """``log pi_teacher(response_ids[j] | teacher_prompt + response_ids[:j])``."""
    prompt_ids: tuple[int, ...]
    """The rendered teacher context."""
    topk_ids: tuple[tuple[int, ...], ...] | None = None
    """Per response position, the teacher's top-K token ids (top-K enabled only)."""
    topk_log_probs: tuple[tuple[float, ...], ...] | None = None
    """Per response position, the matching top-K log-probs."""
    weight_version: int = 0
    """The teacher engine's weight version when it scored."""


def align_teacher_output(
    output: GenerateOutput, response_len: int, top_k: int
) -> tuple[tuple[float, ...], tuple[tuple[int, ...], ...] | None, tuple[tuple[float, ...], ...] | None]:
    """Response-aligned (log-probs, top-K ids, top-K log-probs) from a scoring output."""
    if response_len == 0:
        empty: tuple[()] | None = () if top_k > 0 else None
        return (), empty, empty
    values = output.input_log_probs[-response_len:]
    if len(values) != response_len or any(v is None or math.isnan(v) for v in values):
        raise JudgeError(
            f"teacher returned {len(output.input_log_probs)} input log-probs with gaps; need {response_len}"
        )
    log_probs = tuple(float(v) for v in values if v is not None)
    if top_k <= 0:
        return log_probs, None, None
    rows = output.input_top_logprobs[-response_len:]
    if len(rows) != response_len or any(row is None or len(row) != top_k for row in rows):
        raise JudgeError(f"teacher returned incomplete top-{top_k} log-probs for the response span")
    ids = tuple(tuple(int(t) for _, t in row) for row in rows if row is not None)
    lps = tuple(tuple(float(lp) for lp, _ in row) for row in rows if row is not None)
    return log_probs, ids, lps


class TeacherScorer:
    """Scores a turn's response ids under the hint-enhanced teacher context."""

    def __init__(
        self,
        engine: Engine,
        renderer: ChatRendererLike,
        temperature: float | None = None,
        top_k: int = 0,
        placement: HintPlacement = HintPlacement.USER_APPEND,
        policy: RetryPolicy | None = None,
        abort_stall_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.abort_policy = ResumePolicy(stall_timeout=abort_stall_s, first_backoff=0.05)
        """Re-sending aborted scoring calls (weight updates): back-off, and the seconds of aborts
        after which the teacher is unavailable."""
        self.clock = clock
        self.aborts = 0
        """Scoring calls the engine aborted and that were sent again."""
        self.renderer = renderer
        self.temperature = temperature
        self.top_k = top_k
        self.placement = placement
        self.policy = policy or RetryPolicy(timeout_s=120.0)

    def temperature_for(self, turn: Turn) -> float:
        """The configured temperature, else the turn's own (1.0 when it recorded none)."""
        if self.temperature is not None:
            return self.temperature
        return float(turn.sampling.get("temperature", 1.0))

    def teacher_prompt_ids(self, turn: Turn, hint: str) -> list[int]:
        """The rendered teacher context for ``turn`` with ``hint`` added."""
        if not turn.messages:
            raise JudgeError("turn kept no messages: no teacher context can be built")
        messages = add_hint(turn.messages, hint, self.placement)
        tools = [dict(t) for t in turn.tools] or None
        return self.renderer.render_ids(messages, tools=tools, add_generation_prompt=True)

    def request(self, prompt_ids: list[int], turn: Turn) -> GenerateRequest:
        """The scoring request: prompt + response, nothing generated, log-probs covering the response."""
        return GenerateRequest(
            input_ids=tuple(prompt_ids) + tuple(turn.response_ids),
            sampling=SamplingParams(temperature=self.temperature_for(turn), max_new_tokens=0),
            return_logprob=True,
            logprob_start_len=len(prompt_ids) - 1,
            top_logprobs_num=max(self.top_k, 0),
            routing_key=turn.session_id,
        )

    async def score(self, turn: Turn, hint: str) -> TeacherResult:
        """Teacher log-probs for ``turn.response_ids``.

        Raises ``JudgeUnavailable`` when the engine could not be reached (retry later) and
        ``JudgeError`` when the turn cannot be scored (no messages, malformed answer).
        """
        prompt_ids = self.teacher_prompt_ids(turn, hint)
        if not prompt_ids:
            raise JudgeError("the teacher context rendered to no tokens")
        output = await self._scored(self.request(prompt_ids, turn))
        log_probs, ids, lps = align_teacher_output(output, len(turn.response_ids), self.top_k)
        return TeacherResult(
            log_probs=log_probs,
            prompt_ids=tuple(prompt_ids),
            topk_ids=ids,
            topk_log_probs=lps,
            weight_version=output.weight_version,
        )

    async def _scored(self, request: GenerateRequest) -> GenerateOutput:
        """The engine's answer to ``request``, sent again while the engine aborts it."""
        policy = self.abort_policy
        give_up = self.clock() + policy.stall_timeout
        backoff = policy.first_backoff
        while True:
            outcome = await call_with_retries(lambda: self.engine.generate(request), self.policy)
            if outcome.value is None:
                raise JudgeUnavailable(f"teacher engine: {outcome.error}")
            if outcome.value.finish_reason is not FinishReason.ABORT:
                return outcome.value
            self.aborts += 1
            if self.clock() >= give_up:
                raise JudgeUnavailable(f"teacher engine aborted scoring for {policy.stall_timeout:.0f}s (weight updates)")
            log.info("teacher scoring aborted by the engine (weight update); sending it again in %.2fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, policy.max_backoff)
