"""The slice of chat rendering and response parsing the gateway uses, as narrow Protocols.

``ChatCodec`` turns messages into prompt ids and gives a fresh ``StreamParser`` per
response; the parser turns the exact generated ids into OpenAI message deltas while they
stream, and into the final assistant message at the end. The implementation over the
package's chat template and parser is ``TokenizerCodec`` (gateway/tokenizer_codec.py);
tests may put any faithful stand-in here. Nothing in this module touches a tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slime_openclaw.types import Message


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of one tool call, as the OpenAI stream sends it."""

    index: int
    """Position of the call within the reply."""
    id: str | None = None
    """Set on the first piece of a call only."""
    name: str | None = None
    """Set on the first piece of a call only."""
    arguments: str = ""
    """A fragment of the JSON arguments string."""

    def to_openai(self) -> dict[str, Any]:
        """The ``delta.tool_calls[i]`` object."""
        out: dict[str, Any] = {"index": self.index}
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.id is not None:
            out["id"] = self.id
            out["type"] = "function"
        if self.name is not None:
            function["name"] = self.name
        out["function"] = function
        return out


@dataclass(frozen=True)
class MessageDelta:
    """What the newly generated tokens add to the visible reply."""

    content: str = ""
    reasoning_content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning_content or self.tool_calls)


class StreamParser(Protocol):
    """Incremental parser of one response's token ids."""

    def feed(self, token_ids: Sequence[int]) -> list[MessageDelta]:
        """Consume newly generated ids; return what became visible."""
        ...

    def close(self) -> list[MessageDelta]:
        """End of the response: the deltas held back until now (call once, before ``finish``)."""
        ...

    def finish(self) -> Message:
        """The complete assistant message (``role``, ``content``, optional
        ``reasoning_content`` and ``tool_calls`` with JSON-string arguments), consistent
        with every delta returned so far (same tool-call ids)."""
        ...


class ChatCodec(Protocol):
    """Prompt rendering and response parsing for one model's tokenizer and template."""

    stop_token_ids: tuple[int, ...]
    """Ids that end an assistant turn (sent to the engine as ``stop_token_ids``)."""
    max_token_chars: int
    """No token covers more characters of text than this (bounds a prompt's tokens from
    its characters before it is tokenized)."""

    def render_ids(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *,
                   template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        """Prompt ids with the generation prompt; ``RequestError`` when unrenderable.

        ``template_kwargs`` (``chat_template_kwargs``, ``reasoning_effort``) are variables
        offered to the chat template; a codec passes on those its template reads and
        ignores the rest."""
        ...

    def new_parser(self, prompt_ids: Sequence[int]) -> StreamParser:
        """A parser for the response to ``prompt_ids`` (a prompt may open a reasoning block)."""
        ...

    def token_text(self, token_id: int) -> str:
        """The text of one token, for OpenAI ``logprobs`` output."""
        ...
