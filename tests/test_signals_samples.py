"""Sample building per method: every rule of signals/samples.py, with exact zeros."""

from __future__ import annotations

import pickle

import pytest
from test_signals_fakes import make_turn

from slime_openclaw.signals.samples import build_samples, no_sample_reason
from slime_openclaw.signals.teacher import TeacherResult
from slime_openclaw.types import Hint, Method, TurnType, Verdict

TURN = make_turn(response_ids=(11, 12, 13, 2))
TEACHER = TeacherResult(log_probs=(-0.1, -0.2, -0.3, -0.4), prompt_ids=(1, 9, 5))
TOPK = TeacherResult(
    log_probs=(-0.1, -0.2, -0.3, -0.4),
    prompt_ids=(1, 9, 5),
    topk_ids=((11, 4), (12, 4), (13, 4), (2, 4)),
    topk_log_probs=((-0.1, -3.0), (-0.2, -3.0), (-0.3, -3.0), (-0.4, -3.0)),
)
HINT = Hint(text="Answer with only the number.", accepted=True, votes=(1,))
REJECTED = Hint(text="", accepted=False, votes=(-1,))
PLUS, MINUS, NEUTRAL = Verdict(score=1, votes=(1,)), Verdict(score=-1, votes=(-1, -1)), Verdict(score=0, votes=(1, -1))


def only(samples: list) -> object:
    assert len(samples) == 1
    return samples[0]


def test_common_fields_are_the_turns_exact_tokens() -> None:
    sample = only(build_samples(TURN, MINUS, None, None, Method.BINARY))
    assert sample.prompt_ids == TURN.prompt_ids and sample.response_ids == TURN.response_ids
    assert sample.loss_mask == (1, 1, 1, 1)
    assert sample.rollout_log_probs == TURN.response_log_probs and sample.weight_versions == TURN.weight_versions
    assert (sample.session_id, sample.turn_index, sample.method) == ("s1", 0, Method.BINARY)
    assert sample.sample_id == "s1:0:binary"
    assert sample.tokens == TURN.prompt_ids + TURN.response_ids
    assert pickle.loads(pickle.dumps(sample)) == sample


@pytest.mark.parametrize(("verdict", "reward"), [(PLUS, 1.0), (MINUS, -1.0)])
def test_binary_reward_is_the_score(verdict: Verdict, reward: float) -> None:
    sample = only(build_samples(TURN, verdict, HINT, TEACHER, Method.BINARY))
    assert sample.reward == reward and type(sample.reward) is float
    assert sample.teacher_log_probs is None and sample.teacher_topk_ids is None


@pytest.mark.parametrize("verdict", [None, NEUTRAL])
def test_binary_without_decisive_score_gives_no_sample(verdict: Verdict | None) -> None:
    assert build_samples(TURN, verdict, HINT, TEACHER, Method.BINARY) == []
    assert no_sample_reason(TURN, None, TEACHER, Method.BINARY) == "no evaluative signal"


def test_opd_needs_an_accepted_hint_and_teacher() -> None:
    sample = only(build_samples(TURN, PLUS, HINT, TOPK, Method.OPD))
    assert sample.reward == 0.0, "OPD samples carry no evaluative reward"
    assert sample.teacher_log_probs == TOPK.log_probs
    assert sample.teacher_topk_ids == TOPK.topk_ids and sample.teacher_topk_log_probs == TOPK.topk_log_probs
    assert build_samples(TURN, PLUS, REJECTED, TEACHER, Method.OPD) == []
    assert build_samples(TURN, PLUS, HINT, None, Method.OPD) == []
    assert build_samples(TURN, PLUS, None, None, Method.OPD) == []


def test_combine_both_signals() -> None:
    sample = only(build_samples(TURN, MINUS, HINT, TEACHER, Method.COMBINE))
    assert sample.reward == -1.0 and sample.teacher_log_probs == TEACHER.log_probs


def test_combine_reward_only_has_no_teacher_term() -> None:
    sample = only(build_samples(TURN, PLUS, REJECTED, None, Method.COMBINE))
    assert sample.reward == 1.0
    assert sample.teacher_log_probs is None, "absent OPD term is None, never rollout log-probs or zeros"


def test_combine_teacher_only_has_reward_exactly_zero() -> None:
    for verdict in (None, NEUTRAL):
        sample = only(build_samples(TURN, verdict, HINT, TEACHER, Method.COMBINE))
        assert sample.reward == 0.0 and str(sample.reward) == "0.0"
        assert sample.teacher_log_probs == TEACHER.log_probs


def test_combine_nothing_gives_no_sample() -> None:
    assert build_samples(TURN, NEUTRAL, REJECTED, TEACHER, Method.COMBINE) == []
    assert no_sample_reason(TURN, None, None, Method.COMBINE) == "no evaluative or directive signal"


def test_side_turns_and_empty_responses_never_train() -> None:
    side = make_turn(turn_type=TurnType.SIDE)
    empty = make_turn(response_ids=())
    for method in Method:
        assert build_samples(side, PLUS, HINT, TEACHER, method) == []
        assert build_samples(empty, PLUS, HINT, None, method) == []
    assert no_sample_reason(side, 1.0, None, Method.BINARY) == "side turn"


def test_misaligned_teacher_is_refused() -> None:
    short = TeacherResult(log_probs=(-0.1, -0.2), prompt_ids=(1,))
    with pytest.raises(ValueError, match="teacher log-probs"):
        build_samples(TURN, None, HINT, short, Method.OPD)
