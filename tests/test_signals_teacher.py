"""Teacher context and teacher log-probs: placement of the hint, the alignment rules, and
failures. The alignment against a forward pass through the real engine is in test_signals_engine.py."""

from __future__ import annotations

import pytest
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (pytest fixtures)
from test_signals_fakes import CHAT, HINT, make_turn

from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import GenerateOutput
from slime_openclaw.errors import JudgeError
from slime_openclaw.signals.judge import JudgeUnavailable
from slime_openclaw.signals.judge_backends import RetryPolicy
from slime_openclaw.signals.teacher import (
    HINT_MARKER,
    HintPlacement,
    TeacherScorer,
    add_hint,
    align_teacher_output,
)
from slime_openclaw.types import FinishReason


def test_hint_appended_to_last_user_message() -> None:
    out = add_hint(CHAT, HINT)
    assert out[3]["content"] == f"And 3+3?\n\n{HINT_MARKER}\n{HINT}"
    assert out[:3] == list(CHAT[:3]) and CHAT[3]["content"] == "And 3+3?", "input untouched"


def test_hint_in_content_parts() -> None:
    parts = ({"role": "user", "content": [{"type": "text", "text": "Describe"}]},)
    out = add_hint(parts, HINT)
    assert out[0]["content"][-1] == {"type": "text", "text": f"{HINT_MARKER}\n{HINT}"}


def test_hint_as_system_note() -> None:
    out = add_hint(CHAT, HINT, HintPlacement.SYSTEM)
    assert out[0]["content"] == f"Be brief.\n\n{HINT_MARKER}\n{HINT}" and out[3] == CHAT[3]
    bare = add_hint(CHAT[1:], HINT, HintPlacement.SYSTEM)
    assert bare[0] == {"role": "system", "content": f"{HINT_MARKER}\n{HINT}"} and len(bare) == 4


def test_no_user_message_falls_back_to_system() -> None:
    out = add_hint(({"role": "tool", "content": "x"},), HINT)
    assert out[0]["role"] == "system" and out[1] == {"role": "tool", "content": "x"}


def _output(values: tuple, tops: tuple = ()) -> GenerateOutput:
    return GenerateOutput(
        output_ids=(), output_log_probs=(), finish_reason=FinishReason.LENGTH, weight_version=2, prompt_tokens=9,
        input_log_probs=values, input_top_logprobs=tops,
    )


def test_alignment_takes_the_trailing_response_span() -> None:
    padded = _output((None, -0.1, -0.2, -0.3))  # SGLang >= 0.4 / embedded: first entry padded
    unpadded = _output((-0.1, -0.2, -0.3))  # older SGLang: no pad when logprob_start_len > 0
    assert align_teacher_output(padded, 3, 0)[0] == (-0.1, -0.2, -0.3)
    assert align_teacher_output(unpadded, 3, 0)[0] == (-0.1, -0.2, -0.3)
    with pytest.raises(JudgeError):
        align_teacher_output(_output((None, -0.2, -0.3)), 3, 0)
    with pytest.raises(JudgeError):
        align_teacher_output(_output((-0.2, -0.3)), 3, 0)
    tops = (None, ((-0.1, 5), (-2.0, 6)), ((-0.2, 7), (-1.0, 5)))
    _, ids, lps = align_teacher_output(_output((None, -0.1, -0.2), tops), 2, 2)
    assert ids == ((5, 6), (7, 5)) and lps == ((-0.1, -2.0), (-0.2, -1.0))
    with pytest.raises(JudgeError):
        align_teacher_output(_output((None, -0.1, -0.2), tops), 2, 3)


async def test_teacher_engine_down_is_unavailable(tiny_tokenizer) -> None:  # noqa: F811
    renderer = ChatRenderer(tiny_tokenizer)
    turn = make_turn(messages=CHAT)
    async with EngineClient("http://127.0.0.1:9", connect_timeout=0.2) as client:
        scorer = TeacherScorer(client, renderer, policy=RetryPolicy(timeout_s=1.0, retries=1, backoff_s=0.01))
        with pytest.raises(JudgeUnavailable):
            await scorer.score(turn, HINT)


async def test_turn_without_messages_cannot_be_scored(tiny_tokenizer) -> None:  # noqa: F811
    scorer = TeacherScorer(EngineClient("http://127.0.0.1:9"), ChatRenderer(tiny_tokenizer))
    with pytest.raises(JudgeError, match="no messages"):
        await scorer.score(make_turn(messages=()), HINT)
