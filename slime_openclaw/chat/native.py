"""The package's own chat template (``CHAT_TEMPLATE``) rendered in plain Python.

Rendering through Jinja costs a few hundred microseconds per request, most of a gateway's
own latency; ``render_builtin`` produces the same text in a few dozen. It is used only
for ``CHAT_TEMPLATE`` itself and only for the input shapes it knows exactly (plain
``dict``/``list``/``str`` messages as the gateway's wire layer produces them, tools that
``json`` can serialize): for anything else, including every input the template rejects,
it returns None and the caller renders through Jinja, so errors and odd inputs behave as
before. ``apply_chat_template``'s preprocessing is mirrored: ``None`` values count as
missing, and reasoning is read from ``reasoning_content``, ``thinking`` or ``reasoning``.
Equality with the Jinja rendering is tested on a random corpus (tests/test_chat_fastpaths.py).

This module does not tokenize and knows no other template.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_OPAQUE_ARGUMENTS = (type(None), int, float, bool, list, tuple)  # rendered as "{}" by the template


class _Unhandled(Exception):
    """An input shape this module leaves to Jinja."""


def render_builtin(messages: Sequence[Any], tools: Sequence[Any] | None, add_generation_prompt: bool) -> str | None:
    """``CHAT_TEMPLATE`` rendered for these inputs, or None when Jinja must do it."""
    try:
        return _render(messages, tools, add_generation_prompt)
    except (_Unhandled, TypeError, ValueError):
        return None


def _render(messages: Sequence[Any], tools: Sequence[Any] | None, add_generation_prompt: bool) -> str:
    if type(messages) not in (list, tuple) or not messages:
        raise _Unhandled
    for message in messages:
        if type(message) is not dict or type(message.get("role")) is not str:
            raise _Unhandled
    out: list[str] = []
    start, system = 0, None
    if messages[0]["role"] in ("system", "developer"):
        system, start = _text(messages[0].get("content")), 1
    if tools is not None and type(tools) not in (list, tuple):
        raise _Unhandled
    if system is not None or tools:
        out.append("<|im_start|>system\n")
        if system is not None:
            out.append(system)
        if tools:
            _tools(tools, bool(system), out)
        out.append("<|im_end|>\n")
    rest = messages[start:]
    for i, message in enumerate(rest):
        role = message["role"]
        if role in ("system", "developer", "user"):
            out += ("<|im_start|>", "user" if role == "user" else "system", "\n", _text(message.get("content")),
                    "<|im_end|>\n")
        elif role == "assistant":
            _assistant(message, out)
        elif role == "tool":
            opens = i == 0 or rest[i - 1]["role"] != "tool"
            out += ("<|im_start|>tool\n" if opens else "\n", "<tool_response>\n", _text(message.get("content")),
                    "\n</tool_response>")
            if i == len(rest) - 1 or rest[i + 1]["role"] != "tool":
                out.append("<|im_end|>\n")
        else:
            raise _Unhandled  # the template raises
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _tools(tools: Sequence[Any], after_system: bool, out: list[str]) -> None:
    from slime_openclaw.chat.template import TOOLS_INSTRUCTIONS, TOOLS_PREAMBLE

    if after_system:
        out.append("\n\n")
    out.append(TOOLS_PREAMBLE)
    for tool in tools:
        if type(tool) is not dict:
            raise _Unhandled
        out += (json.dumps(tool.get("function", tool), ensure_ascii=False), "\n")
    out.append(TOOLS_INSTRUCTIONS)


def _assistant(message: dict[str, Any], out: list[str]) -> None:
    out.append("<|im_start|>assistant\n")
    reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k) is not None), None)
    if reasoning is not None:
        if type(reasoning) is not str:
            raise _Unhandled
        out += ("<think>\n", reasoning, "\n</think>\n\n")
    body = _text(message.get("content"))
    out.append(body)
    calls = message.get("tool_calls")
    if calls is not None:
        if type(calls) not in (list, tuple):
            raise _Unhandled
        for i, call in enumerate(calls):
            if body or i:
                out.append("\n")
            out.append(_tool_call(call))
    out.append("<|im_end|>\n")


def _tool_call(call: Any) -> str:
    if type(call) is not dict:
        raise _Unhandled
    fn = call.get("function", call)
    if type(fn) is not dict or type(fn.get("name")) is not str:
        raise _Unhandled
    arguments = fn.get("arguments")
    if type(arguments) is str:
        text = arguments
    elif type(arguments) is dict:
        text = json.dumps(arguments, ensure_ascii=False)
    elif type(arguments) in _OPAQUE_ARGUMENTS:
        text = "{}"
    else:
        raise _Unhandled
    name = json.dumps(fn["name"], ensure_ascii=False)
    return '<tool_call>\n{"name": ' + name + ', "arguments": ' + text + "}\n</tool_call>"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if type(content) is str:
        return content
    if type(content) not in (list, tuple):
        raise _Unhandled
    parts = []
    for part in content:
        if type(part) is str:
            parts.append(part)
        elif type(part) is dict and part.get("type") == "text" and type(part.get("text")) is str:
            parts.append(part["text"])
        else:
            raise _Unhandled
    return "\n".join(parts)
