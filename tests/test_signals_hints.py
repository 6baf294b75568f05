"""Hint extraction: answer parsing, the selection rule, LLM votes, the correction rule."""

from __future__ import annotations

import pytest
from test_signals_fakes import ScriptedGenerator, make_turn, tool_next, user_next

from slime_openclaw.errors import JudgeError
from slime_openclaw.signals.context import JudgeInput
from slime_openclaw.signals.hints import (
    CorrectionHintExtractor,
    FirstHint,
    HintSelection,
    LLMHintExtractor,
    build_hint_messages,
    explicit_correction,
    parse_hint_answer,
    select_best_hint,
)
from slime_openclaw.signals.judge import JudgeUnavailable
from slime_openclaw.signals.judge_backends import RetryPolicy

FAST = RetryPolicy(timeout_s=0.2, retries=1, backoff_s=0.01)


def judged(text: str) -> JudgeInput:
    return JudgeInput.from_turn(make_turn(), user_next(text))


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        ("The user wants Celsius. [HINT] Give temperatures in Celsius. [/HINT] \\boxed{1}", (1, "Give temperatures in Celsius.")),
        ("[HINT]first[/HINT] [HINT]  second one  [/HINT]\\boxed{1}", (1, "second one")),
        ("\\boxed{1} but no markers", (1, "")),
        ("[HINT]ignored[/HINT] \\boxed{-1}", (-1, "")),
        ("\\boxed{0}", (None, "")),
        ("nothing", (None, "")),
    ],
)
def test_parse_hint_answer(answer: str, parsed: tuple[int | None, str]) -> None:
    assert parse_hint_answer(answer) == parsed


def test_select_best_hint_rule() -> None:
    long_hint = "Answer in Celsius and show one decimal place."
    assert select_best_hint((1, 1, -1), ["Use Celsius.", long_hint, "x" * 80]) == long_hint, "-1 votes never count"
    assert select_best_hint((1, 1), ["too short", "  Use   metric\nunits.  "]) == "Use metric units.", "whitespace collapsed"
    assert select_best_hint((1,), ["0123456789"]) == "", "10 characters is trivial"
    assert select_best_hint((1,), ["0123456789a"]) == "0123456789a", "over 10 characters is kept"
    assert select_best_hint((1, 1), ["a" * 20, "b" * 20]) == "a" * 20, "ties go to the earliest vote"
    assert select_best_hint((1,), ["y" * 2000]) == "y" * 600, "long hints are cut"
    words = "Use the metric system everywhere. " * 40
    cut = select_best_hint((1,), [words])
    assert 590 <= len(cut) <= 600 and words.startswith(cut) and words[len(cut)] == " ", "cut at a word boundary"
    assert select_best_hint((None, -1), ["", ""]) == ""
    strict = HintSelection(min_positive=2)
    assert select_best_hint((1, -1), ["Use metric units.", ""], strict) == ""
    assert select_best_hint((1, 1), ["Use metric units.", ""], strict) == "Use metric units."


async def test_llm_hint_votes_and_selection() -> None:
    gen = ScriptedGenerator(
        [
            "[HINT]Use Celsius.[/HINT]\\boxed{1}",
            "[HINT]Report the temperature in Celsius, not Fahrenheit.[/HINT]\\boxed{1}",
            "nothing to learn \\boxed{-1}",
        ]
    )
    hint = await LLMHintExtractor(gen, votes=3, policy=FAST).extract(judged("No, in Celsius please."))
    assert hint.accepted and hint.text == "Report the temperature in Celsius, not Fahrenheit."
    assert hint.votes == (1, 1, -1) and hint.source == "llm:scripted"
    body = gen.calls[0][1]["content"]
    assert "[HINT]" in body and "[/HINT]" in body and "No, in Celsius please." in body and "What is 2+2?" in body


async def test_llm_hint_none_accepted() -> None:
    gen = ScriptedGenerator(["\\boxed{-1}", "garbled", JudgeError("boom")])
    hint = await LLMHintExtractor(gen, votes=3, policy=RetryPolicy(timeout_s=0.2, retries=0)).extract(judged("ok"))
    assert not hint.accepted and hint.text == "" and hint.votes == (-1, None, None)


async def test_llm_hint_unavailable_raises_for_retry() -> None:
    gen = ScriptedGenerator([JudgeError("connection refused")])
    with pytest.raises(JudgeUnavailable):
        await LLMHintExtractor(gen, votes=2, policy=FAST).extract(judged("ok"))


@pytest.mark.parametrize(
    ("text", "is_correction"),
    [
        ("No, I meant the capital of Australia.", True),
        ("Actually, use Python 3.11 syntax.", True),
        ("Please don't use bullet points.", True),
        ("Don't add a summary at the end.", True),
        ("It should be 5, not 4.", True),
        ("Instead, write it as a haiku.", True),
        ("Not Fahrenheit, but Celsius.", True),
        ("Thanks! What is 3+3?", False),
        ("Nothing else, bye.", False),
        ("Notice the second line.", False),
    ],
)
def test_explicit_correction(text: str, is_correction: bool) -> None:
    assert (explicit_correction(text) is not None) == is_correction


async def test_correction_extractor() -> None:
    hint = await CorrectionHintExtractor().extract(judged("Please don't  use bullet points."))
    assert hint is not None and hint.accepted
    assert hint.text == 'The user wants this: "Please don\'t use bullet points."'
    assert await CorrectionHintExtractor().extract(judged("Great, thanks")) is None
    assert await CorrectionHintExtractor().extract(JudgeInput.from_turn(make_turn(), tool_next("No, I meant x"))) is None


async def test_first_hint_rule_before_model() -> None:
    gen = ScriptedGenerator(["[HINT]Model hint text here.[/HINT]\\boxed{1}"])
    chain = FirstHint([CorrectionHintExtractor(), LLMHintExtractor(gen, votes=1, policy=FAST)])
    ruled = await chain.extract(judged("No, I meant in Celsius."))
    assert ruled is not None and ruled.source == "rule:correction" and gen.calls == []
    modelled = await chain.extract(judged("Hmm, make it shorter"))
    assert modelled is not None and modelled.source == "llm:scripted" and modelled.text == "Model hint text here."


def test_hint_prompt_mentions_tool_role() -> None:
    body = build_hint_messages(JudgeInput.from_turn(make_turn(), tool_next("exit code 1")))[1]["content"]
    assert "role: tool" in body and "\\boxed{1}" in body and "\\boxed{-1}" in body
