"""The embedded engine's token math: min-p truncation and SGLang's repetition penalty."""

from __future__ import annotations

import torch

from slime_openclaw.engine import sampling


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    out = sampling.penalize_repetition(logits, [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 3.0]
    assert logits.tolist() == [2.0, -1.0, 0.5, 3.0]  # the input is not modified
    assert sampling.penalize_repetition(logits, [0], 1.0) is logits
    assert sampling.penalize_repetition(logits, [], 1.5) is logits


def test_min_p_keeps_only_tokens_near_the_top() -> None:
    logp = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    generator = sampling.make_generator(0)
    drawn = {sampling.choose_token(logp, temperature=1.0, top_p=1.0, top_k=-1, min_p=0.5, generator=generator)
             for _ in range(300)}
    assert drawn == {0, 1}  # 0.15 and 0.05 are below 0.5 * 0.5
    everything = {sampling.choose_token(logp, temperature=1.0, top_p=1.0, top_k=-1, generator=generator)
                  for _ in range(600)}
    assert everything == {0, 1, 2, 3}


def test_top_k_and_min_p_combine() -> None:
    logp = torch.log(torch.tensor([0.4, 0.35, 0.2, 0.05]))
    generator = sampling.make_generator(1)
    drawn = {sampling.choose_token(logp, temperature=1.0, top_p=1.0, top_k=3, min_p=0.6, generator=generator)
             for _ in range(300)}
    assert drawn == {0, 1}
