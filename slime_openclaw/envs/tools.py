"""Tool calls in OpenAI chat terms: schemas, parsing an assistant reply, tool messages.

Shared by the built-in environments so that a tool call that cannot be carried out
(unknown tool, arguments that are not a JSON object, a missing parameter) is answered
the same way everywhere: a tool message that says what is wrong, and ``tool_error`` in
``Step.info``. Also finds Python tracebacks in output for the ``traceback`` signal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.envs.base import Message

_TRACEBACK = re.compile(r"Traceback \(most recent call last\):\n(?:[ \t].*\n|\n)*?\S[^\n]*", re.MULTILINE)


def function_tool(name: str, description: str, params: Mapping[str, str]) -> dict[str, Any]:
    """An OpenAI function tool schema with required string parameters (name -> description)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {key: {"type": "string", "description": text} for key, text in params.items()},
                "required": list(params),
            },
        },
    }


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an assistant reply, parsed."""

    id: str
    """The call's id (``call_<n>`` when the reply carried none)."""
    name: str
    """The function name as the model wrote it."""
    arguments: dict[str, Any] = field(default_factory=dict)
    """Parsed arguments (empty when ``error`` is set)."""
    error: str = ""
    """Why the call cannot run; empty when it can."""


def parse_tool_calls(reply: Message, schemas: list[dict[str, Any]]) -> list[ToolCall]:
    """The reply's tool calls, each checked against ``schemas`` (name, required string params)."""
    known = {s["function"]["name"]: s["function"]["parameters"].get("required", []) for s in schemas}
    calls = []
    for index, raw in enumerate(reply.get("tool_calls") or []):
        raw = raw if isinstance(raw, dict) else {}
        function: dict[str, Any] = raw["function"] if isinstance(raw.get("function"), dict) else {}
        call_id = str(raw.get("id") or f"call_{index}")
        name = str(function.get("name") or "")
        calls.append(_checked(call_id, name, function.get("arguments"), known))
    return calls


def _checked(call_id: str, name: str, arguments: Any, known: Mapping[str, list[str]]) -> ToolCall:
    if name not in known:
        return ToolCall(call_id, name, error=f"unknown tool {name!r} (available: {', '.join(known)})")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolCall(call_id, name, error=f"arguments of {name} are not valid JSON ({exc.msg})")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, error=f"arguments of {name} must be a JSON object")
    for key in known[name]:
        if not isinstance(arguments.get(key), str):
            return ToolCall(call_id, name, error=f"{name} needs a string parameter {key!r}")
    return ToolCall(call_id, name, arguments)


def tool_message(call_id: str, content: str) -> Message:
    """The environment's answer to one tool call."""
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def assistant_call(call_id: str, name: str, arguments: Mapping[str, Any], content: str = "") -> Message:
    """An assistant message with one tool call (the shape of reference trajectories)."""
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": name, "arguments": json.dumps(dict(arguments))}}],
    }


def last_traceback(text: str) -> str:
    """The last Python traceback in ``text`` (through its exception line), or ''."""
    found = _TRACEBACK.findall(text)
    return found[-1] if found else ""
