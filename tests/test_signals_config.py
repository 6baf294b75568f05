"""Signal configuration: parsing, the mapping from the package config, generator and pipeline
factories (votes spread over two real judge servers on loopback)."""

from __future__ import annotations

import pytest
from test_signals_fakes import CharRenderer, ScoringEngine, ScriptedGenerator, make_turn, user_next
from test_signals_judge import _ChatServer, _serve

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.signals.config import SignalsConfig, build_pipeline, make_generator
from slime_openclaw.signals.context import JudgeInput
from slime_openclaw.signals.hints import FirstHint
from slime_openclaw.signals.judge import LLMJudge
from slime_openclaw.signals.judge_backends import (
    EngineTextGenerator,
    JudgeSampling,
    OpenAIChatGenerator,
    RetryPolicy,
    SpreadGenerator,
)
from slime_openclaw.signals.rules import FirstDecisive
from slime_openclaw.signals.teacher import HintPlacement
from slime_openclaw.types import Method


def test_from_mapping_parses_and_validates() -> None:
    config = SignalsConfig.from_mapping({"method": "opd", "hint_placement": "system", "teacher_top_k": 5})
    assert config.method is Method.OPD and config.hint_placement is HintPlacement.SYSTEM and config.teacher_top_k == 5
    for bad in ({"votes": 3}, {"method": "ppo"}, {"judge": "magic"}, {"judge_votes": 0}, {"teacher": "oracle"}):
        with pytest.raises(ConfigError):
            SignalsConfig.from_mapping(bad)


def test_from_openclaw() -> None:
    package = OpenClawConfig.from_mapping(
        {
            "openclaw_method": "combine",
            "openclaw_judge_endpoints": ["http://127.0.0.1:1/v1"],
            "openclaw_judge_votes": 5,
            "openclaw_judge_timeout_s": 7.5,
            "openclaw_judge_max_retries": 1,
            "openclaw_hint_votes": 2,
            "openclaw_teacher_endpoint": "http://127.0.0.1:2",
            "openclaw_signal_workers": 6,
        }
    )
    config = SignalsConfig.from_openclaw(package)
    assert (config.method, config.judge_votes, config.hint_votes, config.concurrency) == (Method.COMBINE, 5, 2, 6)
    assert config.retry_policy == RetryPolicy(timeout_s=7.5, retries=1, backoff_s=config.retry_backoff_s)
    assert config.teacher == "reference" and config.needs_model


def test_pipeline_shapes_per_method() -> None:
    gen = ScriptedGenerator(["\\boxed{1}"])
    binary = build_pipeline(SignalsConfig(method=Method.BINARY), CharRenderer(), gen, None)
    assert isinstance(binary.judge, FirstDecisive) and binary.hints is None and binary.teacher is None
    combine = build_pipeline(SignalsConfig(), CharRenderer(), gen, ScoringEngine())
    assert isinstance(combine.hints, FirstHint) and combine.teacher is not None
    llm_only = build_pipeline(SignalsConfig(method=Method.BINARY, judge="llm"), CharRenderer(), gen, None)
    assert isinstance(llm_only.judge, LLMJudge)
    rules_only = build_pipeline(SignalsConfig(judge="rules", hint="rules"), CharRenderer(), None, ScoringEngine())
    assert rules_only.judge is not None
    with pytest.raises(ConfigError):
        build_pipeline(SignalsConfig(method=Method.BINARY), CharRenderer(), None, None)
    with pytest.raises(ConfigError):
        build_pipeline(SignalsConfig(teacher="reference"), CharRenderer(), gen, ScoringEngine())


def test_make_generator_kinds() -> None:
    sampling = JudgeSampling()
    assert isinstance(make_generator(["http://127.0.0.1:1/v1"], "openai", sampling), OpenAIChatGenerator)
    engine = make_generator(["http://127.0.0.1:1"], "sglang", sampling, renderer=CharRenderer(), tokenizer=object())  # type: ignore[arg-type]
    assert isinstance(engine, EngineTextGenerator) and engine.owns_engine
    for urls, protocol in (([], "openai"), (["slime:judge"], "openai"), (["http://x"], "grpc"), (["http://x"], "sglang")):
        with pytest.raises(ConfigError):
            make_generator(urls, protocol, sampling)


async def test_votes_spread_over_two_judge_servers() -> None:
    first, second = _ChatServer([(200, "\\boxed{1}")]), _ChatServer([(200, "\\boxed{-1}")])
    runner_a, url_a = await _serve(first)
    runner_b, url_b = await _serve(second)
    generator = make_generator([url_a, url_b], "openai", JudgeSampling(), model="prm")
    try:
        assert isinstance(generator, SpreadGenerator)
        judge = LLMJudge(generator, votes=3, policy=RetryPolicy(timeout_s=2.0, retries=0))
        verdict = await judge.judge(JudgeInput.from_turn(make_turn(), user_next("ok")))
    finally:
        await generator.aclose()  # type: ignore[attr-defined]
        await runner_a.cleanup()
        await runner_b.cleanup()
    assert (len(first.bodies), len(second.bodies)) == (2, 1)
    assert verdict.votes == (1, -1, 1) and verdict.score == 1
