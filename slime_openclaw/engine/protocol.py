"""The seam between token-level callers (gateway, teacher, judges) and an inference engine.

An engine speaks the subset of SGLang's native ``/generate`` protocol listed in
``shared/docs/slime-contract.md``; ``EngineClient`` (engine/client.py) is the one
implementation used for both SGLang and the embedded engine. Callers depend only on the
``Engine`` protocol below, so tests can put any faithful stand-in behind it.

Log-prob convention (shared by the engine, the teacher and the trainer): the log-prob of
token ``t`` is ``log_softmax(logits / T)[t]`` where ``T`` is the request's temperature
(``T = 1`` when the temperature is 0, i.e. greedy), before top-p/top-k truncation. This is
what slime's ``get_log_probs_and_entropy`` computes with ``--rollout-temperature T``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from slime_openclaw.types import FinishReason


@dataclass(frozen=True)
class SamplingParams:
    """SGLang ``sampling_params`` fields this package uses."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    """Drop tokens below ``min_p`` times the top token's probability (0: off)."""
    repetition_penalty: float = 1.0
    """Divide positive (multiply negative) logits of tokens already generated (1: off)."""
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    skip_special_tokens: bool = False
    no_stop_trim: bool = True
    sampling_seed: int | None = None
    """Seed of the request's sampler (SGLang's ``sampling_seed``); None: not reproducible."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence tokens (SGLang's ``ignore_eos``; benchmarks, tests)."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_new_tokens": self.max_new_tokens,
            "stop": list(self.stop),
            "stop_token_ids": list(self.stop_token_ids),
            "skip_special_tokens": self.skip_special_tokens,
            "no_stop_trim": self.no_stop_trim,
        }
        if self.min_p:
            body["min_p"] = self.min_p
        if self.repetition_penalty != 1.0:
            body["repetition_penalty"] = self.repetition_penalty
        if self.sampling_seed is not None:
            body["sampling_seed"] = self.sampling_seed
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


@dataclass(frozen=True)
class GenerateRequest:
    """One ``POST /generate`` call, token-in."""

    input_ids: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    return_logprob: bool = True
    logprob_start_len: int = -1
    """First input position whose log-prob is returned (-1: none; SGLang semantics)."""
    top_logprobs_num: int = 0
    rid: str | None = None
    """Request id, usable with ``/abort_request``."""
    routing_key: str | None = None
    """The session this call belongs to: sent as the ``X-SMG-Routing-Key`` header (slime's key for
    cache-affine routing through the SGLang router), never in the body; None: no header."""

    def to_json(self, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "input_ids": list(self.input_ids),
            "sampling_params": self.sampling.to_json(),
            "return_logprob": self.return_logprob,
            "logprob_start_len": self.logprob_start_len,
            "top_logprobs_num": self.top_logprobs_num,
            "stream": stream,
        }
        if self.rid is not None:
            body["rid"] = self.rid
        return body


@dataclass(frozen=True)
class GenerateOutput:
    """The complete result of one ``/generate`` call (or the sum of its stream)."""

    output_ids: tuple[int, ...]
    output_log_probs: tuple[float, ...]
    """One per output token (empty if ``return_logprob`` was false)."""
    finish_reason: FinishReason
    weight_version: int
    prompt_tokens: int
    text: str = ""
    input_log_probs: tuple[float | None, ...] = ()
    """Log-probs of input positions from ``logprob_start_len`` on (None where undefined)."""
    input_top_logprobs: tuple[tuple[tuple[float, int], ...] | None, ...] = ()
    """Per input position from ``logprob_start_len``: the top-K (log-prob, token id) pairs."""
    output_top_logprobs: tuple[tuple[tuple[float, int], ...], ...] = ()


@dataclass(frozen=True)
class GenerateDelta:
    """Tokens that arrived since the previous streamed chunk."""

    output_ids: tuple[int, ...]
    output_log_probs: tuple[float, ...]
    weight_version: int
    finish_reason: FinishReason | None = None
    """Set on the last delta of the stream only."""
    prompt_tokens: int = 0


class Engine(Protocol):
    """The slice of an engine that token-level callers use."""

    async def generate(self, request: GenerateRequest) -> GenerateOutput:
        """Generate (or, with ``max_new_tokens=0``, only score) and return when done."""
        ...

    def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateDelta]:
        """Generate, yielding token deltas as they are produced."""
        ...

    async def weight_version(self) -> int:
        """The engine's current weight version."""
        ...

    async def health(self) -> bool:
        """True when the engine answers."""
        ...
