"""Turning the exact generated token ids into an OpenAI assistant message, incrementally.

``ResponseParser.feed(ids)`` decodes only complete characters (bytes of a character split
across byte-level tokens are held back, never emitted as U+FFFD halves), splits the text
into reasoning (``<think>...</think>``), content and tool calls (``<tool_call>{json}</tool_call>``,
markup matched in the decoded text, so a tag spelled by several ordinary tokens is found
too), and returns the deltas to stream. ``finish()`` gives the whole message; the deltas
of ``feed`` and ``close`` always concatenate to it. Decoding stops at the first stop token
(``<|im_end|>``, ``<|endoftext|>``), which never reaches the content.

Content and reasoning are whitespace-trimmed at both ends (the template puts newlines
around them). A ``<tool_call>`` block whose body is not a JSON object with a string
``name`` (and object ``arguments``) stays in the content verbatim. This module never
re-tokenizes text and does not know about HTTP or the engine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.chat.template import (
    THINK_CLOSE,
    THINK_OPEN,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    stop_token_ids,
)
from slime_openclaw.types import FinishReason


@dataclass(frozen=True)
class ToolCallDelta:
    """One complete tool call, streamed as a single OpenAI tool-call delta."""

    index: int
    id: str
    name: str
    arguments: str
    """The arguments as a JSON object string."""

    def to_openai(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ParsedDelta:
    """A piece of the response: exactly one of the fields is set."""

    content: str | None = None
    reasoning_content: str | None = None
    tool_call: ToolCallDelta | None = None

    def to_openai(self) -> dict[str, Any]:
        """The ``choices[0].delta`` object of a chat.completion.chunk."""
        if self.tool_call is not None:
            return {"tool_calls": [self.tool_call.to_openai()]}
        if self.reasoning_content is not None:
            return {"reasoning_content": self.reasoning_content}
        return {"content": self.content or ""}


@dataclass(frozen=True)
class ParsedMessage:
    """The assistant message parsed from a whole response."""

    content: str | None
    """None when empty and there are tool calls; "" when empty otherwise."""
    reasoning_content: str | None
    """None when the response had no reasoning block."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """OpenAI tool calls: ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
    finish_reason: str = "stop"
    """OpenAI finish reason: ``stop``, ``length`` or ``tool_calls``."""

    def to_openai(self) -> dict[str, Any]:
        """The ``choices[0].message`` object of a chat.completion."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def openai_finish_reason(reason: FinishReason | str, has_tool_calls: bool) -> str:
    """Map an engine finish reason to OpenAI's. An aborted generation reports ``stop``:
    the gateway resumes aborted requests and should not finish a message on an abort."""
    reason = FinishReason(reason)
    if reason is FinishReason.LENGTH:
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def parse_tool_call_body(body: str) -> tuple[str, str] | None:
    """``(name, arguments JSON)`` from a tool-call block body, or None when it is not a valid call."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return obj["name"], json.dumps(args, ensure_ascii=False)


def text_decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """``ids -> text`` as ``tokenizer.decode(ids, skip_special_tokens=False,
    clean_up_tokenization_spaces=False)``, calling the Rust backend directly when the
    tokenizer's decoding is the stock one (no per-call Python overhead of transformers)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    stock = _stock_decode_methods()
    if backend is not None and stock is not None and (type(tokenizer).decode, type(tokenizer)._decode) == stock:
        decode = backend.decode
        return lambda ids: decode(ids, skip_special_tokens=False)
    return lambda ids: str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _stock_decode_methods() -> tuple[Any, Any] | None:
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:
        return None
    return TokenizersBackend.decode, TokenizersBackend._decode


def token_texts(tokenizer: Any, *, max_entries: int = 1 << 17) -> Callable[[int], str | None] | None:
    """``id -> text`` for tokenizers whose decoding is a plain concatenation, else None.

    With the stock decoding (see ``text_decoder``) and a ``ByteLevel`` decoder, the text
    of an id sequence is the UTF-8 decoding of its tokens' bytes laid end to end; so where
    every token decodes alone to valid UTF-8 (no U+FFFD), the text of the sequence is the
    concatenation of the tokens' texts. The function returns that text, or None for a
    token that does not decode cleanly alone (part of a character). Cached per id (LRU).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    stock = _stock_decode_methods()
    if backend is None or stock is None or (type(tokenizer).decode, type(tokenizer)._decode) != stock:
        return None
    from tokenizers.decoders import ByteLevel

    if type(backend.decoder) is not ByteLevel:
        return None
    decode = backend.decode

    @functools.lru_cache(maxsize=max_entries)
    def text(token_id: int) -> str | None:
        out: str = decode([token_id], skip_special_tokens=False)
        return None if "\ufffd" in out else out

    return text


def prompt_opens_reasoning(tokenizer: Any, prompt_ids: Sequence[int], *,
                           decode: Callable[[list[int]], str] | None = None) -> bool:
    """True when the prompt ends inside an opened ``<think>`` (some templates prefill it);
    pass the result as ``ResponseParser(start_in_reasoning=...)``. ``decode``: a
    ``text_decoder(tokenizer)`` made once, to save building it per call."""
    tail = (decode or text_decoder(tokenizer))([int(i) for i in prompt_ids[-4:]])
    return tail.rstrip().endswith(THINK_OPEN)


def _partial_suffix(text: str, tags: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``tags``."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:n]):
                best = n
                break
    return best


class IncrementalDecoder:
    """Decodes a growing id sequence to text, emitting only complete characters.

    The window ``ids[prefix:]`` is re-decoded and compared with ``ids[prefix:read]`` (the
    text already emitted before ``read``), so tokenizers whose decoding depends on the
    previous token (leading-space handling) come out right. While the window ends in an
    incomplete character (decoded as trailing U+FFFD), the stable characters before it
    are emitted and the rest waits for more bytes.

    ``texts`` (``token_texts(tokenizer)``, for concatenating decoders) is a shortcut with
    the same result and state, without the two window decodes: when nothing is held back
    and every new id decodes cleanly alone, the new text is their texts joined (valid
    UTF-8 appended to any bytes never changes how those bytes decode, nor is changed).
    """

    def __init__(self, tokenizer: Any, *, decode: Callable[[list[int]], str] | None = None,
                 texts: Callable[[int], str | None] | None = None):
        self._decode = decode or text_decoder(tokenizer)
        self._texts = texts
        self._ids: list[int] = []
        self._prefix = 0  # start of the window re-decoded for context
        self._read = 0  # the text of ids[:read] is completely emitted
        self._extra = 0  # characters emitted beyond ids[:read] while the window was incomplete

    def feed(self, ids: Sequence[int]) -> str:
        """Append ids and return the new text that is complete so far."""
        new = [int(i) for i in ids]
        if self._texts is not None and new and self._read == len(self._ids):
            joined = self._joined(new)
            if joined is not None:
                self._ids.extend(new)
                self._prefix, self._read = self._read, len(self._ids)
                return joined
        self._ids.extend(new)
        return self._advance(final=False)

    def _joined(self, ids: list[int]) -> str | None:
        """The text of ``ids`` as the tokens' texts joined, or None when one is not clean."""
        assert self._texts is not None
        texts = [self._texts(i) for i in ids]
        return None if None in texts else "".join(texts)  # type: ignore[arg-type]

    def flush(self) -> str:
        """Return whatever is still held back (incomplete bytes decode to U+FFFD here)."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix:self._read])
        new = self._decode(self._ids[self._prefix:])[len(before) + self._extra:]
        if final or not new.endswith("\ufffd"):
            self._prefix, self._read, self._extra = self._read, len(self._ids), 0
            return new
        stable = new.rstrip("\ufffd")
        self._extra += len(stable)
        return stable


class _Trimmed:
    """A text channel whose emitted pieces concatenate to the whole text stripped of outer whitespace."""

    def __init__(self) -> None:
        self.started = False
        self._pending = ""
        self.text = ""

    def push(self, piece: str) -> str:
        if not self.started:
            piece = piece.lstrip()
            if not piece:
                return ""
            self.started = True
        whole = self._pending + piece
        out = whole.rstrip()
        self._pending = whole[len(out):]
        self.text += out
        return out


class ResponseParser:
    """Incremental parser of one assistant response, from its exact token ids.

    ``call_id_seed`` makes tool-call ids deterministic (``call_`` + a hash of seed and
    index); without it a random seed is drawn. ``start_in_reasoning`` is for templates
    whose generation prompt already opens ``<think>``. ``stop_ids`` (default: the
    tokenizer's), ``decode`` (default: ``text_decoder(tokenizer)``) and ``texts`` (default:
    none; ``token_texts(tokenizer)`` saves decoding per feed) may be computed once and
    shared by many parsers.
    """

    def __init__(self, tokenizer: Any, *, call_id_seed: str | None = None, start_in_reasoning: bool = False,
                 stop_ids: Sequence[int] | None = None, decode: Callable[[list[int]], str] | None = None,
                 texts: Callable[[int], str | None] | None = None):
        self._decoder = IncrementalDecoder(tokenizer, decode=decode, texts=texts)
        self._stop_ids = frozenset(stop_token_ids(tokenizer) if stop_ids is None else stop_ids)
        self._seed = call_id_seed if call_id_seed is not None else secrets.token_hex(8)
        self._mode = "reasoning" if start_in_reasoning else "content"
        self._saw_reasoning = start_in_reasoning
        self._buf = ""
        self._tool_body = ""
        self._content = _Trimmed()
        self._reasoning = _Trimmed()
        self._tool_calls: list[ToolCallDelta] = []
        self.stopped = False
        """True once a stop token was seen (later ids are ignored)."""
        self._closed = False

    def feed(self, token_ids: Sequence[int]) -> list[ParsedDelta]:
        """Consume generated ids; return the deltas that are certain so far."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        ids = [] if self.stopped else [int(i) for i in token_ids]
        if not self._stop_ids.isdisjoint(ids):
            ids = ids[:next(k for k, i in enumerate(ids) if i in self._stop_ids)]
            self.stopped = True
        text = self._decoder.feed(ids)
        if self._mode == "content" and not self._buf and "<" not in text:
            # the common step, as ``_drain`` would take it: plain content, nothing held back
            piece = self._content.push(text)
            return [ParsedDelta(content=piece)] if piece else []
        self._buf += text
        return self._drain(final=False)

    def close(self) -> list[ParsedDelta]:
        """End of the response: return the deltas held back until now (idempotent)."""
        if self._closed:
            return []
        self._buf += self._decoder.flush()
        deltas = self._drain(final=True)
        self._closed = True
        return deltas

    def finish(self, finish_reason: FinishReason | str = FinishReason.STOP) -> ParsedMessage:
        """Close and return the whole message (the sum of every delta)."""
        self.close()
        tool_calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                      for c in self._tool_calls]
        content: str | None = self._content.text
        if not content and tool_calls:
            content = None
        return ParsedMessage(
            content=content,
            reasoning_content=self._reasoning.text if self._saw_reasoning else None,
            tool_calls=tool_calls,
            finish_reason=openai_finish_reason(finish_reason, bool(tool_calls)),
        )

    def _drain(self, *, final: bool) -> list[ParsedDelta]:
        out: list[ParsedDelta] = []
        while self._step(out, final):
            pass
        if final and self._mode == "tool":
            body, self._tool_body, self._mode = self._tool_body, "", "content"
            self._end_tool_call(body, closed=False, out=out)
        return _merge(out)

    def _step(self, out: list[ParsedDelta], final: bool) -> bool:
        """Consume part of the buffer; True when a tag switched the mode (call again)."""
        if self._mode != "tool" and "<" not in self._buf:  # every tag starts with "<": nothing to hold back
            (self._emit_reasoning if self._mode == "reasoning" else self._emit_content)(self._buf, out)
            self._buf = ""
            return False
        if self._mode == "reasoning":
            return self._scan(out, final, (THINK_CLOSE,), self._emit_reasoning)
        if self._mode == "tool":
            self._tool_body += self._buf
            self._buf = ""
            end = self._tool_body.find(TOOL_CALL_CLOSE)
            if end < 0:
                return False
            body, self._buf = self._tool_body[:end], self._tool_body[end + len(TOOL_CALL_CLOSE):]
            self._tool_body = ""
            self._mode = "content"
            self._end_tool_call(body, closed=True, out=out)
            return True
        # A reasoning block may only open the response (after whitespace at most).
        think_at = self._buf.find(THINK_OPEN)
        if think_at < 0:
            think_at = len(self._buf) - _partial_suffix(self._buf, (THINK_OPEN,))
        think_allowed = not (self._saw_reasoning or self._content.started or self._tool_calls) and (
            not self._buf[:think_at].strip())
        tags = (TOOL_CALL_OPEN, THINK_OPEN) if think_allowed else (TOOL_CALL_OPEN,)
        return self._scan(out, final, tags, self._emit_content)

    def _scan(self, out: list[ParsedDelta], final: bool, tags: Sequence[str],
              emit: Callable[[str, list[ParsedDelta]], None]) -> bool:
        hits = [(i, tag) for tag in tags if (i := self._buf.find(tag)) >= 0]
        if hits:
            index, tag = min(hits)
            emit(self._buf[:index], out)
            self._buf = self._buf[index + len(tag):]
            self._mode = {THINK_OPEN: "reasoning", THINK_CLOSE: "content", TOOL_CALL_OPEN: "tool"}[tag]
            self._saw_reasoning = self._saw_reasoning or tag == THINK_OPEN
            return True
        keep = 0 if final else _partial_suffix(self._buf, tags)
        emit(self._buf[: len(self._buf) - keep], out)
        self._buf = self._buf[len(self._buf) - keep:]
        return False

    def _emit_content(self, text: str, out: list[ParsedDelta]) -> None:
        if piece := self._content.push(text):
            out.append(ParsedDelta(content=piece))

    def _emit_reasoning(self, text: str, out: list[ParsedDelta]) -> None:
        if piece := self._reasoning.push(text):
            out.append(ParsedDelta(reasoning_content=piece))

    def _end_tool_call(self, body: str, *, closed: bool, out: list[ParsedDelta]) -> None:
        parsed = parse_tool_call_body(body)
        if parsed is None:
            self._emit_content(TOOL_CALL_OPEN + body + (TOOL_CALL_CLOSE if closed else ""), out)
            return
        index = len(self._tool_calls)
        digest = hashlib.sha256(f"{self._seed}:{index}".encode()).hexdigest()[:24]
        call = ToolCallDelta(index=index, id=f"call_{digest}", name=parsed[0], arguments=parsed[1])
        self._tool_calls.append(call)
        out.append(ParsedDelta(tool_call=call))


def _merge(deltas: list[ParsedDelta]) -> list[ParsedDelta]:
    """Join adjacent text deltas of the same kind (fewer, larger stream chunks)."""
    merged: list[ParsedDelta] = []
    for delta in deltas:
        last = merged[-1] if merged else None
        if last is not None and delta.content is not None and last.content is not None:
            merged[-1] = ParsedDelta(content=last.content + delta.content)
        elif last is not None and delta.reasoning_content is not None and last.reasoning_content is not None:
            merged[-1] = ParsedDelta(reasoning_content=last.reasoning_content + delta.reasoning_content)
        else:
            merged.append(delta)
    return merged
