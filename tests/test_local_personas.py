"""Simulated users and the preference scorer: seeded reactions, rules the signals can read, scores."""

from __future__ import annotations

import json
import random

import pytest

from slime_openclaw.local.personal import personas as P
from slime_openclaw.local.personal.dialogues import CORRECTION_HINT, StyleMix, simulate_session, styled_reply
from slime_openclaw.local.personal.scoring import answer_correct, has_ai_look, is_specific, preference_score
from slime_openclaw.signals.context import JudgeInput
from slime_openclaw.signals.hints import CorrectionHintExtractor, explicit_correction
from slime_openclaw.signals.rules import tool_outcome, user_rating
from slime_openclaw.types import FinishReason, NextState, NextStateKind, Turn, TurnType

STUDENT_PROBLEM = P.Problem(P.STUDENT, "What is 7 + 5?", 7, "+", 5)
TEACHER_PROBLEM = P.Problem(P.TEACHER, "Write a grading comment. The student wrote 9 - 4 = 5.", 9, "-", 4)
WEATHER_PROBLEM = P.Problem(P.TOOL_USER, "Weather in Oslo?", city="Oslo", weather=(-3, "rainy"),
                            tools=(P.WEATHER_TOOL,))


@pytest.mark.parametrize(("text", "score"), [
    ("7 plus 5 makes 12.", 1.0),
    ("**Answer:** 12\n- Step: 7 + 5 = 12", 0.0),
    ("## Solution\n12", 0.0),
    ("1. add them\n2. get 12", 0.0),
    ("Final answer: 12", 0.0),
    ("", 0.0),
])
def test_student_score_is_the_absence_of_the_ai_look(text: str, score: float) -> None:
    assert preference_score(P.STUDENT, text, STUDENT_PROBLEM) == score


@pytest.mark.parametrize(("text", "score"), [
    ("Nice work, you took 4 away from 9 and got 5.", 1.0),
    ("Well done!", 0.5),             # friendly, not specific
    ("9 - 4 = 5 is correct.", 0.5),  # specific, not friendly
    ("Correct.", 0.0),
    ("Great job, you got it.", 0.5),  # friendly, but names no step
])
def test_teacher_score_wants_specific_and_friendly(text: str, score: float) -> None:
    assert preference_score(P.TEACHER, text, TEACHER_PROBLEM) == score


def test_exact_specificity_checks_the_students_numbers() -> None:
    assert is_specific("Great job, 2 + 3 = 5.", TEACHER_PROBLEM)
    assert not is_specific("Great job, 2 + 3 = 5.", TEACHER_PROBLEM, exact=True)
    assert is_specific("Nice, 9 - 4 = 5.", TEACHER_PROBLEM, exact=True)


def test_tool_user_score_wants_the_right_call() -> None:
    good = P.ToolCall("c1", "get_weather", '{"city": "oslo"}')
    assert preference_score(P.TOOL_USER, "", WEATHER_PROBLEM, [good]) == 1.0
    assert preference_score(P.TOOL_USER, "", WEATHER_PROBLEM, [P.ToolCall("c1", "get_weather", '{"city": "Rome"}')]) == 0
    assert preference_score(P.TOOL_USER, "", WEATHER_PROBLEM, [P.ToolCall("c1", "get_weather", "{oops")]) == 0
    assert preference_score(P.TOOL_USER, "It is rainy in Oslo.", WEATHER_PROBLEM) == 0
    with pytest.raises(ValueError, match="unknown persona"):
        preference_score("pirate", "arr")


def test_styles_score_as_intended() -> None:
    rng = random.Random(0)
    for persona in (P.StudentPersona(), P.TeacherPersona()):
        for _ in range(50):
            problem = persona.new_problem(rng)
            assert preference_score(persona.name, styled_reply(problem, True, rng), problem) == 1.0
            assert preference_score(persona.name, styled_reply(problem, False, rng), problem) == 0.0
    assert answer_correct("7 plus 5 makes 12.", STUDENT_PROBLEM)
    assert not answer_correct("7 plus 5 makes 13.", STUDENT_PROBLEM)
    assert not has_ai_look("It is -3 degrees in Oslo.")


def _conversation(persona: P.Persona, seed: int) -> list[dict]:
    _, messages = simulate_session(persona, StyleMix(), random.Random(seed))
    return messages


@pytest.mark.parametrize("persona", P.default_personas(), ids=lambda p: p.name)
def test_sessions_are_deterministic_under_a_seed(persona: P.Persona) -> None:
    assert _conversation(persona, 7) == _conversation(persona, 7)
    assert any(_conversation(persona, 7) != _conversation(persona, s) for s in range(8, 12))


def test_reactions_are_readable_by_the_rule_based_signals() -> None:
    for text in P.THANKS:
        assert user_rating(text) == (1, "explicit positive rating from the user")
    for text in (*[r.format(question="What is 1 + 1?") for r in P.REASKS], P.GIVE_UP):
        assert user_rating(text) is not None and user_rating(text)[0] == -1, text
    for text in (*P.STUDENT_DIRECTIVES, *P.TEACHER_DIRECTIVES, P.TOOL_DIRECTIVE):
        assert explicit_correction(text) == text, text
        if text.startswith("No, I meant"):
            assert user_rating(text)[0] == -1  # type: ignore[index]


async def test_the_hint_text_used_in_pretraining_is_the_extractors() -> None:
    directive = P.STUDENT_DIRECTIVES[0]
    turn = Turn("s", 0, TurnType.MAIN, ({"role": "user", "content": "What is 7 + 5?"},), (), (1,), (2,), (-0.1,),
                (0,), FinishReason.STOP, {"role": "assistant", "content": "**Answer:** 12"})
    item = JudgeInput.from_turn(turn, NextState(NextStateKind.USER, ({"role": "user", "content": directive},)))
    hint = await CorrectionHintExtractor().extract(item)
    assert hint is not None and hint.accepted
    assert hint.text == CORRECTION_HINT.format(text=directive)


def test_student_reacts_by_satisfaction_and_gives_up_after_max_attempts() -> None:
    student = P.StudentPersona(p_directive=1.0)
    rng = random.Random(0)
    happy = student.react(STUDENT_PROBLEM, [], P.AgentReply("7 plus 5 makes 12."), 1, rng)
    assert happy.kind is P.ReactionKind.SATISFIED and happy.ends_session
    told = student.react(STUDENT_PROBLEM, [], P.AgentReply("**12**"), 1, rng)
    assert told.kind is P.ReactionKind.DIRECTIVE and not told.ends_session
    assert told.messages[0]["content"] in P.STUDENT_DIRECTIVES
    reask = P.StudentPersona(p_directive=0.0).react(STUDENT_PROBLEM, [], P.AgentReply("**12**"), 2, rng)
    assert reask.kind is P.ReactionKind.REASK
    gone = student.react(STUDENT_PROBLEM, [], P.AgentReply("**12**"), 3, rng)
    assert gone.kind is P.ReactionKind.GIVE_UP and gone.ends_session


def test_tool_user_runs_the_tool_and_judges_the_answer() -> None:
    user = P.ToolUserPersona(p_error=0.0)
    rng = random.Random(0)
    call = P.ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
    result = user.react(WEATHER_PROBLEM, [], P.AgentReply("", (call,)), 1, rng)
    assert result.kind is P.ReactionKind.TOOL_RESULT
    (message,) = result.messages
    assert message["role"] == "tool" and message["tool_call_id"] == "call_1"
    assert json.loads(message["content"]) == {"ok": True, "city": "Oslo", "temp_c": -3, "sky": "rainy"}
    assert tool_outcome(message) == (1, "ok true")
    history = [{"role": "user", "content": WEATHER_PROBLEM.text}, {"role": "assistant", "content": ""}, message]
    thanks = user.react(WEATHER_PROBLEM, history, P.AgentReply("It is -3 degrees and rainy in Oslo."), 2, rng)
    assert thanks.kind is P.ReactionKind.SATISFIED
    wrong = user.react(WEATHER_PROBLEM, history, P.AgentReply("It is 20 degrees."), 2, rng)
    assert wrong.kind is P.ReactionKind.REASK
    no_tool = user.react(WEATHER_PROBLEM, history[:1], P.AgentReply("Sunny, I guess."), 1, rng)
    assert no_tool.kind is P.ReactionKind.DIRECTIVE and no_tool.messages[0]["content"] == P.TOOL_DIRECTIVE


@pytest.mark.parametrize(("arguments", "error"), [
    ('{"city": "Atlantis"}', "unknown city: Atlantis"),
    ("{}", "missing argument: city"),
    ("not json", "arguments are not valid JSON"),
])
def test_weather_tool_errors_are_explicit(arguments: str, error: str) -> None:
    out = P.run_weather_tool(WEATHER_PROBLEM, P.ToolCall("c", "get_weather", arguments), 0.0, random.Random(0))
    assert out == {"error": error}
    assert tool_outcome({"role": "tool", "content": json.dumps(out)})[0] == -1  # type: ignore[index]
    flaky = P.run_weather_tool(WEATHER_PROBLEM, P.ToolCall("c", "get_weather", '{"city": "Oslo"}'), 1.0,
                               random.Random(0))
    assert flaky == {"error": "weather service unavailable, try again"}
