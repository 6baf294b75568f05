"""``TokenizerCodec``: the gateway's ``ChatCodec`` over a real tokenizer, the package's chat
renderer (chat/template.py) and response parser (chat/parsing.py).

It only adapts shapes: the renderer's ids and the parser's deltas and message become the
gateway's ``MessageDelta`` and OpenAI message dict. Parsing rules (reasoning, tool calls,
whitespace, stop tokens) are the parser's; this module adds none.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slime_openclaw.chat.parsing import (
    ParsedDelta,
    ResponseParser,
    prompt_opens_reasoning,
    text_decoder,
    token_texts,
)
from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.errors import ConfigError
from slime_openclaw.gateway.codec import MessageDelta, ToolCallDelta
from slime_openclaw.types import Message


def _delta(parsed: ParsedDelta) -> MessageDelta:
    call = parsed.tool_call
    if call is not None:
        return MessageDelta(tool_calls=(ToolCallDelta(call.index, call.id, call.name, call.arguments),))
    return MessageDelta(content=parsed.content or "", reasoning_content=parsed.reasoning_content or "")


class _Parser:
    """A ``StreamParser`` over ``ResponseParser``."""

    def __init__(self, parser: ResponseParser):
        self._parser = parser

    def feed(self, token_ids: Sequence[int]) -> list[MessageDelta]:
        return [_delta(d) for d in self._parser.feed(token_ids)]

    def close(self) -> list[MessageDelta]:
        return [_delta(d) for d in self._parser.close()]

    def finish(self) -> Message:
        return self._parser.finish().to_openai()


def model_context_length(path: str | os.PathLike[str], engine_info: Mapping[str, Any] | None = None) -> int | None:
    """The model's context in tokens: ``max_position_embeddings`` of ``path/config.json``,
    else what the engine's ``/get_model_info`` says (``context_length``); None if neither."""
    candidates: list[Any] = []
    config = Path(path) / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict):
            text_config = data.get("text_config")
            candidates += [data.get("max_position_embeddings"),
                           text_config.get("max_position_embeddings") if isinstance(text_config, dict) else None]
    info = engine_info or {}
    candidates += [info.get("context_length"), info.get("max_context_length")]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class TokenizerCodec:
    """Renders prompts and parses responses with one model's tokenizer and chat template."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer)
        self.stop_token_ids: tuple[int, ...] = tuple(self.renderer.stop_token_ids)
        # A token's vocabulary string has at least as many characters as the text it covers
        # (byte-level: one character per byte), so its length bounds the text.
        self.max_token_chars = max((len(t) for t in tokenizer.get_vocab()), default=1)
        self._decode = text_decoder(tokenizer)
        self._texts = token_texts(tokenizer)
        self.token_text = functools.lru_cache(maxsize=65536)(self._token_text)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> TokenizerCodec:
        """Load the tokenizer (and its chat template) of a Hugging Face model directory."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load a tokenizer from {path}: {exc}") from exc
        return cls(tokenizer)

    def render_ids(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *,
                   template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.renderer.render_ids(list(messages), tools=list(tools) or None, variables=template_kwargs)

    def new_parser(self, prompt_ids: Sequence[int]) -> _Parser:
        reasoning = prompt_opens_reasoning(self.tokenizer, prompt_ids, decode=self._decode)
        return _Parser(ResponseParser(self.tokenizer, stop_ids=self.stop_token_ids, start_in_reasoning=reasoning,
                                      decode=self._decode, texts=self._texts))

    def _token_text(self, token_id: int) -> str:
        return self._decode([token_id])
