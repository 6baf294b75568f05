"""The embedded engine's KV-cache forward (engine/kv.py) on the installed transformers and the older keyword.

transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name "will be removed in
version 5.40.0"); 5.12, which slime's SGLang pin installs, knows only the old one. The
engine's prefill, single decode and batched decode must not use the deprecated path where
the new one exists, and must still work where only the old one does.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from slime_openclaw.engine import batching, kv


def small_model() -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return Qwen2ForCausalLM(config).eval()


class OldKeywordModel(torch.nn.Module):
    """A causal LM whose ``forward`` takes and returns ``past_key_values`` only (transformers <= 5.23)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[str] = []

    def forward(self, input_ids: torch.Tensor, past_key_values: Any = None, use_cache: bool | None = None,
                **kwargs: Any) -> Any:
        self.calls.append("past_key_values")
        keyword = kv.cache_keyword(type(self.inner))
        out = self.inner(input_ids=input_ids, use_cache=use_cache, **{keyword: past_key_values}, **kwargs)
        return _OldOutput(out.logits, getattr(out, keyword) if use_cache else None)


class _OldOutput:
    def __init__(self, logits: torch.Tensor, cache: Any) -> None:
        self.logits, self.past_key_values = logits, cache


def decode_three(model: Any, ids: list[int]) -> list[torch.Tensor]:
    """Prefill ``ids[:-3]`` with a cache, then decode the last three tokens one at a time."""
    from transformers import DynamicCache

    logits, cache = kv.forward(model, DynamicCache(), input_ids=torch.tensor([ids[:-3]]))
    rows = [logits[0, -1]]
    for token in ids[-3:-1]:
        logits, cache = kv.forward(model, cache, input_ids=torch.tensor([[token]]))
        rows.append(logits[0, -1])
    return rows


def test_cached_decode_equals_full_forward_without_deprecation_warnings() -> None:
    model = small_model()
    ids = [3, 9, 27, 14, 5, 60, 33, 2]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning about past_key_values fails here
        rows = decode_three(model, ids)
        full, none = kv.forward(model, None, input_ids=torch.tensor([ids]))
    assert none is None
    for row, position in zip(rows, (len(ids) - 4, len(ids) - 3, len(ids) - 2), strict=True):
        assert torch.allclose(row, full[0, position], atol=1e-5)


def test_the_older_keyword_still_works() -> None:
    model = small_model()
    old = OldKeywordModel(model)
    assert kv.cache_keyword(OldKeywordModel) == "past_key_values"
    ids = [3, 9, 27, 14, 5, 60, 33, 2]
    with torch.no_grad():
        ours, theirs = decode_three(old, ids), decode_three(model, ids)
    assert old.calls == ["past_key_values"] * 3
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("wrap", [False, True])
def test_batched_decode_step_equals_single_decodes(wrap) -> None:
    from transformers import DynamicCache

    model = small_model()
    runner = OldKeywordModel(model) if wrap else model
    prompts = [[3, 9, 27, 14, 5], [7, 8], [11, 12, 13]]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        caches = [kv.forward(runner, DynamicCache(), input_ids=torch.tensor([p]))[1] for p in prompts]
        tokens = [40, 41, 42]
        assert batching.can_batch(caches)
        logits, grown = batching.decode_step(runner, tokens, caches)
        for row, (prompt, token) in enumerate(zip(prompts, tokens, strict=True)):
            alone, _ = kv.forward(runner, None, input_ids=torch.tensor([prompt + [token]]))
            assert torch.allclose(logits[row], alone[0, -1], atol=1e-5)
            assert grown[row].get_seq_length() == len(prompt) + 1
