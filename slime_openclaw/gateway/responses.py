"""OpenAI chat-completions responses, stream chunks, SSE framing and error bodies.

Pure builders of JSON-ready dicts and SSE bytes, plus ``StopTrimmer`` which hides a client
``stop`` sequence from the returned text (the recorded token ids keep it: the engine runs
with ``no_stop_trim``). No I/O, no parsing of model output, no recording.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from slime_openclaw.errors import OpenClawError
from slime_openclaw.types import FinishReason, Message

SSE_DONE = b"data: [DONE]\n\n"


def completion_id() -> str:
    """A fresh ``chatcmpl-`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def client_finish_reason(finish: FinishReason, has_tool_calls: bool) -> str:
    """The OpenAI finish reason: ``tool_calls`` when the reply calls tools, else stop/length."""
    if finish is FinishReason.LENGTH:
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def logprobs_content(ids: Sequence[int], log_probs: Sequence[float], token_text: Callable[[int], str]) -> dict:
    """The OpenAI ``logprobs`` object for generated tokens (no alternatives)."""
    content = []
    for token_id, logprob in zip(ids, log_probs, strict=True):
        text = token_text(token_id)
        content.append({"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8")), "top_logprobs": []})
    return {"content": content, "refusal": None}


def chat_completion(
    *, cid: str, created: int, model: str, message: Message, finish_reason: str,
    usage_obj: dict[str, int], logprobs: dict | None,
) -> dict[str, Any]:
    """A complete (non-streamed) ``chat.completion`` object."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
        "usage": usage_obj,
    }


def chunk(
    *, cid: str, created: int, model: str, delta: dict[str, Any],
    finish_reason: str | None = None, logprobs: dict | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }


def usage_chunk(*, cid: str, created: int, model: str, usage_obj: dict[str, int]) -> dict[str, Any]:
    """The final chunk of ``stream_options.include_usage``: no choices, only usage."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage_obj}


def sse(data: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    """A JSON response (compact, UTF-8)."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


_json_bytes = orjson.dumps


class ChunkEncoder:
    """SSE events of one completion's chunks, byte for byte ``sse(chunk(...))``, with the
    part every chunk repeats (id, object, created, model) serialized once."""

    def __init__(self, *, cid: str, created: int, model: str):
        head = orjson.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model})
        self._head = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'

    def encode(self, delta: dict[str, Any], *, finish_reason: str | None = None,
               logprobs: dict | None = None) -> bytes:
        """The ``data:`` event of one chunk (a single choice)."""
        return b"".join((self._head, _json_bytes(delta), b',"logprobs":', _json_bytes(logprobs),
                         b',"finish_reason":', _json_bytes(finish_reason), b"}]}\n\n"))


def error_body(error: OpenClawError) -> dict[str, Any]:
    """The OpenAI error JSON of an error."""
    return error.to_openai()


def sse_error(error: OpenClawError) -> bytes:
    """An error inside a stream: an ``error`` event the openai SDK raises as ``APIError``."""
    return b"event: error\n" + sse(error_body(error))


class StopTrimmer:
    """Cuts returned text at the first client stop sequence, holding back possible prefixes.

    ``feed`` returns the text that is safe to send now; ``flush`` returns what was held back
    once generation ended without completing a stop sequence.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return the part that can be sent."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buffer = self._held + text
        hits = [i for i in (buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return buffer[: min(hits)]
        keep = self._longest_prefix_suffix(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """The held-back text, when generation ended."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_prefix_suffix(self, buffer: str) -> int:
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:n]):
                    best = n
                    break
        return best
