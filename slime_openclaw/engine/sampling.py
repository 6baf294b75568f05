"""Token-level math of the embedded engine: log-probs under the shared convention, sampling.

The log-prob convention (engine/protocol.py) is ``log_softmax(logits / T)`` with ``T`` the
request's temperature, ``T = 1`` for greedy requests, taken *before* top-p/top-k/min-p
truncation. Sampling draws from the same tempered distribution after truncating it with
top-k, then top-p, then min-p (against the most likely token), and renormalizing (SGLang's
order). A temperature below ``GREEDY_EPS`` or ``top_k == 1`` is greedy (argmax), as in
SGLang. A repetition penalty, like SGLang's penalizers, rescales the logits of tokens
already generated *before* the log-probs are taken, so the reported log-probs are those of
the distribution actually sampled (the trainer's recomputation applies no penalty; the turn
records the penalty).

This module knows nothing about requests, caches or threads; it works on one 1-D logits
vector at a time.
"""

from __future__ import annotations

import torch

GREEDY_EPS = 1e-6
"""Temperatures below this are greedy (SGLang's ``_SAMPLING_EPS``)."""


def is_greedy(temperature: float, top_k: int) -> bool:
    """Whether a request with these settings decodes by argmax."""
    return temperature < GREEDY_EPS or top_k == 1


def convention_temperature(temperature: float) -> float:
    """The ``T`` of the log-prob convention: the request's temperature, or 1 when greedy."""
    return 1.0 if temperature < GREEDY_EPS else temperature


def log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log_softmax(logits / T)`` in float32 over the last dimension (the convention)."""
    return torch.log_softmax(logits.float() / convention_temperature(temperature), dim=-1)


def penalize_repetition(logits: torch.Tensor, generated: list[int], penalty: float) -> torch.Tensor:
    """SGLang's repetition penalty: logits of ``generated`` tokens divided by ``penalty`` when
    positive, multiplied when negative (a new tensor; ``penalty == 1`` returns ``logits``)."""
    if penalty == 1.0 or not generated:
        return logits
    out = logits.float().clone()
    ids = torch.tensor(sorted(set(generated)), dtype=torch.long)
    seen = out[ids]
    out[ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return out


def choose_token(
    logp: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    generator: torch.Generator | None,
    min_p: float = 0.0,
) -> int:
    """Pick the next token from a 1-D vector of convention log-probs.

    ``logp`` already includes the temperature, so sampling from ``exp(logp)`` truncated by
    top-k and top-p is sampling at that temperature.
    """
    if is_greedy(temperature, top_k):
        return int(torch.argmax(logp).item())
    probs = torch.exp(logp)
    if 0 < top_k < probs.numel():
        kth = torch.topk(probs, top_k).values[-1]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop_sorted = (cumulative - sorted_probs) > top_p * cumulative[-1]
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
    if min_p > 0.0:
        probs = torch.where(probs >= min_p * probs.max(), probs, torch.zeros_like(probs))
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator).item())


def top_pairs(logp: torch.Tensor, k: int) -> list[tuple[float, int]]:
    """The ``k`` most likely tokens of a 1-D log-prob vector as ``(log-prob, token id)``."""
    if k <= 0:
        return []
    values, ids = torch.topk(logp, min(k, logp.numel()))
    return [(float(v), int(i)) for v, i in zip(values.tolist(), ids.tolist(), strict=True)]


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator: seeded when the request gives a seed, else from fresh entropy."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
