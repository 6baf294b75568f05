"""Configuration of the signal loop and the factory that builds a pipeline from it.

``SignalsConfig`` is parsed once (from a mapping: YAML section, CLI, slime custom config)
and validated; ``build_pipeline`` turns it into judges, hint extractors and a teacher over
the engines and generators the caller provides. This module opens no connection itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slime_openclaw.config import HintConfig, JudgeConfig, OpenClawConfig, TeacherConfig
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.protocol import Engine
from slime_openclaw.errors import ConfigError
from slime_openclaw.signals.hints import (
    CorrectionHintExtractor,
    FirstHint,
    HintExtractor,
    HintSelection,
    LLMHintExtractor,
)
from slime_openclaw.signals.judge import Judge, LLMJudge
from slime_openclaw.signals.judge_backends import (
    ChatRendererLike,
    Detokenizer,
    EngineTextGenerator,
    JudgeSampling,
    OpenAIChatGenerator,
    RetryPolicy,
    SpreadGenerator,
    TextGenerator,
)
from slime_openclaw.signals.pipeline import SignalPipeline
from slime_openclaw.signals.rules import FirstDecisive, default_rule_judges
from slime_openclaw.signals.teacher import HintPlacement, TeacherScorer
from slime_openclaw.types import Method

SOURCES = ("rules", "llm", "rules+llm")
"""Which judges / hint extractors run: rule-based only, model only, or rules first then model."""


_J, _H, _T = JudgeConfig, HintConfig, TeacherConfig  # defaults come from the package config


@dataclass(frozen=True)
class SignalsConfig:
    """Every knob of the signal loop; defaults are those of ``OpenClawConfig`` (config.py).

    Built from the package configuration with ``from_openclaw`` (the normal way: one source
    of truth, the ``openclaw_*`` keys), or from this class's own field names with
    ``from_mapping`` (tests, benchmarks).
    """

    method: Method = Method.COMBINE
    judge: str = "rules+llm"
    """``rules``, ``llm`` or ``rules+llm`` (rules decide when explicit, the LLM otherwise)."""
    judge_votes: int = _J.votes
    hint: str = "rules+llm"
    """``rules``, ``llm`` or ``rules+llm`` (an explicit correction first, else the LLM's hint)."""
    hint_votes: int = _H.votes
    hint_min_chars: int = _H.min_chars
    hint_max_chars: int = _H.max_chars
    judge_temperature: float = _J.temperature
    """Sampling temperature of each judge and hint vote (votes must differ to be worth m)."""
    judge_max_new_tokens: int = _J.max_new_tokens
    vote_timeout_s: float = _J.timeout_s
    vote_retries: int = _J.max_retries
    retry_backoff_s: float = _J.retry_backoff_s
    teacher: str = "policy"
    """``policy`` (the current policy's engine) or ``reference`` (a frozen reference engine)."""
    teacher_temperature: float | None = _T.temperature
    """None: the turn's own sampling temperature (same convention as rollout log-probs)."""
    teacher_top_k: int = _T.topk
    """Teacher top-K per response token for top-K distillation (0: off)."""
    hint_placement: HintPlacement = HintPlacement(_H.placement)
    concurrency: int = 8
    section_chars: int = _J.context_chars

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SignalsConfig:
        """Parse and validate; unknown keys and bad values raise ``ConfigError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown signals keys: {', '.join(unknown)}")
        data = dict(values)
        try:
            if "method" in data:
                data["method"] = Method(data["method"])
            if "hint_placement" in data:
                data["hint_placement"] = HintPlacement(data["hint_placement"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ConfigError`` on an inconsistent setting."""
        if self.judge not in SOURCES or self.hint not in SOURCES:
            raise ConfigError(f"signals judge/hint must be one of {SOURCES}")
        if self.teacher not in ("policy", "reference"):
            raise ConfigError("signals teacher must be 'policy' or 'reference'")
        if min(self.judge_votes, self.hint_votes, self.concurrency) < 1:
            raise ConfigError("signals judge_votes, hint_votes and concurrency must be at least 1")
        if self.vote_timeout_s <= 0 or self.vote_retries < 0 or self.teacher_top_k < 0:
            raise ConfigError("signals vote_timeout_s must be > 0, vote_retries and teacher_top_k >= 0")

    @classmethod
    def from_openclaw(cls, config: OpenClawConfig) -> SignalsConfig:
        """The signal settings of the package-wide configuration (slime_openclaw/config.py).

        Judge and hint modes are ``openclaw_judge_mode`` / ``openclaw_hint_mode`` with ``auto``
        resolved (rules plus the model when endpoints are set, rules alone otherwise); the
        teacher is the policy engine for ``openclaw_teacher_endpoint: policy``, the reference
        engine otherwise.
        """
        return cls(
            method=config.method,
            judge=config.judge_mode,
            judge_votes=config.judge.votes,
            hint=config.hint_mode,
            hint_votes=config.hint.votes,
            hint_min_chars=config.hint.min_chars,
            hint_max_chars=config.hint.max_chars,
            judge_temperature=config.judge.temperature,
            judge_max_new_tokens=config.judge.max_new_tokens,
            vote_timeout_s=config.judge.timeout_s,
            vote_retries=config.judge.max_retries,
            retry_backoff_s=config.judge.retry_backoff_s,
            teacher="policy" if config.teacher.endpoint == "policy" else "reference",
            teacher_temperature=config.teacher.temperature,
            teacher_top_k=config.teacher.topk,
            hint_placement=HintPlacement(config.hint.placement),
            concurrency=config.signal_workers,
            section_chars=config.judge.context_chars,
        )

    @property
    def sampling(self) -> JudgeSampling:
        """Sampling of judge and hint votes."""
        return JudgeSampling(temperature=self.judge_temperature, max_new_tokens=self.judge_max_new_tokens)

    @property
    def retry_policy(self) -> RetryPolicy:
        """Per-vote timeout and retries."""
        return RetryPolicy(timeout_s=self.vote_timeout_s, retries=self.vote_retries, backoff_s=self.retry_backoff_s)

    @property
    def needs_model(self) -> bool:
        """True when a judge/hint text generator must be provided."""
        uses_judge = self.method is not Method.OPD and "llm" in self.judge
        uses_hint = self.method is not Method.BINARY and "llm" in self.hint
        return uses_judge or uses_hint


def make_generator(
    urls: tuple[str, ...] | list[str],
    protocol: str,
    sampling: JudgeSampling,
    *,
    model: str = "judge",
    api_key: str | None = None,
    renderer: ChatRendererLike | None = None,
    tokenizer: Detokenizer | None = None,
    stop_token_ids: tuple[int, ...] = (),
) -> TextGenerator:
    """A text generator over judge URLs, votes spread over them in turn; close it with ``aclose``.

    ``protocol`` ``openai``: chat completions at each URL. ``sglang``: native ``/generate``,
    rendering with ``renderer`` and decoding with ``tokenizer`` (the judge model's own).
    ``slime:NAME`` endpoints must be resolved to URLs by the caller first.
    """
    if not urls:
        raise ConfigError("a model judge needs at least one endpoint URL")
    generators: list[TextGenerator] = []
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"judge endpoint {url!r} is not an http(s) URL (resolve slime:NAME first)")
        if protocol == "openai":
            generators.append(OpenAIChatGenerator(url, model, api_key=api_key or None, sampling=sampling))
        elif protocol == "sglang":
            if renderer is None or tokenizer is None:
                raise ConfigError("a native-protocol judge needs the judge model's chat template and tokenizer")
            client = EngineClient(url, api_key=api_key or None)
            generators.append(
                EngineTextGenerator(client, renderer, tokenizer, sampling, stop_token_ids, name=url, owns_engine=True)
            )
        else:
            raise ConfigError(f"judge protocol must be openai or sglang, got {protocol!r}")
    return generators[0] if len(generators) == 1 else SpreadGenerator(generators)


def build_judge(config: SignalsConfig, generator: TextGenerator | None) -> Judge:
    """Rule judges, the LLM judge, or rules first then the LLM, as configured."""
    judges: list[Judge] = list(default_rule_judges()) if "rules" in config.judge else []
    if "llm" in config.judge:
        if generator is None:
            raise ConfigError("the LLM judge needs a judge model (engine or OpenAI-compatible URL)")
        judges.append(LLMJudge(generator, config.judge_votes, config.retry_policy))
    return judges[0] if len(judges) == 1 else FirstDecisive(judges)


def build_hints(config: SignalsConfig, generator: TextGenerator | None) -> HintExtractor:
    """Rule extractor, the LLM extractor, or the correction rule first then the LLM."""
    selection = HintSelection(min_chars=config.hint_min_chars, max_chars=config.hint_max_chars)
    extractors: list[HintExtractor] = [CorrectionHintExtractor(selection)] if "rules" in config.hint else []
    if "llm" in config.hint:
        if generator is None:
            raise ConfigError("the LLM hint extractor needs a judge model (engine or OpenAI-compatible URL)")
        extractors.append(LLMHintExtractor(generator, config.hint_votes, config.retry_policy, selection))
    return extractors[0] if len(extractors) == 1 else FirstHint(extractors)


def build_pipeline(
    config: SignalsConfig,
    renderer: ChatRendererLike,
    generator: TextGenerator | None,
    policy_engine: Engine | None,
    reference_engine: Engine | None = None,
    hint_generator: TextGenerator | None = None,
) -> SignalPipeline:
    """The pipeline for ``config.method``; the teacher engine is chosen by ``config.teacher``.

    ``generator`` serves the LLM judge, ``hint_generator`` (default: the same) the hint votes.
    """
    judge = build_judge(config, generator) if config.method is not Method.OPD else None
    hints = teacher = None
    if config.method is not Method.BINARY:
        hints = build_hints(config, hint_generator or generator)
        engine = policy_engine if config.teacher == "policy" else reference_engine
        if engine is None:
            raise ConfigError(f"signals teacher '{config.teacher}' needs an engine")
        teacher = TeacherScorer(
            engine,
            renderer,
            temperature=config.teacher_temperature,
            top_k=config.teacher_top_k,
            placement=config.hint_placement,
            policy=config.retry_policy,
        )
    return SignalPipeline(config.method, judge, hints, teacher, config.section_chars)
