"""Rule-based judges and their composition with a model judge."""

from __future__ import annotations

import json

import pytest
from test_signals_fakes import ScriptedGenerator, make_turn, tool_next, user_next

from slime_openclaw.signals.context import JudgeInput
from slime_openclaw.signals.judge import LLMJudge
from slime_openclaw.signals.judge_backends import RetryPolicy
from slime_openclaw.signals.rules import (
    FirstDecisive,
    TestVerdictJudge,
    ToolOutcomeJudge,
    UserRatingJudge,
    default_rule_judges,
    parse_test_run,
    tool_outcome,
    user_rating,
)
from slime_openclaw.types import NextState, NextStateKind


def judged(next_state: NextState) -> JudgeInput:
    return JudgeInput.from_turn(make_turn(), next_state)


@pytest.mark.parametrize(
    ("content", "score"),
    [
        (json.dumps({"exit_code": 2, "stdout": ""}), -1),
        (json.dumps({"returncode": 0, "stdout": "ok"}), 1),
        (json.dumps({"is_error": True, "content": "boom"}), -1),
        (json.dumps({"error": "file not found"}), -1),
        (json.dumps({"error": None, "success": True}), 1),
        (json.dumps({"ok": False}), -1),
        ("Traceback (most recent call last):\n  File 'x.py'\nKeyError: 'a'", -1),
        ("compiling...\n[process exited with code 1]", -1),
        ("Exit code: 0\nall good", 1),
        ("returncode=137", -1),
        ("the word error appears in prose but states no outcome", None),
        ("42", None),
        (json.dumps({"temperature": 21}), None),
    ],
)
def test_tool_outcome(content: str, score: int | None) -> None:
    decided = tool_outcome({"role": "tool", "content": content})
    assert (decided[0] if decided else None) == score


def test_is_error_flag_on_the_message() -> None:
    assert tool_outcome({"role": "tool", "content": "nope", "is_error": True}) == (-1, "tool result flagged is_error")


async def test_tool_judge_any_failure_wins_all_success_needed_for_plus_one() -> None:
    judge = ToolOutcomeJudge()
    bad = await judge.judge(judged(tool_next("exit code 0", json.dumps({"exit_code": 1}))))
    assert bad is not None and bad.score == -1 and bad.votes == (-1,) and bad.judge == "rule:tool_outcome"
    good = await judge.judge(judged(tool_next("exit code 0", json.dumps({"success": True}))))
    assert good is not None and good.score == 1
    assert await judge.judge(judged(tool_next("exit code 0", "just some output"))) is None
    assert await judge.judge(judged(user_next("exit code 1"))) is None, "users' words are not tool results"


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("collected 5 items\n\n===== 4 passed, 1 failed in 0.12s =====", -1),
        ("===== 7 passed in 1.02s =====", 1),
        ("===== 3 passed, 2 errors in 0.50s =====", -1),
        ("Ran 3 tests in 0.001s\n\nOK\n", 1),
        ("Ran 3 tests in 0.001s\n\nFAILED (failures=1)\n", -1),
        (json.dumps({"tests_passed": False}), -1),
        (json.dumps({"passed": 3, "failed": 0}), 1),
        ("no tests here", None),
    ],
)
def test_parse_test_run(text: str, score: int | None) -> None:
    decided = parse_test_run(text)
    assert (decided[0] if decided else None) == score


async def test_test_verdict_judge_on_environment_next_state() -> None:
    state = NextState(
        kind=NextStateKind.ENVIRONMENT,
        messages=({"role": "user", "content": "===== 2 failed, 1 passed in 0.3s ====="},),
    )
    verdict = await TestVerdictJudge().judge(judged(state))
    assert verdict is not None and verdict.score == -1


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("👍", 1),
        ("Thanks!", 1),
        ("thank you so much. Next: what is 3+3?", 1),
        ("That's right.", 1),
        ("Perfect", 1),
        ("LGTM", 1),
        ("👎 not useful", -1),
        ("That's wrong, the answer is 5.", -1),
        ("No, I meant Celsius.", -1),
        ("that's not what I asked", -1),
        ("It doesn't work", -1),
        ("Try again please", -1),
        ("Wrong!", -1),
        ("correct the typo in line 3", None),
        ("Perfectly fine question: what is 3+3?", None),
        ("thanksgiving recipes?", None),
        ("Can you also add tests?", None),
        ("", None),
    ],
)
def test_user_rating(text: str, score: int | None) -> None:
    decided = user_rating(text)
    assert (decided[0] if decided else None) == score


async def test_user_rating_judge_reads_the_first_user_message() -> None:
    verdict = await UserRatingJudge().judge(judged(user_next("👍 great")))
    assert verdict is not None and verdict.score == 1
    assert await UserRatingJudge().judge(judged(tool_next("Thanks!"))) is None


async def test_rules_first_then_llm_when_rules_abstain() -> None:
    gen = ScriptedGenerator(["\\boxed{-1}"])
    judge = FirstDecisive([*default_rule_judges(), LLMJudge(gen, votes=1, policy=RetryPolicy(timeout_s=1, retries=0))])
    explicit = await judge.judge(judged(user_next("Thanks!")))
    assert explicit is not None and explicit.score == 1 and explicit.judge == "rule:user_rating"
    assert gen.calls == [], "the model is not asked when a rule decided"
    vague = await judge.judge(judged(user_next("Hmm, can you make it shorter?")))
    assert vague is not None and vague.score == -1 and vague.judge == "llm:scripted"
    assert len(gen.calls) == 1


async def test_all_abstain_gives_none() -> None:
    assert await FirstDecisive(default_rule_judges()).judge(judged(user_next("what about 3+3?"))) is None
    with pytest.raises(ValueError):
        FirstDecisive([])
