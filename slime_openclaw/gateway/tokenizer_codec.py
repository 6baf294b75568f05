"""``TokenizerCodec``: the gateway's ``ChatCodec`` over a real tokenizer, the package's chat
renderer (chat/template.py) and response parser (chat/parsing.py).

It only adapts shapes: the renderer's ids and the parser's deltas and message become the
gateway's ``MessageDelta`` and OpenAI message dict. Parsing rules (reasoning, tool calls,
whitespace, stop tokens) are the parser's; this module adds none.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
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


class TokenizerCodec:
    """Renders prompts and parses responses with one model's tokenizer and chat template."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer)
        self.stop_token_ids: tuple[int, ...] = tuple(self.renderer.stop_token_ids)
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

    def render_ids(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> list[int]:
        return self.renderer.render_ids(list(messages), tools=list(tools) or None)

    def new_parser(self, prompt_ids: Sequence[int]) -> _Parser:
        reasoning = prompt_opens_reasoning(self.tokenizer, prompt_ids, decode=self._decode)
        return _Parser(ResponseParser(self.tokenizer, stop_ids=self.stop_token_ids, start_in_reasoning=reasoning,
                                      decode=self._decode, texts=self._texts))

    def _token_text(self, token_id: int) -> str:
        return self._decode([token_id])
