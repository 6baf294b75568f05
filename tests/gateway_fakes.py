"""Stand-ins and harness for the gateway tests: a character-level chat codec and a live gateway.

``CharCodec`` is a faithful small ``ChatCodec``: one token per character (id = code point,
id 0 ends a turn), a template under which a reply re-renders to exactly its generated
ids, and a parser for ``[[call NAME ARGS]]`` tool calls. ``running_gateway`` serves a
gateway on 127.0.0.1 on a free port for the real openai client and always stops it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from aiohttp import web

from slime_openclaw.engine.protocol import Engine
from slime_openclaw.gateway.app import GatewayDeps, GatewaySettings, make_runner
from slime_openclaw.gateway.codec import MessageDelta, ToolCallDelta
from slime_openclaw.journal.memory import MemoryJournal

END = "\x00"
CALL_OPEN, CALL_CLOSE = "[[call ", "]]"


def render_text(messages: Sequence[dict], tools: Sequence[dict] = ()) -> str:
    """The stand-in template."""
    out = [f"<tools>{json.dumps([t['function']['name'] for t in tools])}{END}"] if tools else []
    for m in messages:
        body = m.get("content") or ""
        for call in m.get("tool_calls") or []:
            body += f"{CALL_OPEN}{call['function']['name']} {call['function']['arguments']}{CALL_CLOSE}"
        out.append(f"<{m['role']}>{body}{END}")
    return "".join(out) + "<assistant>"


def encode(text: str) -> list[int]:
    return [ord(c) for c in text]


@dataclass
class CharParser:
    """Incremental parser: plain text is content; ``[[call NAME ARGS]]`` blocks are tool calls."""

    text: str = ""
    sent: int = 0
    calls: list[dict] = field(default_factory=list)

    def feed(self, token_ids: Sequence[int]) -> list[MessageDelta]:
        self.text += "".join(chr(t) for t in token_ids if t != 0)
        out: list[MessageDelta] = []
        while self.sent < len(self.text):
            rest = self.text[self.sent:]
            if rest.startswith(CALL_OPEN) or CALL_OPEN.startswith(rest):
                end = rest.find(CALL_CLOSE)
                if end < 0:
                    break
                name, _, args = rest[len(CALL_OPEN):end].partition(" ")
                index = len(self.calls)
                call_id = f"call_{index}"
                self.calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
                out.append(MessageDelta(tool_calls=(ToolCallDelta(index, call_id, name, ""),)))
                out.append(MessageDelta(tool_calls=(ToolCallDelta(index, arguments=args),)))
                self.sent += end + len(CALL_CLOSE)
                continue
            cut = rest.find("[")
            piece = rest if cut < 0 else rest[:cut] if cut > 0 else rest[:1]
            out.append(MessageDelta(content=piece))
            self.sent += len(piece)
        return out

    def close(self) -> list[MessageDelta]:
        return []

    def finish(self) -> dict[str, Any]:
        content = "".join(ch for ch in self._content())
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if self.calls:
            message["tool_calls"] = self.calls
        return message

    def _content(self) -> str:
        text, out = self.text, []
        while text:
            start = text.find(CALL_OPEN)
            if start < 0:
                out.append(text)
                break
            out.append(text[:start])
            end = text.find(CALL_CLOSE, start)
            text = "" if end < 0 else text[end + len(CALL_CLOSE):]
        return "".join(out)


class CharCodec:
    """``ChatCodec`` over characters."""

    stop_token_ids = (0,)
    max_token_chars = 1

    def render_ids(self, messages: Sequence[dict], tools: Sequence[dict], *, template_kwargs: Any = None) -> list[int]:
        return encode(render_text(messages, tools))

    def new_parser(self, prompt_ids: Sequence[int]) -> CharParser:
        return CharParser()

    def token_text(self, token_id: int) -> str:
        return chr(token_id)


def reply_ids(text: str) -> list[int]:
    """The token ids of a scripted reply (text then the end-of-turn id)."""
    return encode(text) + [0]


@contextlib.asynccontextmanager
async def running_gateway(engine: Engine, *, journal: MemoryJournal | None = None, codec: Any = None,
                          api_key: str | None = None, **config: Any) -> AsyncIterator[tuple[openai.AsyncOpenAI, GatewayDeps]]:
    """Serve a gateway on 127.0.0.1:<free port>; yields a real openai client for it and the deps.

    The client does not retry (tests see every status); ``str(api.base_url)`` is the URL.
    """
    settings = {"served_model_name": "tiny", "api_key": api_key, **config}
    recorder = journal if journal is not None else MemoryJournal()
    deps = GatewayDeps(engine=engine, recorder=recorder, codec=codec or CharCodec(),
                       config=GatewaySettings(**settings), outcomes=recorder)
    runner = make_runner(deps)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=api_key or "unused",
                                      max_retries=0, timeout=30) as api:
            yield api, deps
    finally:
        await runner.cleanup()
