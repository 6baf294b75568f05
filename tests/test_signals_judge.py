"""LLM judge: answer parsing, majority voting, timeouts and retries, the prompt, and the
OpenAI-compatible backend against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from test_signals_fakes import ScriptedGenerator, Slow, make_turn, tool_next, user_next

from slime_openclaw.errors import JudgeError
from slime_openclaw.signals.context import JudgeInput, clip
from slime_openclaw.signals.judge import (
    LLMJudge,
    build_judge_messages,
    judge_unavailable,
    majority,
    parse_score,
)
from slime_openclaw.signals.judge_backends import OpenAIChatGenerator, RetryPolicy, call_with_retries

FAST = RetryPolicy(timeout_s=0.2, retries=1, backoff_s=0.01)


def item(next_text: str = "Thanks, next question please.") -> JudgeInput:
    return JudgeInput.from_turn(make_turn(), user_next(next_text))


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("The user thanked us. \\boxed{1}", 1),
        ("\\boxed{ -1 }", -1),
        ("neutral \\boxed{0}", 0),
        ("\\boxed{+1}", 1),
        ("first \\boxed{-1} then changed my mind \\boxed{1}", 1),
        ("no box at all: 1", None),
        ("\\boxed{2}", None),
        ("\\boxed{good}", None),
        ("", None),
    ],
)
def test_parse_score(text: str, score: int | None) -> None:
    assert parse_score(text) == score


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ((1, 1, -1), 1),
        ((-1, -1, 1), -1),
        ((1, -1, None), 0),
        ((1, None, None), 1),
        ((None, None, None), 0),
        ((), 0),
        ((1, 0, 0), 0),
        ((1, 1, 0, 0, -1), 0),
        ((0, -1, -1), -1),
    ],
)
def test_majority(votes: tuple[int | None, ...], expected: int) -> None:
    assert majority(votes) == expected


async def test_votes_run_concurrently_and_majority_wins() -> None:
    gen = ScriptedGenerator([Slow(0.15, "ok \\boxed{1}"), Slow(0.15, "\\boxed{1}"), Slow(0.15, "bad \\boxed{-1}")])
    judge = LLMJudge(gen, votes=3, policy=RetryPolicy(timeout_s=2.0, retries=0))
    started = time.perf_counter()
    verdict = await judge.judge(item())
    elapsed = time.perf_counter() - started
    assert elapsed < 0.4, "three 0.15 s votes must overlap"
    assert verdict.score == 1
    assert verdict.votes == (1, 1, -1)
    assert (verdict.failures, verdict.parse_failures) == (0, 0)
    assert verdict.rationale == "ok"
    assert verdict.judge == "llm:scripted"
    assert len(gen.calls) == 3


async def test_parse_failures_are_counted_and_tie_gives_zero() -> None:
    gen = ScriptedGenerator(["\\boxed{1}", "I cannot decide", "\\boxed{-1}"])
    verdict = await LLMJudge(gen, votes=3, policy=FAST).judge(item())
    assert verdict.votes == (1, None, -1)
    assert verdict.score == 0
    assert (verdict.failures, verdict.parse_failures) == (1, 1)
    assert not judge_unavailable(verdict)


async def test_timeout_then_retry_succeeds() -> None:
    gen = ScriptedGenerator([Slow(1.0, "\\boxed{1}"), "\\boxed{-1}"])
    verdict = await LLMJudge(gen, votes=1, policy=FAST).judge(item())
    assert verdict.votes == (-1,)
    assert verdict.score == -1
    assert len(gen.calls) == 2


async def test_all_votes_failing_gives_zero_and_is_unavailable() -> None:
    gen = ScriptedGenerator([JudgeError("connection refused")])
    started = time.perf_counter()
    verdict = await LLMJudge(gen, votes=3, policy=FAST).judge(item())
    assert time.perf_counter() - started < 1.0
    assert verdict.score == 0
    assert verdict.votes == (None, None, None)
    assert (verdict.failures, verdict.parse_failures) == (3, 0)
    assert judge_unavailable(verdict)
    assert len(gen.calls) == 6, "each vote makes 1 + retries attempts"


async def test_hung_judge_is_bounded_by_timeout_and_retries() -> None:
    gen = ScriptedGenerator([Slow(30.0, "\\boxed{1}")])
    started = time.perf_counter()
    verdict = await LLMJudge(gen, votes=2, policy=FAST).judge(item())
    assert time.perf_counter() - started < 1.0
    assert verdict.votes == (None, None) and judge_unavailable(verdict)


async def test_call_with_retries_records_the_last_error() -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        raise ValueError(f"bad {attempts}")

    outcome = await call_with_retries(flaky, RetryPolicy(timeout_s=1.0, retries=2, backoff_s=0.0))
    assert outcome.value is None and outcome.attempts == 3 and outcome.error == "ValueError: bad 3"


async def test_cancellation_is_not_swallowed() -> None:
    started = asyncio.Event()

    async def forever() -> str:
        started.set()
        await asyncio.sleep(60)
        return ""

    task = asyncio.create_task(call_with_retries(forever, RetryPolicy(timeout_s=60, retries=3)))
    await asyncio.wait_for(started.wait(), 10)  # cancelled inside the call, not before it began
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_prompt_carries_task_response_next_state_and_role() -> None:
    turn = make_turn(
        messages=(
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "List the files in /tmp"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "ls", "arguments": "{}"}}]},
            {"role": "tool", "name": "ls", "content": "a.txt b.txt"},
        ),
        response="There are two files: a.txt and b.txt.",
    )
    messages = build_judge_messages(JudgeInput.from_turn(turn, user_next("No, I meant /var/tmp.")))
    assert messages[0]["role"] == "system"
    body = messages[1]["content"]
    assert "List the files in /tmp" in body
    assert "[tool result (ls)]\na.txt b.txt" in body
    assert "There are two files" in body
    assert "No, I meant /var/tmp." in body
    assert "(role: user)" in body
    for needle in ("\\boxed{1}", "\\boxed{0}", "\\boxed{-1}", "redo", "rephrases", "corrects", "thanks", "succeeded"):
        assert needle in body.replace("ran successfully", "succeeded")
    tool_body = build_judge_messages(JudgeInput.from_turn(turn, tool_next("exit code 1")))[1]["content"]
    assert "(role: tool)" in tool_body


def test_sections_are_clipped() -> None:
    long = "x" * 10_000
    text = clip(long, 200)
    assert len(text) < 260 and "omitted" in text
    judged = JudgeInput.from_turn(make_turn(response=long), user_next(long), limit=300)
    assert len(judged.response) < 360 and len(judged.next_state) < 360


class _ChatServer:
    """A real OpenAI-compatible chat completions endpoint with scripted behaviour."""

    def __init__(self, replies: list[tuple[int, str]]) -> None:
        self.replies = replies
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.auth.append(request.headers.get("Authorization"))
        status, content = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if status != 200:
            return web.json_response({"error": {"message": content}}, status=status)
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


async def _serve(server: _ChatServer) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_openai_backend_votes_and_retries_over_http() -> None:
    server = _ChatServer([(500, "overloaded"), (200, "fine \\boxed{1}"), (200, "\\boxed{1}"), (200, "\\boxed{-1}")])
    runner, url = await _serve(server)
    try:
        async with OpenAIChatGenerator(url, model="judge-model", api_key="k-123") as gen:
            verdict = await LLMJudge(gen, votes=3, policy=FAST).judge(item())
    finally:
        await runner.cleanup()
    assert sorted(v for v in verdict.votes if v is not None) == [-1, 1, 1]
    assert verdict.score == 1 and verdict.failures == 0
    assert len(server.bodies) == 4, "one HTTP 500 retried"
    assert server.bodies[0]["model"] == "judge-model"
    assert server.bodies[0]["messages"][1]["content"].count("Thanks, next question please.") == 1
    assert set(server.auth) == {"Bearer k-123"}


async def test_openai_backend_down_is_unavailable_not_raised() -> None:
    runner, url = await _serve(_ChatServer([(200, "")]))
    await runner.cleanup()  # nothing listens there any more
    async with OpenAIChatGenerator(url, model="m") as gen:
        verdict = await LLMJudge(gen, votes=2, policy=FAST).judge(item())
    assert judge_unavailable(verdict) and verdict.score == 0
