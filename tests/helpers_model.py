"""Shared test helpers for the tiny model: one checkpoint per machine, built once.

Import the fixtures into a test module (``from helpers_model import tiny_model_path,
tiny_tokenizer``) or call ``tiny_model_dir()`` directly. The checkpoint lives in the user
cache (``ensure_default_model``: atomic, safe for parallel workers) and must be treated as
read-only; a test that writes weights uses ``tiny_model_copy(tmp_path)``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from slime_openclaw.local.model.tiny_model import ensure_default_model


def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory | None = None) -> Path:
    """The cached tiny checkpoint (seed 0, default spec), built on first use.

    ``tmp_path_factory`` is accepted for symmetry with pytest fixtures and unused: the
    checkpoint is shared across sessions through the user cache.
    """
    del tmp_path_factory
    return ensure_default_model()


def tiny_model_copy(dest: Path) -> Path:
    """A private, writable copy of the cached tiny checkpoint under ``dest``."""
    target = dest / "tiny-model"
    shutil.copytree(tiny_model_dir(), target)
    return target


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session fixture: path of the cached tiny checkpoint (read-only)."""
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path) -> Any:
    """Session fixture: the tiny model's tokenizer, loaded with ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)
