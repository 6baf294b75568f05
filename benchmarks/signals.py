"""Judged turns per second through the signal worker against the embedded engine.

Setup: the tiny model (or ``--model DIR``) served by the embedded engine on 127.0.0.1, a
SQLite journal in a temporary directory holding ``--turns`` OBSERVED turns (a user reply as
next state that no rule can decide, so every verdict comes from the model), and a
``SignalWorker`` with the LLM judge only (method ``binary``) talking to the engine through
``EngineTextGenerator``. For each vote count m (default 1 and 3) it reports judged turns/s,
votes/s, the mean time per turn, and parse failures (the tiny model cannot really judge:
its answers measure plumbing and engine throughput, not judging quality). A last row
measures teacher scoring (``max_new_tokens = 0`` on prompt + response) per second.

Usage: ``python benchmarks/signals.py [--turns N] [--votes 1 3] [--max-new-tokens T]
[--concurrency C] [--model DIR] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.local.model.tiny_model import ensure_default_model
from slime_openclaw.signals.judge import LLMJudge
from slime_openclaw.signals.judge_backends import EngineTextGenerator, JudgeSampling, RetryPolicy
from slime_openclaw.signals.pipeline import SignalPipeline
from slime_openclaw.signals.teacher import TeacherScorer
from slime_openclaw.signals.worker import SignalWorker
from slime_openclaw.types import FinishReason, Method, NextState, NextStateKind, Turn, TurnType


def make_turn(i: int, renderer: ChatRenderer, tokenizer: Any) -> Turn:
    """A main turn asking a question, with a short response ending in the stop token."""
    messages = ({"role": "user", "content": f"What is {i} plus {i}?"},)
    response = [*tokenizer.encode(f"It is {2 * i}.", add_special_tokens=False), renderer.stop_token_ids[0]]
    return Turn(
        session_id=f"bench-{i}",
        turn_index=0,
        turn_type=TurnType.MAIN,
        messages=messages,
        tools=(),
        prompt_ids=tuple(renderer.render_ids(list(messages))),
        response_ids=tuple(response),
        response_log_probs=tuple(-1.0 for _ in response),
        weight_versions=tuple(0 for _ in response),
        finish_reason=FinishReason.STOP,
        response_message={"role": "assistant", "content": f"It is {2 * i}."},
        sampling={"temperature": 1.0},
    )


def fill_journal(journal: SqliteJournal, turns: list[Turn]) -> None:
    """Record every turn and attach a next state that no rule decides."""
    for turn in turns:
        journal.record_turn(turn)
        reply = {"role": "user", "content": "Hmm. And what is that times three?"}
        journal.attach_next_state(turn.key, NextState(kind=NextStateKind.USER, messages=(reply,)))


async def judge_round(url: str, model_dir: Path, turns: list[Turn], votes: int, args: argparse.Namespace) -> dict:
    """One worker run over a fresh journal; the figures for ``votes`` votes per turn."""
    renderer = ChatRenderer(_tokenizer(model_dir))
    with tempfile.TemporaryDirectory() as tmp:
        journal = SqliteJournal(Path(tmp) / "journal.db")
        try:
            fill_journal(journal, turns)
            async with EngineClient(url) as client:
                generator = EngineTextGenerator(
                    client, renderer, renderer.tokenizer, JudgeSampling(temperature=1.0, max_new_tokens=args.max_new_tokens),
                    stop_token_ids=renderer.stop_token_ids,
                )
                judge = LLMJudge(generator, votes=votes, policy=RetryPolicy(timeout_s=120.0, retries=0))
                worker = SignalWorker(journal, SignalPipeline(Method.BINARY, judge), concurrency=args.concurrency)
                started = time.perf_counter()
                handled = await worker.process_available()
                elapsed = time.perf_counter() - started
        finally:
            journal.close()
    c = worker.counters
    return {
        "what": "judge", "votes": votes, "turns": handled, "seconds": round(elapsed, 3),
        "turns_per_s": round(handled / elapsed, 2), "votes_per_s": round(c.votes / elapsed, 2),
        "mean_turn_s": round(c.busy_seconds / max(handled, 1), 3),
        "parse_failures": c.parse_failures, "vote_failures": c.vote_failures, "max_new_tokens": args.max_new_tokens,
        "concurrency": args.concurrency,
    }


async def teacher_round(url: str, model_dir: Path, turns: list[Turn], args: argparse.Namespace) -> dict:
    """Teacher scoring calls per second at the worker's concurrency."""
    renderer = ChatRenderer(_tokenizer(model_dir))
    limit = asyncio.Semaphore(args.concurrency)
    async with EngineClient(url) as client:
        scorer = TeacherScorer(client, renderer, top_k=args.top_k)

        async def one(turn: Turn) -> None:
            async with limit:
                await scorer.score(turn, "Answer with the number only.")

        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in turns))
        elapsed = time.perf_counter() - started
    return {
        "what": "teacher", "turns": len(turns), "seconds": round(elapsed, 3),
        "turns_per_s": round(len(turns) / elapsed, 2), "top_k": args.top_k, "concurrency": args.concurrency,
    }


_TOKENIZERS: dict[Path, Any] = {}


def _tokenizer(model_dir: Path) -> Any:
    if model_dir not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[model_dir] = AutoTokenizer.from_pretrained(model_dir)
    return _TOKENIZERS[model_dir]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--votes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the tiny model)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    model_dir = args.model or ensure_default_model()
    renderer = ChatRenderer(_tokenizer(model_dir))
    turns = [make_turn(i, renderer, renderer.tokenizer) for i in range(args.turns)]
    runtime = Runtime.load(model_dir, max_running=max(16, args.concurrency * max(args.votes))).start()
    rows = []
    try:
        with ServerThread(runtime) as url:
            for votes in args.votes:
                rows.append(asyncio.run(judge_round(url, model_dir, turns, votes, args)))
            rows.append(asyncio.run(teacher_round(url, model_dir, turns, args)))
    finally:
        runtime.close()
    for row in rows:
        print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
