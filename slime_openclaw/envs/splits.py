"""Deterministic train/eval splits that cannot overlap, by construction.

A task's split is a function of its content key alone (family + parameters, hashed), not
of the seed or the order of generation: a task that lands in eval for one seed lands in
eval for every seed, so no train task of any seed is ever an eval task. Generators draw
candidates from a seeded RNG and keep those whose key hashes into the requested split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

SPLITS = ("train", "eval")
EVAL_SHARE = 4
"""One key in ``EVAL_SHARE`` goes to eval."""


def split_of(key: Any) -> str:
    """``train`` or ``eval`` for a JSON-serializable content key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") % EVAL_SHARE == 0 else "train"


def draw(
    family: str,
    split: str,
    seed: int,
    count: int,
    make: Callable[[random.Random, int], tuple[Any, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """``count`` distinct tasks of ``split``; ``make(rng, index)`` returns (content key, task).

    Difficulty is graded by ``index``: generators cycle through their levels so every
    prefix of the list mixes easy and hard tasks.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (train or eval)")
    rng = random.Random(f"{family}:{split}:{seed}")
    tasks: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(tasks) < count:
        attempts += 1
        if attempts > count * 200:
            raise RuntimeError(f"{family}: cannot draw {count} distinct {split} tasks")
        key, task = make(rng, len(tasks))
        text = json.dumps(key, sort_keys=True)
        if text in seen or split_of(key) != split:
            continue
        seen.add(text)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        tasks.append({"id": f"{family}-{split}-{digest}", **task, "split": split})
    return tasks
