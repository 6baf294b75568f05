"""One request inside the embedded engine: its parameters, its KV cache and its decode step.

Per scheduler round a sequence is prefilled if it has no next-token logits yet, then
``sample`` draws one token and returns a ``Progress`` with what became known, then the
token is forwarded (alone with ``forward_pending``, or batched with other sequences by
engine/batching.py and handed back with ``set_decoded``). The scheduler (engine/runtime.py)
drives this on its thread; nothing here is thread-safe or touches asyncio.

Alignment of input log-probs (SGLang's): with ``logprob_start_len = s`` over an input of
``L`` tokens, ``input_logprobs`` has ``L - s`` entries for the tokens ``input_ids[s:]``;
entry 0 is ``None`` (SGLang always pads the first entry, even when ``s > 0``) and entry
``j >= 1`` is ``log p(input_ids[s + j] | input_ids[: s + j])``. ``s = -1`` means ``L - 1``.
The top-K lists follow the same alignment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from slime_openclaw.engine import kv, sampling
from slime_openclaw.engine.textstream import TextStream
from slime_openclaw.errors import RequestError

TopList = list[tuple[float, int]]


@dataclass(frozen=True)
class SamplingConfig:
    """Validated sampling parameters of one request (SGLang names and defaults)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    """Extra stop tokens, on top of the model's end-of-sequence ids."""
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    no_stop_trim: bool = False
    sampling_seed: int | None = None


@dataclass(frozen=True)
class RuntimeRequest:
    """A validated generate request as the runtime sees it."""

    rid: str
    input_ids: tuple[int, ...]
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    logprob_start_len: int = -1
    top_logprobs_num: int = 0


@dataclass
class Progress:
    """What one scheduler round (or an abort) produced for a request."""

    output_ids: list[int]
    output_logprobs: list[float]
    output_top: list[TopList]
    text: str
    """Text completed by these tokens (incremental detokenization)."""
    weight_version: int
    """Version of the weights whose forward pass gave these tokens' distribution."""
    completion_tokens: int
    """Output tokens so far, these included."""
    finish: dict[str, Any] | None = None
    """SGLang ``finish_reason`` object, on the last progress only."""
    full_text: str | None = None
    """The whole response text (trimmed as SGLang trims), on the last progress only."""
    input_logprobs: list[float | None] | None = None
    """On the first progress only; see the module docstring for the alignment."""
    input_top: list[TopList | None] | None = None


def validate_request(request: RuntimeRequest, *, vocab_size: int, context_length: int) -> None:
    """Raise ``RequestError`` for a request the model cannot serve (SGLang's checks)."""
    n = len(request.input_ids)
    if n == 0:
        raise RequestError("input_ids must not be empty", param="input_ids")
    if n >= context_length:
        raise RequestError(
            f"the input ({n} tokens) is longer than the model's context length ({context_length} tokens)",
            param="input_ids",
        )
    bad = [t for t in request.input_ids if not 0 <= t < vocab_size]
    if bad:
        raise RequestError(f"token id {bad[0]} outside the vocabulary (size {vocab_size})", param="input_ids")
    if request.logprob_start_len >= n:
        raise RequestError(
            f"logprob_start_len ({request.logprob_start_len}) must be smaller than the input length ({n})",
            param="logprob_start_len",
        )


def abort_reason(message: str) -> dict[str, Any]:
    """SGLang's ``FINISH_ABORT.to_json()`` shape."""
    return {"type": "abort", "message": message, "status_code": None, "err_type": None}


class Sequence:
    """The running state of one request: tokens so far, KV cache, sampler, text."""

    def __init__(self, request: RuntimeRequest, *, tokenizer: Any, eos_token_ids: frozenset[int], context_length: int):
        self.request = request
        self.rid = request.rid
        params = request.sampling
        self.tokens = list(request.input_ids)
        self.output_ids: list[int] = []
        self.cache: Any = None
        self.next_logits: torch.Tensor | None = None
        self.logits_version = 0
        self.pending_token: int | None = None
        """A sampled token not yet forwarded (between ``sample`` and ``set_decoded``)."""
        self.max_new_tokens = max(0, min(params.max_new_tokens, context_length - len(self.tokens)))
        self.stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))
        self.text = TextStream(tokenizer, skip_special_tokens=params.skip_special_tokens, stop=params.stop)
        self.generator = sampling.make_generator(params.sampling_seed)
        self._pending_input: tuple[list[float | None], list[TopList | None] | None] | None = None
        self._input_done = False
        self.created = time.monotonic()

    # -- forward passes -------------------------------------------------------------
    def drop_cache(self) -> None:
        """Forget the KV cache and next-token logits; the next round recomputes them (prefill)."""
        self.cache = None
        self.next_logits = None
        self.pending_token = None

    def _prefill(self, model: Any, version: int) -> None:
        from transformers import DynamicCache

        ids = torch.tensor([self.tokens], dtype=torch.long)
        want_input = not self._input_done
        start = self._start_len() if want_input else len(self.tokens) - 1
        keep = len(self.tokens) - start
        cache = DynamicCache() if self.max_new_tokens > 0 else None
        all_logits, self.cache = kv.forward(model, cache, input_ids=ids, logits_to_keep=keep)
        logits = all_logits[0]  # positions start .. L-1
        if want_input:
            self._pending_input = self._input_logprobs(logits, start)
            self._input_done = True
        self.next_logits = logits[-1]
        self.logits_version = version

    def _start_len(self) -> int:
        start = self.request.logprob_start_len
        return len(self.tokens) - 1 if start < 0 else start

    def _input_logprobs(self, logits: torch.Tensor, start: int) -> tuple[list[float | None], list[TopList | None] | None]:
        """Entry 0 is None; entry j is the log-prob of input token ``start + j``."""
        logp = sampling.log_probs(logits[:-1], self.request.sampling.temperature)
        targets = torch.tensor(self.tokens[start + 1 :], dtype=torch.long)
        values: list[float | None] = [None]
        values.extend(logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).tolist())
        top: list[TopList | None] | None = None
        k = self.request.top_logprobs_num
        if k > 0:
            top = [None]
            top.extend(sampling.top_pairs(row, k) for row in logp)
        return values, top

    # -- one unit of work ---------------------------------------------------------
    @property
    def needs_prefill(self) -> bool:
        """True until a forward pass has produced the next-token logits."""
        return self.next_logits is None

    def prefill(self, model: Any, version: int) -> None:
        """Run the whole sequence through the model (first time: with input log-probs)."""
        self._prefill(model, version)

    def sample(self) -> Progress:
        """Sample one token from the pending logits (or finish a scoring request).

        When the returned progress is not final, ``pending_token`` must be forwarded
        (``forward_pending`` or a batched step ending in ``set_decoded``) before the next call.
        """
        if self.max_new_tokens == 0:
            return self._with_input(self._finished({"type": "length", "length": 0}, [], [], [], ""))
        assert self.next_logits is not None, "sample() before prefill()"
        params = self.request.sampling
        logits = sampling.penalize_repetition(self.next_logits, self.output_ids, params.repetition_penalty)
        logp = sampling.log_probs(logits, params.temperature)
        token = sampling.choose_token(
            logp, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, min_p=params.min_p,
            generator=self.generator,
        )
        token_logprob = float(logp[token])
        top = [sampling.top_pairs(logp, self.request.top_logprobs_num)] if self.request.top_logprobs_num > 0 else []
        produced_version = self.logits_version
        self.output_ids.append(token)
        self.tokens.append(token)
        self.next_logits = None
        delta = self.text.push(token)
        finish = self._check_finish(token, delta)
        if finish is not None:
            return self._with_input(self._finished(finish, [token], [token_logprob], top, delta, produced_version))
        self.pending_token = token
        return self._with_input(Progress([token], [token_logprob], top, delta, produced_version, len(self.output_ids)))

    def forward_pending(self, model: Any, version: int) -> None:
        """Forward the sampled token alone, extending this sequence's KV cache."""
        logits, cache = kv.forward(model, self.cache, input_ids=torch.tensor([[self.pending_token]], dtype=torch.long))
        self.set_decoded(logits[0, -1], cache, version)

    def set_decoded(self, logits: torch.Tensor, cache: Any, version: int) -> None:
        """Install the result of forwarding ``pending_token`` (alone or in a batch)."""
        self.next_logits, self.cache, self.logits_version = logits, cache, version
        self.pending_token = None

    def _check_finish(self, token: int, delta: str) -> dict[str, Any] | None:
        """SGLang's order: length first, then a stop token, then a stop string."""
        if len(self.output_ids) >= self.max_new_tokens:
            return {"type": "length", "length": self.max_new_tokens}
        if token in self.stop_ids:
            return {"type": "stop", "matched": token}
        matched = self.text.matched_stop(delta)
        if matched is not None:
            return {"type": "stop", "matched": matched}
        return None

    def _finished(
        self,
        finish: dict[str, Any],
        ids: list[int],
        logprobs: list[float],
        top: list[TopList],
        delta: str,
        version: int | None = None,
    ) -> Progress:
        trim = not self.request.sampling.no_stop_trim and finish.get("type") == "stop"
        matched = finish.get("matched")
        full = self.text.final_text(
            trim_stop=matched if trim and isinstance(matched, str) else None,
            drop_last_token=trim and isinstance(matched, int),
        )
        self.drop_cache()
        return Progress(
            ids, logprobs, top, delta, self.logits_version if version is None else version,
            len(self.output_ids), finish=finish, full_text=full,
        )

    def abort(self, message: str, version: int) -> Progress:
        """The last progress of a request ended from outside: no new tokens, finish abort."""
        progress = self._finished(abort_reason(message), [], [], [], "", version)
        return self._with_input(progress)

    def _with_input(self, progress: Progress) -> Progress:
        if self._pending_input is not None:
            progress.input_logprobs, progress.input_top = self._pending_input
            self._pending_input = None
        return progress
