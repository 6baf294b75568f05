"""Rendering OpenAI chat messages to prompt token ids through a tokenizer's chat template.

``CHAT_TEMPLATE`` is the Jinja template of the tiny model (the factory writes it into
``tokenizer_config.json``); ``ChatRenderer`` renders with whatever template the tokenizer
carries, so a real checkpoint (e.g. Qwen3) works the same way. The format, ChatML-like:

    <|im_start|>system\\n{system text}[\\n\\n# Tools ... one JSON schema per line ...]<|im_end|>\\n
    <|im_start|>user\\n{text}<|im_end|>\\n
    <|im_start|>assistant\\n[<think>\\n{reasoning}\\n</think>\\n\\n]{text}
        [\\n<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>]...<|im_end|>\\n
    <|im_start|>tool\\n<tool_response>\\n{text}\\n</tool_response>[\\n<tool_response>...]<|im_end|>\\n
    <|im_start|>assistant\\n                      (the generation prompt)

Reasoning is kept in every assistant turn of the history (never dropped), so the prompt of
turn k+1 extends the prompt of turn k plus its response token for token. This module does
not parse model output (see ``chat/parsing.py``) and does not validate OpenAI request
fields beyond what rendering needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slime_openclaw.chat.native import render_builtin
from slime_openclaw.chat.segments import SegmentEncoder
from slime_openclaw.errors import ConfigError, RequestError

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"

CONTROL_TOKENS: tuple[str, ...] = (PAD_TOKEN, IM_START, IM_END)
"""Special tokens proper: skipped by ``skip_special_tokens`` decoding."""
TAG_TOKENS: tuple[str, ...] = (
    THINK_OPEN, THINK_CLOSE, TOOL_CALL_OPEN, TOOL_CALL_CLOSE, TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE,
)
"""Markup tokens: never split, but kept when decoding (the parser reads them)."""
STOP_TOKENS: tuple[str, ...] = (IM_END, PAD_TOKEN)
"""Tokens that end an assistant turn."""

TOOLS_PREAMBLE = (
    "# Tools\n\nYou can call the functions described below. Each line is one function as a JSON schema:\n"
)
TOOLS_INSTRUCTIONS = (
    "\nTo call a function, answer with one block per call, each holding a JSON object:\n"
    '<tool_call>\n{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>\n'
    "The results come back in <tool_response></tool_response> blocks."
)

CHAT_TEMPLATE = (
    """{%- macro render_text(content) -%}
{%- if content is not defined or content is none -%}
{%- elif content is string -%}{{ content }}
{%- elif content is mapping -%}{{ raise_exception('message content must be a string or a list of text parts') }}
{%- elif content is iterable -%}
{%- for part in content -%}
{%- if not loop.first -%}{{ '\\n' }}{%- endif -%}
{%- if part is string -%}{{ part }}
{%- elif part is mapping and part.type == 'text' and part.text is string -%}{{ part.text }}
{%- else -%}{{ raise_exception('unsupported content part: only {"type": "text", "text": ...} parts are accepted') }}
{%- endif -%}
{%- endfor -%}
{%- else -%}{{ raise_exception('message content must be a string or a list of text parts') }}
{%- endif -%}
{%- endmacro -%}
{%- macro render_tool_call(call) -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- if fn.name is not string -%}{{ raise_exception('a tool call needs a function name') }}{%- endif -%}
{{- '<tool_call>\\n{"name": ' ~ (fn.name | tojson) ~ ', "arguments": ' -}}
{%- if fn.arguments is string -%}{{ fn.arguments }}
{%- elif fn.arguments is mapping -%}{{ fn.arguments | tojson }}
{%- else -%}{{ '{}' }}
{%- endif -%}
{{- '}\\n</tool_call>' -}}
{%- endmacro -%}
{%- set ns = namespace(start=0, system=none) -%}
{%- if messages and messages[0].role in ['system', 'developer'] -%}
{%- set ns.system = render_text(messages[0].content) -%}
{%- set ns.start = 1 -%}
{%- endif -%}
{%- if ns.system is not none or tools -%}
{{- '<|im_start|>system\\n' -}}
{%- if ns.system is not none -%}{{ ns.system }}{%- endif -%}
{%- if tools -%}
{%- if ns.system -%}{{ '\\n\\n' }}{%- endif -%}
{{- TOOLS_PREAMBLE -}}
{%- for tool in tools -%}{{ (tool.function if tool.function is defined else tool) | tojson }}{{ '\\n' }}{%- endfor -%}
{{- TOOLS_INSTRUCTIONS -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- endif -%}
{%- for message in messages[ns.start:] -%}
{%- if message.role in ['system', 'developer'] -%}
{{- '<|im_start|>system\\n' ~ render_text(message.content) ~ '<|im_end|>\\n' -}}
{%- elif message.role == 'user' -%}
{{- '<|im_start|>user\\n' ~ render_text(message.content) ~ '<|im_end|>\\n' -}}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant\\n' -}}
{%- if message.reasoning_content is string -%}
{{- '<think>\\n' ~ message.reasoning_content ~ '\\n</think>\\n\\n' -}}
{%- endif -%}
{%- set body = render_text(message.content) -%}
{{- body -}}
{%- if message.tool_calls is defined and message.tool_calls -%}
{%- for call in message.tool_calls -%}
{%- if body or not loop.first -%}{{ '\\n' }}{%- endif -%}
{{- render_tool_call(call) -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- elif message.role == 'tool' -%}
{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '<|im_start|>tool\\n' -}}{%- else -%}{{- '\\n' -}}{%- endif -%}
{{- '<tool_response>\\n' ~ render_text(message.content) ~ '\\n</tool_response>' -}}
{%- if loop.last or loop.nextitem.role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}
{%- else -%}
{{- raise_exception('unknown message role: ' ~ message.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"""
    .replace("{{- TOOLS_PREAMBLE -}}", "{{- " + repr(TOOLS_PREAMBLE) + " -}}")
    .replace("{{- TOOLS_INSTRUCTIONS -}}", "{{- " + repr(TOOLS_INSTRUCTIONS) + " -}}")
)
"""The tiny model's chat template (Jinja, as ``apply_chat_template`` runs it)."""


def stop_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids that end an assistant turn: ``<|im_end|>``, ``<|endoftext|>`` and the eos token, where present."""
    ids: list[int] = []
    vocab = tokenizer.get_vocab()
    for token in STOP_TOKENS:
        if token in vocab:
            ids.append(int(vocab[token]))
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return tuple(dict.fromkeys(ids))


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise RequestError(f"messages[{i}] must be an object with a string 'role'", param=f"messages[{i}]")


def _plain_inputs(messages: Any, tools: Any) -> bool:
    """True for valid inputs of the gateway's own shape (lists of dicts), checked without
    the ABC ``isinstance`` checks, which cost microseconds per element."""
    return (type(messages) in (list, tuple) and bool(messages)
            and all(type(m) is dict and type(m.get("role")) is str for m in messages)
            and (tools is None or (type(tools) in (list, tuple) and all(type(t) is dict for t in tools))))


def _check_inputs(messages: Any, tools: Any) -> None:
    if _plain_inputs(messages, tools):
        return
    _check_messages(messages)
    if tools is not None and (not isinstance(tools, Sequence) or isinstance(tools, (str, bytes))):
        raise RequestError("tools must be a list", param="tools")
    if tools is not None and not all(isinstance(tool, Mapping) for tool in tools):
        raise RequestError("each tool must be an object", param="tools")


_RESERVED_TEMPLATE_NAMES = frozenset({
    "messages", "conversation", "tools", "documents", "add_generation_prompt", "continue_final_message",
    "tokenize", "chat_template", "return_dict", "return_tensors", "return_assistant_tokens_mask", "padding",
    "truncation", "max_length", "tokenizer_kwargs", "sanitize_control_tokens", "bos_token", "eos_token",
    "pad_token", "unk_token", "raise_exception", "strftime_now",
})


def template_variables(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's extra template variables (``chat_template_kwargs``) that may reach a chat
    template: identifiers that are none of ``apply_chat_template``'s own names."""
    return {k: v for k, v in (kwargs or {}).items()
            if isinstance(k, str) and k.isidentifier() and k not in _RESERVED_TEMPLATE_NAMES}


def _as_id_list(out: Any) -> list[int]:
    if isinstance(out, Mapping) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    if out and isinstance(out[0], list):  # a batch of one
        (out,) = out
    return [int(i) for i in out]


class ChatRenderer:
    """Renders OpenAI messages to prompt token ids with a tokenizer's own chat template.

    ``sanitize_control_tokens=True`` (transformers >= 5) encodes control tokens that appear
    inside message text as plain text, so only the template's own markup becomes control
    tokens; off by default so a response's literal tags re-render to the generated ids.

    Text and ids are those of ``apply_chat_template``. Without sanitizing, the package's own
    ``CHAT_TEMPLATE`` is rendered in Python (chat/native.py; Jinja for input shapes it does
    not know), and the text is encoded piecewise between added tokens with a cache of the
    pieces (chat/segments.py), so the system prompt, the tools and earlier messages of a
    conversation are not encoded again on every turn.
    """

    def __init__(self, tokenizer: Any, *, chat_template: str | None = None, sanitize_control_tokens: bool = False):
        if chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ConfigError("the tokenizer has no chat template; pass one or use a chat checkpoint")
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.sanitize_control_tokens = sanitize_control_tokens
        self.stop_token_ids: tuple[int, ...] = stop_token_ids(tokenizer)
        """Ids that end an assistant turn (pass them to the engine as ``stop_token_ids``)."""
        self.encoder = None if sanitize_control_tokens else SegmentEncoder.for_tokenizer(tokenizer)
        """The piecewise encoder (None: the whole text goes through the tokenizer)."""

    def _apply(self, messages: Any, tools: Any, add_generation_prompt: bool, tokenize: bool,
               variables: Mapping[str, Any] | None = None) -> Any:
        _check_inputs(messages, tools)
        extra: dict[str, Any] = template_variables(variables)
        if self.chat_template is not None:
            extra["chat_template"] = self.chat_template
        if self.sanitize_control_tokens:
            extra["sanitize_control_tokens"] = True
        if tokenize:
            extra["return_dict"] = False
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(
                list(messages), tools=list(tools) if tools else None,
                add_generation_prompt=add_generation_prompt, tokenize=tokenize, **extra,
            )
        except TemplateError as exc:
            raise RequestError(f"cannot render messages: {exc}", param="messages") from exc
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise RequestError(f"cannot render messages: {exc}", param="messages") from exc

    def render_text(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
                    add_generation_prompt: bool = True, *, variables: Mapping[str, Any] | None = None) -> str:
        """The rendered prompt as text (for logs off by default, judges and debugging).

        ``variables``: extra template variables (``chat_template_kwargs``, e.g. Qwen3's
        ``enable_thinking``); a template that does not read one ignores it (the package's
        own template reads none)."""
        template = self.chat_template if self.chat_template is not None else self.tokenizer.chat_template
        if not self.sanitize_control_tokens and template == CHAT_TEMPLATE:
            _check_inputs(messages, tools)
            text = render_builtin(messages, list(tools) if tools else None, add_generation_prompt)
            if text is not None:
                return text
        return str(self._apply(messages, tools, add_generation_prompt, tokenize=False, variables=variables))

    def render_ids(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
                   add_generation_prompt: bool = True, *, variables: Mapping[str, Any] | None = None) -> list[int]:
        """The prompt token ids; raises ``RequestError`` when the messages cannot be rendered."""
        if self.encoder is None:
            return _as_id_list(self._apply(messages, tools, add_generation_prompt, tokenize=True, variables=variables))
        return self.encoder.encode(self.render_text(messages, tools, add_generation_prompt, variables=variables))
