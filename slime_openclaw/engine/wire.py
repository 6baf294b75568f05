"""SGLang's native ``/generate`` JSON, both ways, for the embedded engine's server.

``parse_generate`` validates a request body into a ``RuntimeRequest`` (unknown or wrongly
typed fields raise ``RequestError`` -> HTTP 400, never silently dropped). ``ResponseBuilder``
turns the runtime's ``Progress`` items into SGLang-shaped bodies: one per streamed chunk
(incremental, like SGLang with ``--incremental-streaming-output``) or one final body.

Shapes (checked against sgl-project/sglang ``managers/tokenizer_manager.py``,
``managers/schedule_batch.py``, ``managers/scheduler_output_processor_mixin.py``):
``{"text", "output_ids", "meta_info": {"id", "finish_reason", "prompt_tokens",
"weight_version", "completion_tokens", "cached_tokens", "e2e_latency",
"output_token_logprobs": [[logprob, token_id, text|null], ...], "input_token_logprobs",
"input_top_logprobs": [null | [[logprob, token_id, text|null], ...], ...],
"output_top_logprobs"}}``; the logprob keys only with ``return_logprob``, the top ones
only with ``top_logprobs_num > 0``. ``weight_version`` is a string, as in SGLang.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from slime_openclaw.engine.sequence import Progress, RuntimeRequest, SamplingConfig, TopList
from slime_openclaw.errors import RequestError

_TOP_FIELDS = {
    "input_ids", "sampling_params", "return_logprob", "logprob_start_len", "top_logprobs_num", "stream", "rid",
    "return_text_in_logprobs",
}
_SAMPLING_FIELDS = {
    "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "stop", "stop_token_ids", "ignore_eos",
    "skip_special_tokens", "no_stop_trim", "sampling_seed",
}
DEFAULT_MAX_NEW_TOKENS = 128
"""SGLang's default when ``max_new_tokens`` is absent or null."""


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(f"'{key}' must be a boolean", param=key)
    return value


def _int(body: dict[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{key}' must be an integer", param=key)
    return value


def _float(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"'{key}' must be a number", param=key)
    return float(value)


def _int_list(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise RequestError(f"'{key}' must be a list of integers (one request per call)", param=key)
    return tuple(value)


def _reject_unknown(body: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        hint = " (this engine takes input_ids, not text)" if "text" in unknown else ""
        raise RequestError(f"unsupported {where} field '{unknown[0]}'{hint}", param=unknown[0])


def parse_sampling(raw: Any) -> SamplingConfig:
    """Validate ``sampling_params``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError("'sampling_params' must be an object", param="sampling_params")
    _reject_unknown(raw, _SAMPLING_FIELDS, "sampling_params")
    temperature = _float(raw, "temperature", 1.0)
    top_p = _float(raw, "top_p", 1.0)
    top_k = _int(raw, "top_k", -1)
    max_new = _int(raw, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    assert top_k is not None and max_new is not None
    if temperature < 0:
        raise RequestError("temperature must be non-negative", param="temperature")
    if not 0 < top_p <= 1:
        raise RequestError("top_p must be in (0, 1]", param="top_p")
    if top_k < 1 and top_k != -1:
        raise RequestError("top_k must be -1 (disabled) or at least 1", param="top_k")
    min_p = _float(raw, "min_p", 0.0)
    if not 0 <= min_p <= 1:
        raise RequestError("min_p must be in [0, 1]", param="min_p")
    repetition_penalty = _float(raw, "repetition_penalty", 1.0)
    if not 0 < repetition_penalty <= 2:
        raise RequestError("repetition_penalty must be in (0, 2]", param="repetition_penalty")
    if max_new < 0:
        raise RequestError("max_new_tokens must be non-negative", param="max_new_tokens")
    stop = raw.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise RequestError("'stop' must be a non-empty string or a list of them", param="stop")
    return SamplingConfig(
        temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, repetition_penalty=repetition_penalty,
        max_new_tokens=max_new, stop=tuple(stop),
        stop_token_ids=_int_list(raw.get("stop_token_ids") or [], "stop_token_ids"),
        ignore_eos=_bool(raw, "ignore_eos", False),
        skip_special_tokens=_bool(raw, "skip_special_tokens", True),
        no_stop_trim=_bool(raw, "no_stop_trim", False),
        sampling_seed=_int(raw, "sampling_seed", None),
    )


class GenerateCall:
    """A parsed ``/generate`` body: the runtime request plus the reply options."""

    def __init__(self, body: Any):
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        _reject_unknown(body, _TOP_FIELDS, "request")
        if "input_ids" not in body:
            raise RequestError("'input_ids' is required", param="input_ids")
        input_ids = _int_list(body["input_ids"], "input_ids")
        rid = body.get("rid") or uuid.uuid4().hex
        if not isinstance(rid, str):
            raise RequestError("'rid' must be a string", param="rid")
        start = _int(body, "logprob_start_len", -1)
        top_n = _int(body, "top_logprobs_num", 0)
        assert start is not None and top_n is not None
        if start < -1:
            raise RequestError("logprob_start_len must be -1 or a position of the input", param="logprob_start_len")
        if top_n < 0:
            raise RequestError("top_logprobs_num must be non-negative", param="top_logprobs_num")
        self.stream = _bool(body, "stream", False)
        self.return_logprob = _bool(body, "return_logprob", False)
        self.text_in_logprobs = _bool(body, "return_text_in_logprobs", False)
        self.request = RuntimeRequest(
            rid=rid, input_ids=input_ids, sampling=parse_sampling(body.get("sampling_params")),
            logprob_start_len=start, top_logprobs_num=top_n,
        )


class ResponseBuilder:
    """Builds SGLang bodies from the ``Progress`` items of one request."""

    def __init__(self, call: GenerateCall, token_text: Any = None):
        self.call = call
        self._token_text = token_text if call.text_in_logprobs else None
        self._started = time.monotonic()
        self._ids: list[int] = []
        self._logprobs: list[float] = []
        self._top: list[TopList] = []
        self._text = ""
        self._input_logprobs: list[float | None] = []
        self._input_top: list[TopList | None] = []
        self._version = 0
        self._finish: dict[str, Any] | None = None

    def _entry(self, logprob: float | None, token_id: int) -> list[Any]:
        return [logprob, token_id, self._token_text(token_id) if self._token_text else None]

    def _tops(self, rows: list[TopList | None] | list[TopList]) -> list[Any]:
        return [None if row is None else [self._entry(lp, tid) for lp, tid in row] for row in rows]

    def add(self, progress: Progress) -> None:
        """Accumulate one progress item."""
        self._ids += progress.output_ids
        self._logprobs += progress.output_logprobs
        self._top += progress.output_top
        self._text = progress.full_text if progress.full_text is not None else self._text + progress.text
        if progress.input_logprobs is not None:
            self._input_logprobs = progress.input_logprobs
            self._input_top = progress.input_top or []
        self._version = progress.weight_version
        self._finish = progress.finish

    def _meta(self, ids: list[int], logprobs: list[float], top: list[TopList]) -> dict[str, Any]:
        request = self.call.request
        meta: dict[str, Any] = {
            "id": request.rid,
            "finish_reason": self._finish,
            "prompt_tokens": len(request.input_ids),
            "weight_version": str(self._version),
            "completion_tokens": len(self._ids),
            "cached_tokens": 0,
            "e2e_latency": time.monotonic() - self._started,
        }
        if self.call.return_logprob:
            start = request.logprob_start_len if request.logprob_start_len >= 0 else len(request.input_ids) - 1
            input_ids = request.input_ids[start:] if self._input_logprobs else ()
            meta["input_token_logprobs"] = [self._entry(lp, t) for lp, t in zip(self._input_logprobs, input_ids, strict=True)]
            meta["output_token_logprobs"] = [self._entry(lp, t) for lp, t in zip(logprobs, ids, strict=True)]
            if request.top_logprobs_num > 0:
                meta["input_top_logprobs"] = self._tops(self._input_top)
                meta["output_top_logprobs"] = self._tops(top)
        return meta

    def chunk(self, progress: Progress) -> dict[str, Any]:
        """Accumulate ``progress`` and return its incremental stream chunk."""
        self.add(progress)
        meta = self._meta(progress.output_ids, progress.output_logprobs, progress.output_top)
        return {"text": progress.text, "output_ids": list(progress.output_ids), "meta_info": meta}

    def final(self) -> dict[str, Any]:
        """The non-streaming body of everything accumulated."""
        return {"text": self._text, "output_ids": list(self._ids), "meta_info": self._meta(self._ids, self._logprobs, self._top)}
