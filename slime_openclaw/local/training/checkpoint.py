"""The local trainer's checkpoints: servable Hugging Face directories plus trainer state.

A checkpoint is ``<root>/step_<NNNNNNNN>/`` holding what ``save_pretrained`` writes
(``config.json``, ``generation_config.json``, ``model.safetensors``), the tokenizer and
chat-template files copied from the base model (so the directory can be served or loaded
by ``AutoTokenizer`` on its own), and ``trainer_state.pt`` (optimizer state, step, weight
version, RNG state, the ids of the samples the step trained on). It is built in a hidden
temporary directory, ``trainer_state.pt`` is written last, and the directory is renamed
into place: a checkpoint directory exists complete or not at all, and one without
``trainer_state.pt`` (left by an older writer or by hand) is skipped on resume.

The same directory is what the embedded engine loads with ``/update_weights_from_disk``.
This module does not decide when to checkpoint and knows nothing of the engine.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.pt"
"""Written last: its existence means the checkpoint is complete."""
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
_TMP_PREFIX = ".tmp-step_"
_NOT_COPIED = {"config.json", "generation_config.json", "model.safetensors.index.json", STATE_FILE}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


@dataclass(frozen=True)
class TrainerState:
    """What ``trainer_state.pt`` holds besides the weights."""

    step: int
    """Training steps completed."""
    weight_version: int
    """Weight version of the checkpoint's weights (the engine serves this number)."""
    optimizer: dict[str, Any]
    """``optimizer.state_dict()``."""
    rng: torch.Tensor
    """``torch.get_rng_state()`` after the step."""
    sample_ids: tuple[str, ...] = ()
    """Samples the step trained on (acknowledged again on resume: exactly once)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.step,
            "weight_version": self.weight_version,
            "optimizer": self.optimizer,
            "rng": self.rng,
            "sample_ids": list(self.sample_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        return cls(
            step=int(data["step"]),
            weight_version=int(data["weight_version"]),
            optimizer=data["optimizer"],
            rng=data["rng"],
            sample_ids=tuple(str(s) for s in data.get("sample_ids", ())),
        )


def step_dir(root: Path, step: int) -> Path:
    """The directory of the checkpoint after ``step`` steps."""
    return root / f"step_{step:08d}"


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``(step, dir)`` of every complete checkpoint under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir() and (entry / STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint directory under ``root``, or None."""
    found = complete_checkpoints(Path(root))
    return found[-1][1] if found else None


def save_checkpoint(root: Path, model: Any, base_model_dir: Path, state: TrainerState) -> Path:
    """Write a complete checkpoint for ``state.step`` atomically; returns its directory.

    Raises ``FileExistsError`` if a complete checkpoint of that step already exists.
    """
    final = step_dir(root, state.step)
    if (final / STATE_FILE).is_file():
        raise FileExistsError(f"checkpoint {final} already exists")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{state.step}-", dir=root))
    try:
        model.save_pretrained(tmp)
        copy_tokenizer_files(base_model_dir, tmp)
        torch.save(state.to_dict(), tmp / STATE_FILE)  # last: marks the directory complete
        for path in tmp.iterdir():
            path.chmod(0o644)
        tmp.chmod(0o755)
        if final.exists():  # an incomplete leftover of the same step
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    return final


def copy_tokenizer_files(base_model_dir: Path, dest: Path) -> None:
    """Copy the base model's non-weight, non-config files (tokenizer, chat template, ...)."""
    for path in base_model_dir.iterdir():
        if not path.is_file() or path.name in _NOT_COPIED or path.name.endswith(_WEIGHT_SUFFIXES):
            continue
        shutil.copy2(path, dest / path.name)


def load_state(checkpoint: Path) -> TrainerState:
    """Read ``trainer_state.pt`` of a checkpoint directory."""
    data = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    return TrainerState.from_dict(data)


def prune(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints and any leftover temporary
    or incomplete ones older than the newest complete; returns what was deleted."""
    complete = complete_checkpoints(root)
    doomed = [path for _, path in complete[: max(len(complete) - keep, 0)]]
    newest = complete[-1][0] if complete else None
    if root.is_dir() and newest is not None:
        for entry in root.iterdir():
            match = _STEP_DIR.match(entry.name)
            incomplete = match and int(match.group(1)) < newest and not (entry / STATE_FILE).is_file()
            if entry.is_dir() and (incomplete or entry.name.startswith(_TMP_PREFIX)):
                doomed.append(entry)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
