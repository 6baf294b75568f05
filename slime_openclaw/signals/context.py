"""What a judge or hint extractor sees of a turn: the task, the response, the next state.

``JudgeInput`` is built once per turn from the journal's ``Turn`` and ``NextState`` and
shared by every judge and extractor (rule-based or model-based). This module only turns
chat messages into plain text sections (bounded in length); it does not prompt or score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slime_openclaw.types import Message, NextState, NextStateKind, Turn

DEFAULT_SECTION_CHARS = 4000
"""Default bound on each text section a judge prompt carries (head and tail are kept)."""


def clip(text: str, limit: int) -> str:
    """``text`` if at most ``limit`` characters, else its head and tail around an omission note."""
    if limit <= 0 or len(text) <= limit:
        return text
    keep = max(limit - 40, 2)
    head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2) :]
    return f"{head}\n[... {len(text) - keep} characters omitted ...]\n{tail}"


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, None, or a list of OpenAI content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append(f"[{part.get('type', 'part')}]")
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return str(content)


def tool_calls_text(message: Message) -> str:
    """The message's tool calls, one ``name(arguments)`` line each."""
    lines = []
    for call in message.get("tool_calls") or ():
        function = call.get("function", {}) if isinstance(call, dict) else {}
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        lines.append(f"call {function.get('name', '?')}({arguments})")
    return "\n".join(lines)


def message_text(message: Message) -> str:
    """Visible text of one message: its content, then its tool calls (reasoning is left out)."""
    pieces = [content_text(message.get("content")), tool_calls_text(message)]
    return "\n".join(piece for piece in pieces if piece)


def labelled(message: Message) -> str:
    """``[role]`` (tool results with their name or call id) and the message's visible text."""
    role = str(message.get("role", "?"))
    label = role
    if role == "tool":
        name = message.get("name") or message.get("tool_call_id")
        label = f"tool result ({name})" if name else "tool result"
    return f"[{label}]\n{message_text(message)}"


def last_user_index(messages: tuple[Message, ...]) -> int | None:
    """Index of the last message with role ``user``, or None."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return None


@dataclass(frozen=True)
class JudgeInput:
    """Text sections of one turn for judges and hint extractors."""

    task: str
    """The last user request before the response (empty when the prompt had none)."""
    since_task: str
    """Messages between that request and the response (tool results the response reacted to)."""
    response: str
    """The assistant's response: visible content and tool calls."""
    next_state: str
    """Every next-state message, each labelled with its role."""
    next_state_kind: NextStateKind
    """What produced the next state."""
    next_messages: tuple[Message, ...]
    """The raw next-state messages, for rule-based judges."""
    reply_dropped: bool = False
    """The client went on without the response (it discarded it; see ``NextState.reply_dropped``)."""

    @property
    def next_roles(self) -> str:
        """Roles present in the next state, e.g. ``"user"`` or ``"tool"``."""
        roles = dict.fromkeys(str(m.get("role", "?")) for m in self.next_messages)
        return ", ".join(roles) or self.next_state_kind.value

    def prompt_messages(self, system: str, instructions: str) -> list[Message]:
        """A judge-style chat: ``system``, then ``instructions`` followed by the turn's sections."""
        sections = [instructions, f"## TASK (the latest user request)\n{self.task or '(no user message)'}"]
        if self.since_task:
            sections.append(f"## CONTEXT SINCE THAT REQUEST\n{self.since_task}")
        sections.append(f"## ASSISTANT RESPONSE\n{self.response or '(empty)'}")
        dropped = "; the client discarded the response and went on without it" if self.reply_dropped else ""
        sections.append(f"## NEXT STATE (role: {self.next_roles}{dropped})\n{self.next_state}")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(sections)}]

    @classmethod
    def from_turn(cls, turn: Turn, next_state: NextState, limit: int = DEFAULT_SECTION_CHARS) -> JudgeInput:
        """Build the sections from a recorded turn and its next state, each clipped to ``limit``.

        Prompt messages the client did not replay (``NextState.dropped_messages``: per-request
        context such as OpenClaw's) are not the task: it is the last user message before them.
        """
        kept = turn.messages[: len(turn.messages) - next_state.dropped_messages]
        index = last_user_index(kept)
        task = message_text(kept[index]) if index is not None else ""
        after = kept[index + 1 :] if index is not None else kept
        return cls(
            task=clip(task, limit),
            since_task=clip("\n\n".join(labelled(m) for m in after), limit),
            response=clip(message_text(turn.response_message), limit),
            next_state=clip("\n\n".join(labelled(m) for m in next_state.messages), limit),
            next_state_kind=next_state.kind,
            next_messages=tuple(next_state.messages),
            reply_dropped=next_state.reply_dropped,
        )


def has_next_state(next_state: NextState | None) -> bool:
    """True when there is something to judge: a continuous next state with at least one message."""
    return (
        next_state is not None
        and next_state.continuous
        and next_state.kind is not NextStateKind.SESSION_END
        and len(next_state.messages) > 0
    )
