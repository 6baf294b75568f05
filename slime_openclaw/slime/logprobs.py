"""Per-sample response log-probs and logit rows from a packed micro-batch, as slime computes them.

The loss hook needs, for each sample of a micro-batch, the log-probs of its response
tokens under the current policy (with gradient) and, for top-K distillation, the raw
logit rows that predict those tokens. ``SlimeBackend`` takes the log-probs from slime's
own ``get_log_probs_and_entropy`` (vocab-parallel, context-parallel, temperature, top-p
replay: exactly what slime's built-in loss uses). ``TorchBackend`` is the same arithmetic
in plain torch for a single device (no tensor or context parallelism); the non-slime
tests and the local trainer use it, and the slime-marked test checks the two agree.

Context parallelism: slime hands the loss CP-local log-probs (and CP-local advantages,
old and rollout log-probs) but full-response loss masks. ``local`` cuts a full-response
per-token tensor to this rank's part, with slime's own ``slice_log_prob_with_cp`` in a
slime trainer (the zigzag split: two chunks per rank); without CP it is the identity.

Layout (slime's, context parallelism 1): the micro-batch's logits are ``[1, T, V]`` with
samples packed back to back; the logit row predicting token ``j`` of a sample is row
``j - 1``, so a response of length ``R`` ending at ``end`` uses rows ``end-R-1 .. end-2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from slime_openclaw.errors import ConfigError


class LogProbBackend(Protocol):
    """What the loss hook needs from the trainer side."""

    def log_probs(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Per-sample response log-probs (with gradient), at ``args.rollout_temperature``."""
        ...

    def response_logits(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Per-sample raw ``[R, V]`` logit rows predicting the response tokens."""
        ...

    def local(self, values: torch.Tensor, total_length: int, response_length: int) -> torch.Tensor:
        """This rank's part of a full-response per-token tensor (the whole tensor without CP)."""
        ...


def _response_rows(total_lengths: Sequence[int], response_lengths: Sequence[int]) -> list[tuple[int, int]]:
    rows = []
    offset = 0
    for total, response in zip(total_lengths, response_lengths, strict=True):
        end = offset + int(total)
        start = end - int(response)
        rows.append((start - 1, end - 1))
        offset = end
    return rows


class TorchBackend:
    """Single-device equivalent of slime's log-prob extraction."""

    def log_probs(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        temperature = float(getattr(args, "rollout_temperature", 1.0))
        flat = logits.squeeze(0).float()
        if temperature != 1.0:
            flat = flat / temperature
        out = []
        rows = _response_rows(batch["total_lengths"], batch["response_lengths"])
        for (lo, hi), tokens, response in zip(rows, batch["unconcat_tokens"], batch["response_lengths"], strict=True):
            targets = tokens[-int(response) :].to(flat.device, torch.long) if response else tokens[:0].long()
            chunk = flat[lo:hi]
            lse = torch.logsumexp(chunk, dim=-1)
            out.append(chunk.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse)
        return out

    def response_logits(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        flat = logits.squeeze(0)
        rows = _response_rows(batch["total_lengths"], batch["response_lengths"])
        return [flat[lo:hi] for lo, hi in rows]

    def local(self, values: torch.Tensor, total_length: int, response_length: int) -> torch.Tensor:
        if values.shape[0] != int(response_length):
            raise ConfigError(f"{values.shape[0]} values for a response of {response_length} tokens")
        return values


class SlimeBackend:
    """slime's own extraction (imported lazily: needs slime and megatron-core)."""

    def log_probs(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        from slime.backends.megatron_utils.loss import (
            get_log_probs_and_entropy,
            get_rollout_top_p_logprob_kwargs,
        )

        _, result = get_log_probs_and_entropy(
            logits,
            args=args,
            unconcat_tokens=batch["unconcat_tokens"],
            total_lengths=batch["total_lengths"],
            response_lengths=batch["response_lengths"],
            with_entropy=False,
            **get_rollout_top_p_logprob_kwargs(args, batch),
        )
        return list(result["log_probs"])

    def response_logits(self, logits: torch.Tensor, args: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
        from megatron.core import mpu

        if mpu.get_tensor_model_parallel_world_size() > 1 or mpu.get_context_parallel_world_size() > 1:
            raise ConfigError(
                "top-K distillation needs full-vocabulary logit rows: run it with tensor and context "
                "parallel size 1 (openclaw_teacher_topk: 0 works with any parallelism)"
            )
        return TorchBackend().response_logits(logits, args, batch)

    def local(self, values: torch.Tensor, total_length: int, response_length: int) -> torch.Tensor:
        from slime.backends.megatron_utils.cp_utils import slice_log_prob_with_cp

        return slice_log_prob_with_cp(values, int(total_length), int(response_length))


def default_backend() -> LogProbBackend:
    """slime's extraction when slime is importable, else the torch equivalent."""
    try:
        import slime.backends.megatron_utils.loss  # noqa: F401
    except ImportError:
        return TorchBackend()
    return SlimeBackend()
