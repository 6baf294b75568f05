"""One batched decode step over sequences whose KV caches have different lengths.

Each running sequence keeps its own ``DynamicCache``. To decode one token for several of
them in a single forward pass, their caches are left-padded to a common length and
stacked, the padding is masked out through ``attention_mask``, every row gets its true
position through ``position_ids``, and afterwards each row's cache (without the padding) is
handed back to its sequence. Masked positions get exactly zero attention weight, so the
result equals separate forward passes up to float summation order.

Only plain ``DynamicCache`` objects (full attention layers) are batched; callers fall back
to one forward pass per sequence for anything else. This module does not sample.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from slime_openclaw.engine import kv


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """``(keys, values)`` per layer of a plain dynamic cache, or None if it is not one."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if type(cache) is not DynamicCache or not cache.layers:
        return None
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for layer in cache.layers:
        if type(layer) is not DynamicLayer or layer.keys is None or layer.values is None:
            return None
        pairs.append((layer.keys, layer.values))
    return pairs


def can_batch(caches: list[Any]) -> bool:
    """Whether these caches can go through ``decode_step`` together."""
    return len(caches) > 1 and all(_layers(cache) is not None for cache in caches)


def decode_step(model: Any, tokens: list[int], caches: list[Any]) -> tuple[torch.Tensor, list[Any]]:
    """Forward one new token per sequence; returns last-position logits ``[B, V]`` and new caches."""
    from transformers import DynamicCache

    per_seq: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for cache in caches:
        layers = _layers(cache)
        if layers is None:
            raise ValueError("decode_step needs plain DynamicCache objects (see can_batch)")
        per_seq.append(layers)
    lengths = [int(layers[0][0].shape[-2]) for layers in per_seq]
    longest = max(lengths)
    batched = DynamicCache()
    for index in range(len(per_seq[0])):
        pairs = list(zip(per_seq, lengths, strict=True))
        keys = torch.cat([F.pad(layers[index][0], (0, 0, longest - n, 0)) for layers, n in pairs])
        values = torch.cat([F.pad(layers[index][1], (0, 0, longest - n, 0)) for layers, n in pairs])
        batched.update(keys, values, index)
    mask = torch.ones(len(tokens), longest + 1, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, : longest - n] = 0
    logits, grown = kv.forward(
        model,
        batched,
        input_ids=torch.tensor(tokens, dtype=torch.long).unsqueeze(-1),
        attention_mask=mask,
        position_ids=torch.tensor(lengths, dtype=torch.long).unsqueeze(-1),
    )
    new_caches = []
    for row, n in enumerate(lengths):
        cache = DynamicCache()
        for index, layer in enumerate(grown.layers):
            cut = longest - n
            cache.update(layer.keys[row : row + 1, :, cut:].clone(), layer.values[row : row + 1, :, cut:].clone(), index)
        new_caches.append(cache)
    return logits[:, -1], new_caches
