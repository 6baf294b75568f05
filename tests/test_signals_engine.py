"""Signals through real parts: the embedded engine serving the tiny model over HTTP.

- Teacher log-probs on the exact response ids, checked against the model's own forward
  pass (the off-by-one of ``logprob_start_len``) at three temperatures, top-K included.
- The LLM judge and hint extractor talking to the engine through ``EngineTextGenerator``:
  the tiny model cannot judge, so whatever it answers must be parsed or counted as a parse
  failure, never crash or stall.
- The worker over a SQLite journal with judge, hints and teacher all on the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (pytest fixtures)
from test_signals_fakes import CHAT, HINT, make_turn, user_next

from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.engine.client import EngineClient
from slime_openclaw.engine.runtime import Runtime
from slime_openclaw.engine.server import ServerThread
from slime_openclaw.journal.sqlite import SqliteJournal
from slime_openclaw.signals.config import SignalsConfig, build_pipeline
from slime_openclaw.signals.context import JudgeInput
from slime_openclaw.signals.hints import LLMHintExtractor
from slime_openclaw.signals.judge import LLMJudge, judge_unavailable
from slime_openclaw.signals.judge_backends import EngineTextGenerator, JudgeSampling, RetryPolicy
from slime_openclaw.signals.teacher import TeacherScorer, add_hint
from slime_openclaw.signals.worker import SignalWorker
from slime_openclaw.types import Method, TurnState

POLICY = RetryPolicy(timeout_s=30.0, retries=1, backoff_s=0.05)
SHORT = JudgeSampling(temperature=1.0, max_new_tokens=16)


@pytest.fixture(scope="module")
def engine_url(tiny_model_path) -> Iterator[str]:  # noqa: F811
    runtime = Runtime.load(tiny_model_path).start()
    try:
        with ServerThread(runtime) as url:
            yield url
    finally:
        runtime.close()


def _forward_log_probs(model_dir, ids: list[int], temperature: float) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
async def test_teacher_log_probs_match_the_forward_pass(
    engine_url: str, tiny_model_path, tiny_tokenizer, temperature: float  # noqa: F811
) -> None:
    renderer = ChatRenderer(tiny_tokenizer)
    response_ids = [*tiny_tokenizer.encode("The answer is 6.", add_special_tokens=False), renderer.stop_token_ids[0]]
    turn = make_turn(
        messages=CHAT,
        response_ids=response_ids,
        prompt_ids=renderer.render_ids(list(CHAT)),
        sampling={"temperature": temperature},
    )
    async with EngineClient(engine_url) as client:
        result = await TeacherScorer(client, renderer, top_k=4).score(turn, HINT)

    prompt = list(result.prompt_ids)
    assert prompt == renderer.render_ids(add_hint(CHAT, HINT)) and prompt != list(turn.prompt_ids)
    lp = _forward_log_probs(tiny_model_path, prompt + response_ids, temperature)
    n, p = len(response_ids), len(prompt)
    expected = torch.stack([lp[p - 1 + j, response_ids[j]] for j in range(n)])
    got = torch.tensor(result.log_probs)
    assert len(result.log_probs) == n
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=0)
    shifted = torch.stack([lp[p + j, response_ids[j]] for j in range(n - 1)])
    assert not torch.allclose(got[:-1], shifted, atol=1e-2), "a one-position shift must be detectable"

    assert result.topk_ids is not None and result.topk_log_probs is not None
    for j in range(n):
        top = torch.topk(lp[p - 1 + j], 4)
        assert list(result.topk_ids[j]) == top.indices.tolist()
        torch.testing.assert_close(torch.tensor(result.topk_log_probs[j]), top.values, atol=2e-4, rtol=0)


def _generator(client: EngineClient, tokenizer) -> EngineTextGenerator:
    renderer = ChatRenderer(tokenizer)
    return EngineTextGenerator(client, renderer, tokenizer, SHORT, stop_token_ids=renderer.stop_token_ids)


async def test_llm_judge_and_hints_through_the_engine(engine_url: str, tiny_tokenizer) -> None:  # noqa: F811
    item = JudgeInput.from_turn(make_turn(messages=CHAT), user_next("No, I meant 4+4."))
    async with EngineClient(engine_url) as client:
        generator = _generator(client, tiny_tokenizer)
        text = await generator.complete([{"role": "user", "content": "Say hi."}])
        assert isinstance(text, str)
        verdict = await LLMJudge(generator, votes=3, policy=POLICY).judge(item)
        hint = await LLMHintExtractor(generator, votes=2, policy=POLICY).extract(item)
    assert len(verdict.votes) == 3 and set(verdict.votes) <= {None, -1, 0, 1}
    assert verdict.failures == sum(v is None for v in verdict.votes)
    assert verdict.parse_failures == verdict.failures, "the engine answered every vote"
    assert not judge_unavailable(verdict)
    assert len(hint.votes) == 2 and (hint.accepted == bool(hint.text))


async def test_worker_with_engine_judge_hints_and_teacher(
    engine_url: str, tiny_tokenizer, tmp_path: Path  # noqa: F811
) -> None:
    renderer = ChatRenderer(tiny_tokenizer)
    response_ids = [*tiny_tokenizer.encode("6", add_special_tokens=False), renderer.stop_token_ids[0]]
    journal = SqliteJournal(tmp_path / "journal.db")
    try:
        for index, reply in enumerate(["No, I meant 4+4.", "Thanks!", "What about 5+5?"]):
            turn = make_turn(
                session_id="e2e", turn_index=index, messages=CHAT, response_ids=response_ids,
                prompt_ids=renderer.render_ids(list(CHAT)), sampling={"temperature": 0.8},
            )
            journal.record_turn(turn)
            journal.attach_next_state(turn.key, user_next(reply))
        config = SignalsConfig(method=Method.COMBINE, judge_votes=2, hint_votes=2, vote_timeout_s=30.0, teacher_top_k=2)
        async with EngineClient(engine_url) as client:
            pipe = build_pipeline(config, renderer, _generator(client, tiny_tokenizer), client)
            worker = SignalWorker(journal, pipe, concurrency=3)
            assert await worker.process_available() == 3
        states = [journal.get(f"e2e:{i}").state for i in range(3)]
        assert states[:2] == [TurnState.READY, TurnState.READY], "explicit correction and thanks are decided by rules"
        assert states[2] in (TurnState.READY, TurnState.DISCARDED)
        samples = {s.turn_index: s for s in journal.drain(10)}
        corrected = samples[0]
        assert corrected.reward == -1.0 and corrected.teacher_log_probs is not None
        assert len(corrected.teacher_log_probs) == len(response_ids) and corrected.teacher_topk_ids is not None
        assert samples[1].reward == 1.0
        assert worker.counters.errors == 0 and worker.counters.deferred == 0
    finally:
        journal.close()
