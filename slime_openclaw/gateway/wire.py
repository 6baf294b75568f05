"""OpenAI chat-completions request validation: raw JSON in, a frozen ``ChatRequest`` out.

Every field the gateway honours is checked for type and range here; fields that would
break token-exact recording or that the gateway cannot honour (``n > 1``, ``logit_bias``,
``top_logprobs``, presence/frequency penalties, non-text ``response_format``, forced
``tool_choice``, audio output, image parts, unknown fields) are refused with a
``RequestError`` naming the parameter, never dropped silently. Fields that change nothing
that is generated (``store``, ``verbosity``, ``safety_identifier``, ...: ``IGNORED_FIELDS``)
are accepted and ignored; the README's parameter policy table lists every field. The body
is one JSON object nested at most ``MAX_JSON_DEPTH`` deep (deeper tool schemas would crash
the template's JSON encoder). Messages are normalized once (text parts joined,
``developer`` rendered as ``system``, tool-call arguments kept as JSON strings) so that
the renderer, the session matcher and the recorder all see the same thing.

Building responses and SSE chunks lives in gateway/responses.py; this module does not
render prompts or talk to an engine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from slime_openclaw.errors import RequestError
from slime_openclaw.types import Message

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP_SEQUENCES = 4

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays a request body may have."""
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")

IGNORED_FIELDS = frozenset({
    "store", "service_tier", "parallel_tool_calls", "verbosity", "safety_identifier", "prediction",
    "web_search_options",
})
"""Accepted and ignored on purpose: they change nothing the model sees or produces here."""
_KNOWN_FIELDS = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "temperature", "top_p", "top_k", "min_p",
        "repetition_penalty", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options",
        "logprobs", "top_logprobs", "n", "logit_bias", "response_format", "seed", "presence_penalty",
        "frequency_penalty", "user", "metadata", "audio", "modalities", "reasoning_effort",
        "chat_template_kwargs", "prompt_cache_key",
    }
) | IGNORED_FIELDS


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request, in the gateway's own terms."""

    model: str
    """Model name the client asked for."""
    messages: tuple[Message, ...]
    """Normalized messages (see module docstring)."""
    tools: tuple[dict[str, Any], ...] = ()
    """Tool definitions as given (``{"type": "function", "function": {...}}``)."""
    tool_choice: str = "auto"
    """``auto`` or ``none`` (``none`` renders the prompt without tools)."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    """Completion budget; None means the gateway's default."""
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    """``stream_options.include_usage``: send a final usage chunk."""
    logprobs: bool = False
    """Return per-token log-probs to the client."""
    user: str | None = None
    metadata_session_id: str | None = None
    """``metadata.session_id``, when given."""
    prompt_cache_key: str | None = None
    """``prompt_cache_key`` (OpenClaw sends its session id there): a session key, not sent to the engine."""
    seed: int | None = None
    """Sampling seed (sent to the engine as ``sampling_seed``): same seed, same answer."""
    top_k: int = -1
    """Sample among the k most likely tokens (-1: all)."""
    min_p: float = 0.0
    """Drop tokens less likely than ``min_p`` times the most likely one (0: off)."""
    repetition_penalty: float = 1.0
    """SGLang's repetition penalty on tokens already generated (1: off)."""
    template_kwargs: tuple[tuple[str, Any], ...] = ()
    """``chat_template_kwargs`` plus ``reasoning_effort``, offered to the chat template
    (the codec passes on those its template uses)."""

    @property
    def render_tools(self) -> tuple[dict[str, Any], ...]:
        """Tools the prompt is rendered with (none when ``tool_choice`` is ``none``)."""
        return () if self.tool_choice == "none" else self.tools

    def sampling_summary(self) -> dict[str, Any]:
        """The sampling parameters, as recorded on the turn."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "seed": self.seed,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            **({"template_kwargs": dict(self.template_kwargs)} if self.template_kwargs else {}),
        }


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc.__class__.__name__}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object", code="invalid_json")
    if not _nesting_within(body, MAX_JSON_DEPTH, raw):
        raise RequestError(f"request body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
    return body


_COUNTED_BODY_BYTES = 16 * 1024  # bodies up to this size have their brackets counted before any walk


def _nesting_within(value: Any, limit: int, raw: bytes | None = None) -> bool:
    """Whether objects and arrays in ``value`` nest at most ``limit`` deep (iterative: no recursion).

    ``raw``, the JSON ``value`` was parsed from, settles a small body at C speed: it cannot nest
    deeper than the brackets it opens (a bound: some may be inside strings)."""
    if raw is not None and len(raw) <= _COUNTED_BODY_BYTES and raw.count(b"{") + raw.count(b"[") <= limit:
        return True
    level: list[Any] = [value]
    for _ in range(limit):
        children: list[Any] = []
        for item in level:
            values = item.values() if type(item) is dict else item
            children.extend(v for v in values if type(v) is dict or type(v) is list)
        if not children:
            return True
        level = children
    return False


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate a chat-completions body; raise ``RequestError`` on the first problem."""
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    if unknown:
        raise RequestError(f"unrecognized request argument: {unknown[0]}", code="unknown_parameter", param=unknown[0])
    _refuse_unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' must be a non-empty string", param="model")
    messages = _parse_messages(body.get("messages"))
    tools = _parse_tools(body.get("tools"))
    stream = _optional_bool(body, "stream", False)
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise RequestError("'stream_options' must be an object", param="stream_options")
        include_usage = _optional_bool(stream_options, "include_usage", False, param="stream_options.include_usage")
    user = _optional_str(body, "user")
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        temperature=_number(body, "temperature", 1.0, low=0.0, high=2.0),
        top_p=_number(body, "top_p", 1.0, low=0.0, high=1.0, low_open=True),
        max_tokens=_parse_max_tokens(body),
        stop=_parse_stop(body.get("stop")),
        stream=stream,
        include_usage=include_usage,
        logprobs=_optional_bool(body, "logprobs", False),
        user=user,
        metadata_session_id=_metadata_session_id(body.get("metadata")),
        prompt_cache_key=_optional_str(body, "prompt_cache_key"),
        seed=_parse_seed(body.get("seed")),
        top_k=_parse_top_k(body.get("top_k")),
        min_p=_number(body, "min_p", 0.0, low=0.0, high=1.0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, low=0.0, high=2.0, low_open=True),
        template_kwargs=_template_kwargs(body),
    )


def _parse_top_k(raw: Any) -> int:
    if raw is None:
        return -1
    if isinstance(raw, bool) or not isinstance(raw, int) or (raw < 1 and raw not in (0, -1)):
        raise RequestError("'top_k' must be -1 or 0 (off) or a positive integer", param="top_k")
    return raw if raw > 0 else -1


def _template_kwargs(body: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    raw = body.get("chat_template_kwargs")
    if raw is not None and not isinstance(raw, dict):
        raise RequestError("'chat_template_kwargs' must be an object", param="chat_template_kwargs")
    kwargs = dict(raw or {})
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise RequestError(f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}",
                               param="reasoning_effort")
        kwargs.setdefault("reasoning_effort", effort)
    return tuple(sorted(kwargs.items()))


def _parse_seed(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise RequestError("'seed' must be an integer", param="seed")
    return raw


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise RequestError("only n=1 is supported (each choice is recorded as its own turn)", param="n")
    if body.get("logit_bias"):
        raise RequestError("logit_bias is not supported: it would change the recorded log-probs", param="logit_bias")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs not in (None, 0):
        raise RequestError("top_logprobs is not supported; use logprobs=true", param="top_logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value not in (None, 0, 0.0):
            raise RequestError(f"{name} is not supported: it would change the recorded log-probs", param=name)
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise RequestError("only response_format {\"type\": \"text\"} is supported", param="response_format")
    if body.get("audio") is not None:
        raise RequestError("audio output is not supported (send audio: null or leave it out)", param="audio")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise RequestError("only modalities [\"text\"] is supported", param="modalities")


def _parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    return tuple(_parse_message(m, i) for i, m in enumerate(raw))


def _parse_message(raw: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise RequestError(f"{where} must be an object", param=where)
    role = raw.get("role")
    if role not in ROLES:
        raise RequestError(f"{where}.role must be one of {', '.join(ROLES)}", param=f"{where}.role")
    message: Message = {"role": "system" if role == "developer" else role}
    content = _parse_content(raw.get("content"), f"{where}.content", allow_none=role == "assistant")
    message["content"] = content
    name = raw.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise RequestError(f"{where}.name must be a string", param=f"{where}.name")
        message["name"] = name
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise RequestError(f"{where}.tool_call_id must be a non-empty string", param=f"{where}.tool_call_id")
        message["tool_call_id"] = call_id
    if role == "assistant":
        _parse_assistant_extras(raw, message, where)
    return message


def _parse_assistant_extras(raw: dict[str, Any], message: Message, where: str) -> None:
    reasoning = raw.get("reasoning_content")
    if reasoning is not None:
        if not isinstance(reasoning, str):
            raise RequestError(f"{where}.reasoning_content must be a string", param=f"{where}.reasoning_content")
        if reasoning:
            message["reasoning_content"] = reasoning
    calls = raw.get("tool_calls")
    if calls is None:
        if message["content"] is None:
            raise RequestError(f"{where} needs content or tool_calls", param=f"{where}.content")
        return
    if not isinstance(calls, list):
        raise RequestError(f"{where}.tool_calls must be an array", param=f"{where}.tool_calls")
    message["tool_calls"] = [_parse_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)]


def _parse_tool_call(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        raise RequestError(f"{where} must be an object with a 'function' object", param=where)
    function = raw["function"]
    name = function.get("name")
    arguments = function.get("arguments", "{}")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where}.function.name must be a non-empty string", param=f"{where}.function.name")
    if isinstance(arguments, dict):
        arguments = json.dumps(arguments, ensure_ascii=False)
    if not isinstance(arguments, str):
        raise RequestError(f"{where}.function.arguments must be a JSON string", param=f"{where}.function.arguments")
    call_id = raw.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise RequestError(f"{where}.id must be a string", param=f"{where}.id")
    return {"id": call_id or "", "type": "function", "function": {"name": name, "arguments": arguments}}


def _parse_content(raw: Any, where: str, *, allow_none: bool) -> str | None:
    if raw is None:
        if allow_none:
            return None
        raise RequestError(f"{where} is required", param=where)
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise RequestError(f"{where} must be a string or an array of text parts", param=where)
    texts = []
    for i, part in enumerate(raw):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(f"{where}[{i}] must be a text part (only text is supported)", param=f"{where}[{i}]")
        texts.append(part["text"])
    return "".join(texts)


def _parse_tools(raw: Any) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RequestError("'tools' must be an array", param="tools")
    tools = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise RequestError(f"{where} must be a function tool", param=where)
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise RequestError(f"{where}.function.name must be a non-empty string", param=f"{where}.function.name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RequestError(f"{where}.function.parameters must be an object", param=f"{where}.function.parameters")
        tools.append({"type": "function", "function": function})
    return tuple(tools)


def _parse_tool_choice(raw: Any) -> str:
    if raw is None or raw in ("auto", "none"):
        return raw or "auto"
    if raw == "required" or isinstance(raw, dict):
        raise RequestError(
            "tool_choice 'required' or a named function cannot be enforced; use 'auto' or 'none'",
            param="tool_choice",
        )
    raise RequestError("tool_choice must be 'auto' or 'none'", param="tool_choice")


def _parse_max_tokens(body: dict[str, Any]) -> int | None:
    values = {}
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{name}' must be a positive integer", param=name)
        values[name] = value
    if len(set(values.values())) > 1:
        raise RequestError("max_tokens and max_completion_tokens disagree", param="max_tokens")
    return next(iter(values.values()), None)


def _parse_stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a non-empty string or an array of them", param="stop")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise RequestError(f"at most {MAX_STOP_SEQUENCES} stop sequences", param="stop")
    return tuple(stops)


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"'{name}' must be a string", param=name)
    return value or None


def _metadata_session_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RequestError("'metadata' must be an object", param="metadata")
    value = raw.get("session_id")
    if value is not None and not isinstance(value, str):
        raise RequestError("metadata.session_id must be a string", param="metadata.session_id")
    return value or None


def _optional_bool(body: dict[str, Any], name: str, default: bool, *, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{param or name}' must be a boolean", param=param or name)
    return value


def _number(body: dict[str, Any], name: str, default: float, *, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"'{name}' must be a number", param=name)
    if value > high or value < low or (low_open and value == low):
        bound = "(" if low_open else "["
        raise RequestError(f"'{name}' must be in {bound}{low}, {high}]", param=name)
    return float(value)
