"""``slime-openclaw demo``: the embedded default, end to end, with the real ``openai`` client.

Starts ``slime-openclaw serve --embedded`` as a child process (embedded engine + gateway,
journal in a SQLite file), drives a short scripted conversation through it (a streamed
answer, a follow-up that becomes the first turn's next state, a tool call and its result,
a side turn), stops the gateway, then reads the journal back and prints what was recorded
token for token. The tiny default model is untrained, so its words are noise: the point is
the machinery, not the prose.

This is the foundation's demo; the full loop (simulated users, judges, local trainer)
builds on it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slime_openclaw.errors import ConfigError, EngineError

GATEWAY_START_TIMEOUT_S = 300.0
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slime-openclaw demo``."""
    parser.add_argument("--model", help="model directory to serve (default: the cached tiny model)")
    parser.add_argument("--journal", help="SQLite journal file (default: a temporary file)")
    parser.add_argument("--max-tokens", type=int, default=24, help="completion budget per reply (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed sent with each request")


@contextlib.contextmanager
def gateway_process(model: Path | None, journal: Path) -> Iterator[str]:
    """Run ``serve --embedded`` on a free loopback port; yields the base URL; stops it by pid."""
    command = [sys.executable, "-m", "slime_openclaw.cli", "serve", "--embedded", "--port", "0",
               "--journal", str(journal), "--log-level", "WARNING"]
    if model is not None:
        command += ["--model", str(model)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # "gateway listening on http://127.0.0.1:PORT/v1 (engine ...)"
        if "listening on " not in line:
            raise EngineError(f"the gateway did not start (exit code {child.wait(GATEWAY_START_TIMEOUT_S)})")
        yield line.split("listening on ", 1)[1].split()[0]
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


def _say(text: str) -> None:
    print(text, flush=True)


def _converse(url: str, max_tokens: int, seed: int) -> list[dict[str, Any]]:
    """The scripted conversation; returns what the client saw per request."""
    from openai import OpenAI

    client: Any = OpenAI(base_url=url, api_key="demo", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    _say(f"model: {model}")
    session = {"X-Session-Id": "demo-session-1"}
    extra = {"seed": seed}
    seen: list[dict[str, Any]] = []

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 12 + 30?"},
    ]
    _say("\n[1] streamed answer (session header):")
    pieces: list[str] = []
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, max_tokens=max_tokens,
        stream_options={"include_usage": True}, extra_headers=session, extra_body=extra)
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    answer = "".join(pieces)
    _say(f"    {len(pieces)} content chunks, usage={usage.completion_tokens if usage else '?'} tokens: {answer!r}")
    seen.append({"chunks": len(pieces), "text": answer})

    messages += [{"role": "assistant", "content": answer},
                 {"role": "user", "content": "No, I meant 12 times 30."}]
    _say("\n[2] follow-up in the same session (its message is turn 1's next state):")
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                           extra_headers=session, extra_body=extra)
    _say(f"    finish={reply.choices[0].finish_reason}: {reply.choices[0].message.content!r}")

    tool_messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    _say("\n[3] tool definitions, no session id (grouped by history matching):")
    reply = client.chat.completions.create(model=model, messages=tool_messages, tools=[WEATHER_TOOL],
                                           max_tokens=max_tokens, extra_body=extra)
    message = reply.choices[0].message
    _say(f"    finish={reply.choices[0].finish_reason} tool_calls={len(message.tool_calls or [])}"
         f" content={message.content!r}")
    tool_messages.append(message.model_dump(exclude_none=True))
    tool_messages.append({"role": "tool", "tool_call_id": "call_demo", "content": '{"temp_c": 18}'})
    reply = client.chat.completions.create(model=model, messages=tool_messages, tools=[WEATHER_TOOL],
                                           max_tokens=max_tokens, extra_body=extra)
    _say(f"    after the tool result: {reply.choices[0].message.content!r}")

    _say("\n[4] side turn (X-Turn-Type: side, recorded but never trained):")
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Title for this chat?"}], max_tokens=8,
        extra_headers={"X-Turn-Type": "side"}, extra_body=extra)
    _say(f"    {reply.choices[0].message.content!r}")
    return seen


def _converse_or_explain(url: str, max_tokens: int, seed: int) -> None:
    """Run the conversation; an API error becomes one clear line, not a traceback."""
    import openai

    try:
        _converse(url, max_tokens, seed)
    except openai.APIError as exc:
        raise EngineError(f"the gateway answered with an error: {exc}") from None


def _report_journal(path: Path) -> int:
    """Print every recorded turn; returns how many there are."""
    from slime_openclaw.journal.sqlite import SqliteJournal

    journal = SqliteJournal(str(path))
    try:
        records = list(journal.iter_turns())
        _say(f"\njournal {path}: {len(records)} turns")
        _say(f"{'session':<26} {'turn':>4} {'type':<5} {'state':<9} {'prompt':>6} {'resp':>5} "
             f"{'logp':>5} {'versions':<9} next state")
        for record in records:
            turn, nxt = record.turn, record.next_state
            nxt_text = "-" if nxt is None else f"{nxt.kind.value} ({len(nxt.messages)} msg)"
            if nxt is not None and not nxt.continuous:
                nxt_text = f"break: {nxt.break_reason}"
            versions = ",".join(str(v) for v in sorted(set(turn.weight_versions)))
            _say(f"{turn.session_id[:26]:<26} {turn.turn_index:>4} {turn.turn_type.value:<5} "
                 f"{record.state.value:<9} {len(turn.prompt_ids):>6} {len(turn.response_ids):>5} "
                 f"{len(turn.response_log_probs):>5} {versions:<9} {nxt_text}")
        return len(records)
    finally:
        journal.close()


def run(args: argparse.Namespace) -> int:
    """Serve, converse, stop, and show the journal."""
    if args.max_tokens < 1:
        raise ConfigError("--max-tokens must be at least 1")
    model = Path(args.model) if args.model else None
    if model is not None and not model.is_dir():
        raise ConfigError(f"--model {model} is not a directory")
    with tempfile.TemporaryDirectory(prefix="slime-openclaw-demo-") as tmp:
        journal = Path(args.journal) if args.journal else Path(tmp) / "journal.sqlite"
        _say("starting the embedded engine and the gateway (first run builds the tiny model)...")
        with gateway_process(model, journal) as url:
            _say(f"gateway at {url}")
            _converse_or_explain(url, args.max_tokens, args.seed)
        turns = _report_journal(journal)
    _say(f"\ndone: {turns} turns recorded token-exactly; the gateway and engine were stopped.")
    return 0
