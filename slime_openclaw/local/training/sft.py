"""Supervised pre-training of the tiny policy on rendered chats: shared by every embedded loop.

``encode_dialogue`` renders a chat with the model's own template and marks the tokens of
the trained assistant replies (from after ``<|im_start|>assistant\n`` to ``<|im_end|>``
inclusive: what the engine generates); ``train_policy`` runs AdamW with warm-up and cosine
decay over length-bucketed batches, the loss only on those tokens; ``sample_replies``
samples completions; ``build_atomically`` builds a cached directory in a hidden sibling
and renames it into place, its manifest written last. The data (persona dialogues,
agent trajectories) is the caller's: personal/pretrain.py, agents/pretrain.py.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from slime_openclaw.chat.template import IM_END, IM_START, ChatRenderer

MANIFEST = "pretrain.json"
IGNORE = -100


class Chat(Protocol):
    """A conversation to train on: messages, tool schemas, and which messages carry loss."""

    @property
    def messages(self) -> list[dict[str, Any]]: ...

    @property
    def tools(self) -> Sequence[dict[str, Any]]: ...

    @property
    def train(self) -> list[bool]: ...


class Schedule(Protocol):
    """What ``train_policy`` reads of a recipe."""

    @property
    def steps(self) -> int: ...

    @property
    def data_seed(self) -> int: ...

    @property
    def lr(self) -> float: ...

    @property
    def min_lr_ratio(self) -> float: ...

    @property
    def warmup_steps(self) -> int: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def batch_tokens(self) -> int: ...


def encode_dialogue(renderer: ChatRenderer, dialogue: Chat) -> tuple[list[int], list[bool]]:
    """Token ids of the whole dialogue and a per-token mask of the trained assistant tokens.

    A reply's tokens run from after its ``<|im_start|>assistant\\n`` header to its ``<|im_end|>``
    inclusive: exactly what the engine generates after the generation prompt.
    """
    ids = renderer.render_ids(dialogue.messages, tools=list(dialogue.tools) or None, add_generation_prompt=False)
    header = renderer.tokenizer.encode(f"{IM_START}assistant\n", add_special_tokens=False)
    end_id = renderer.tokenizer.convert_tokens_to_ids(IM_END)
    trained = iter([t for m, t in zip(dialogue.messages, dialogue.train, strict=True) if m["role"] == "assistant"])
    mask = [False] * len(ids)
    j = 0
    while j <= len(ids) - len(header):
        if ids[j:j + len(header)] != header:
            j += 1
            continue
        start = end = j + len(header)
        while ids[end] != end_id:
            end += 1
        if next(trained):
            mask[start:end + 1] = [True] * (end + 1 - start)
        j = end + 1
    if next(trained, None) is not None:
        raise ValueError("fewer assistant headers than assistant messages in the rendered dialogue")
    return ids, mask


def make_batches(lengths: Sequence[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by similar length, each group's padded size at most ``batch_tokens``; shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) + 1) * lengths[index] > batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def _tensors(examples: Sequence[tuple[list[int], list[bool]]], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, (ids, mask) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.tensor([t if m else IGNORE for t, m in zip(ids, mask, strict=True)])
    return input_ids, attention, labels


def lr_at(step: int, recipe: Schedule) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    floor = recipe.min_lr_ratio
    return recipe.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def assistant_loss(model: Any, input_ids: Any, attention: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over the labelled (trained) positions only.

    The output projection runs only where a label exists (a quarter of the tokens or fewer),
    which is most of the saving over a full-vocabulary forward at this model size.
    """
    import torch

    hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = model.lm_head(hidden[keep])
    return torch.nn.functional.cross_entropy(logits, targets[keep])


def train_policy(model: Any, examples: Sequence[tuple[list[int], list[bool]]], pad_id: int, recipe: Schedule,
                 seed: int, progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Run ``recipe.steps`` AdamW steps over ``examples`` (cycled); returns the loss per step."""
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                  betas=(0.9, 0.98))
    rng = random.Random(recipe.data_seed + 1)
    lengths = [len(ids) for ids, _ in examples]
    batches: list[list[int]] = []
    losses: list[float] = []
    model.train()
    for step in range(recipe.steps):
        if not batches:
            batches = make_batches(lengths, recipe.batch_tokens, rng)
        input_ids, attention, labels = _tensors([examples[i] for i in batches.pop()], pad_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        loss = assistant_loss(model, input_ids, attention, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, losses[-1])
    model.eval()
    return losses


def save_weights(model: Any, out: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)


def sample_replies(model: Any, tokenizer: Any, prompts: Sequence[list[int]], *, max_new_tokens: int = 48,
                   temperature: float = 1.0, seed: int = 0) -> list[list[int]]:
    """Sampled completions (token ids, stop token included when reached) for each prompt, batched."""
    import torch

    from slime_openclaw.chat.template import stop_token_ids

    stops = list(stop_token_ids(tokenizer))
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=attention, do_sample=True, temperature=temperature,
                             top_k=0, top_p=1.0, max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad)
    replies = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        replies.append(row[:cut])
    return replies


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a prepared policy, or None when the directory is not one (or incomplete)."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None


def build_atomically(final: Path, build: Callable[[Path], dict[str, Any]], threads: int | None = None) -> Path:
    """Build ``final`` with ``build(staging) -> manifest`` in a hidden sibling, then rename it into place.

    The manifest is written last, so a directory with one is complete; ``threads`` sets
    torch's CPU threads while building. A non-empty ``final`` that is not complete is refused.
    """
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final} exists and is not a prepared policy for this recipe")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    import torch

    saved_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        info = build(staging)
        (staging / MANIFEST).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        try:
            os.rename(staging, final)
        except OSError:
            if read_manifest(final) is None:
                raise
    finally:
        torch.set_num_threads(saved_threads)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
