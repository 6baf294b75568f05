"""The channel that carries teacher top-K distributions from the rollout function to the loss.

slime forwards only whitelisted per-sample fields to the trainer and only a fixed set of
keys into a loss micro-batch, so top-K ids and log-probs ([R, K] per sample) travel
beside slime, in two hops:

1. **Rollout process -> every training rank: a file per rollout step.** The rollout
   function writes ``<topk_dir>/topk-<rollout_id:08d>.safetensors`` (atomically: a
   temporary file, then ``os.replace``) holding ``ids.<index>`` (int32 [R, K]) and
   ``lp.<index>`` (float32 [R, K]) for each sample index of the step that has top-K rows.
   ``<index>`` is the slime ``Sample.index`` (``rollout_data["sample_indices"]`` in the
   trainer). ``topk_dir`` must be on a filesystem every training node sees (one node:
   any local directory). The rollout function deletes files ``KEEP_STEPS`` steps old.
2. **rollout-data-postprocess hook -> loss, inside one training process: a stage.**
   The postprocess hook (``fn(args, rollout_id, rollout_data)``, called after log-prob
   and advantage computation, before training) reads the rows of its DP-local
   ``sample_indices`` and puts them on the process's :class:`TopKStage`, keyed by a
   digest of the sample's full token sequence; the loss finds them by hashing
   ``batch["unconcat_tokens"][i]``. Content keys are immune to micro-batch order,
   pipeline schedules and loss recomputation. Two samples with the same tokens in one
   step would collide, so the rollout function defers the second to the next step.

The stage is process state by necessity (slime calls the two hooks with nothing shared
but ``args``); it is replaced wholesale at each step. Nothing here imports slime.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from slime_openclaw.errors import ConfigError

KEEP_STEPS = 4
"""Step files kept behind the newest (training lags generation by up to two steps)."""

_FILE_RE = re.compile(r"^topk-(\d{8})\.safetensors$")


@dataclass(frozen=True)
class TopKRows:
    """Teacher top-K rows of one sample: ids and log-probs, both [R, K]."""

    ids: torch.Tensor
    log_probs: torch.Tensor


def step_file(topk_dir: str | os.PathLike[str], rollout_id: int) -> Path:
    """The file of rollout step ``rollout_id``."""
    return Path(topk_dir) / f"topk-{rollout_id:08d}.safetensors"


def write_step(
    topk_dir: str | os.PathLike[str],
    rollout_id: int,
    rows: Mapping[int, tuple[Sequence[Sequence[int]], Sequence[Sequence[float]]]],
) -> Path:
    """Write the top-K rows of one step (sample index -> (ids, log-probs)), atomically."""
    directory = Path(topk_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for index, (ids, lps) in rows.items():
        id_t = torch.tensor([list(r) for r in ids], dtype=torch.int32)
        lp_t = torch.tensor([list(r) for r in lps], dtype=torch.float32)
        if id_t.shape != lp_t.shape or id_t.dim() != 2:
            raise ValueError(f"sample {index}: top-K ids {tuple(id_t.shape)} and log-probs {tuple(lp_t.shape)}")
        tensors[f"ids.{index}"] = id_t
        tensors[f"lp.{index}"] = lp_t
    target = step_file(directory, rollout_id)
    fd, tmp = tempfile.mkstemp(prefix=".topk-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"rollout_id": str(rollout_id)})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_step(topk_dir: str | os.PathLike[str], rollout_id: int, indices: Iterable[int]) -> dict[int, TopKRows]:
    """Rows of the given sample indices of one step (indices without rows are absent)."""
    path = step_file(topk_dir, rollout_id)
    if not path.exists():
        raise ConfigError(
            f"top-K file {path} not found: openclaw_teacher_topk_dir must be shared by the rollout and training nodes"
        )
    out: dict[int, TopKRows] = {}
    with safe_open(str(path), framework="pt") as handle:
        names = set(handle.keys())
        for index in indices:
            if f"ids.{index}" in names:
                out[int(index)] = TopKRows(handle.get_tensor(f"ids.{index}"), handle.get_tensor(f"lp.{index}"))
    return out


def prune(topk_dir: str | os.PathLike[str], newest: int, keep: int = KEEP_STEPS) -> list[Path]:
    """Delete step files older than ``newest - keep``; returns what was deleted."""
    removed: list[Path] = []
    directory = Path(topk_dir)
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _FILE_RE.match(path.name)
        if match and int(match.group(1)) < newest - keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def token_digest(tokens: torch.Tensor | Sequence[int]) -> str:
    """Content key of a full token sequence (prompt + response)."""
    if isinstance(tokens, torch.Tensor):
        data = tokens.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
    else:
        data = torch.tensor(list(tokens), dtype=torch.int64).numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class TopKStage:
    """The top-K rows of the current training step in one process, keyed by token digest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, TopKRows] = {}
        self.rollout_id: int | None = None

    def replace(self, rollout_id: int, rows: Mapping[str, TopKRows]) -> None:
        """Install the rows of a new step, dropping the previous step's."""
        with self._lock:
            self._rows = dict(rows)
            self.rollout_id = rollout_id

    def lookup(self, tokens: torch.Tensor | Sequence[int]) -> TopKRows | None:
        """Rows of the sample with these tokens, if the step has any."""
        with self._lock:
            if not self._rows:
                return None
            return self._rows.get(token_digest(tokens))

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)


STAGE = TopKStage()
"""This process's stage, shared by the postprocess hook and the loss hook."""
