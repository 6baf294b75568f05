"""The chat format: OpenAI messages -> prompt token ids, generated token ids -> OpenAI message.

``ChatRenderer`` (template.py) renders with the tokenizer's chat template; ``ResponseParser``
(parsing.py) turns the exact generated ids into content, reasoning and tool calls without
re-tokenizing. Neither knows about HTTP, engines or training.
"""

from slime_openclaw.chat.parsing import ParsedDelta, ParsedMessage, ResponseParser, ToolCallDelta
from slime_openclaw.chat.template import CHAT_TEMPLATE, ChatRenderer, stop_token_ids

__all__ = [
    "CHAT_TEMPLATE", "ChatRenderer", "ParsedDelta", "ParsedMessage", "ResponseParser", "ToolCallDelta", "stop_token_ids",
]
