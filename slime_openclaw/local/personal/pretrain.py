"""Prepares the tiny policy once: a short pre-training on synthetic dialogues, cached.

``prepare_policy()`` starts from the tiny-model factory's seeded random init, trains it with
AdamW on ``dialogues.synthetic_dialogues`` (rendered with the model's own chat template;
loss only on the tokens of the trained assistant replies, their closing ``<|im_end|>``
included) for a bounded number of steps, checks what it learned (``hint_following``: the
preferred-style rate of sampled first answers without and with a hint in context) and writes
an HF checkpoint. The checkpoint is built in a temporary sibling and renamed into place, and
``pretrain.json`` (recipe, timings, losses, measured rates) is written last, so a directory
with that file is complete. Cached under the tiny model's cache root by a hash of the recipe,
the model spec, the seed and both modules' versions.

Without a hint the policy answers in the persona's undesired style most of the time (the
preference is hidden); with the hint that OPD's teacher context adds, it answers in the
preferred style. That gap is the token-level signal OPD distils. This module does not serve
the model or run the online loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slime_openclaw.chat.template import IM_END, IM_START, ChatRenderer
from slime_openclaw.local.model.tiny_model import (
    FACTORY_VERSION,
    TinyModelSpec,
    default_cache_root,
    ensure_default_model,
)
from slime_openclaw.local.personal import personas as P
from slime_openclaw.local.personal.dialogues import CORRECTION_HINT, Dialogue, StyleMix, synthetic_dialogues
from slime_openclaw.local.personal.scoring import preference_score
from slime_openclaw.signals.teacher import add_hint

PRETRAIN_VERSION = 1
"""Bumped whenever the data or the training changes for the same recipe (invalidates caches)."""
MANIFEST = "pretrain.json"
IGNORE = -100


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that decides the prepared policy (hashed into the cache key)."""

    steps: int = 400
    dialogues: int = 3000
    data_seed: int = 0
    lr: float = 5e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.01
    batch_tokens: int = 2048
    """Padded tokens per batch at most (sequences of similar length are batched together)."""
    p_hint: float = 0.4
    mix: StyleMix = StyleMix()
    verify_samples: int = 64
    """Sampled answers per (persona, hint or not) in the check after training (0: skip)."""

    def cache_key(self, seed: int, spec: TinyModelSpec) -> str:
        """Short hash of the recipe, the model spec and seed, and the factory/pretrain versions."""
        payload = json.dumps({"recipe": dataclasses.asdict(self), "model": spec.cache_key(seed),
                              "factory": FACTORY_VERSION, "pretrain": PRETRAIN_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


FAST_RECIPE = PretrainRecipe(steps=4, dialogues=48, batch_tokens=1024, verify_samples=0)
"""A seconds-long recipe for tests: the machinery runs, the policy learns little."""


def encode_dialogue(renderer: ChatRenderer, dialogue: Dialogue) -> tuple[list[int], list[bool]]:
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


def _lr_at(step: int, recipe: PretrainRecipe) -> float:
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


def train_policy(model: Any, examples: Sequence[tuple[list[int], list[bool]]], pad_id: int, recipe: PretrainRecipe,
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
            group["lr"] = _lr_at(step, recipe)
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


def _save_weights(model: Any, out: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)


def _probe_prompts(persona: P.Persona, hinted: bool, count: int, rng: random.Random) -> list[tuple[P.Problem, list]]:
    prompts = []
    directives = {P.STUDENT: P.STUDENT_DIRECTIVES, P.TEACHER: P.TEACHER_DIRECTIVES}[persona.name]
    for _ in range(count):
        problem = persona.new_problem(rng)
        messages: list[dict[str, Any]] = [{"role": "user", "content": problem.text}]
        if hinted:
            messages = add_hint(messages, CORRECTION_HINT.format(text=rng.choice(directives)))
        prompts.append((problem, messages))
    return prompts


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


def hint_following(model: Any, tokenizer: Any, samples: int, seed: int = 0) -> dict[str, float]:
    """Mean preference score of sampled first answers, per persona, without and with a hint."""
    from slime_openclaw.chat.parsing import ResponseParser

    renderer = ChatRenderer(tokenizer)
    rng = random.Random(seed)
    rates: dict[str, float] = {}
    for persona in (P.StudentPersona(), P.TeacherPersona()):
        for hinted in (False, True):
            probes = _probe_prompts(persona, hinted, samples, rng)
            replies = sample_replies(model, tokenizer, [renderer.render_ids(m) for _, m in probes], seed=seed)
            scores = []
            for (problem, _), ids in zip(probes, replies, strict=True):
                parser = ResponseParser(tokenizer, call_id_seed="probe")
                parser.feed(ids)
                text = parser.finish().content or ""
                scores.append(preference_score(persona.name, text, problem))
            rates[f"{persona.name}_{'hint' if hinted else 'no_hint'}"] = sum(scores) / len(scores)
    return rates


def _build(staging: Path, seed: int, recipe: PretrainRecipe, spec: TinyModelSpec, cache_root: Path | None,
           progress: Callable[[int, float], None] | None) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    base = ensure_default_model(seed=seed, spec=spec, cache_root=cache_root)  # the factory's init, built once
    for path in base.iterdir():
        shutil.copy2(path, staging / path.name)
    tokenizer = AutoTokenizer.from_pretrained(staging)
    renderer = ChatRenderer(tokenizer)
    dialogues = synthetic_dialogues(recipe.dialogues, recipe.data_seed, mix=recipe.mix, p_hint=recipe.p_hint)
    examples = [encode_dialogue(renderer, d) for d in dialogues]
    data_s = time.monotonic() - started
    model = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.float32)
    losses = train_policy(model, examples, tokenizer.pad_token_id, recipe, seed, progress)
    train_s = time.monotonic() - started - data_s
    _save_weights(model, staging)
    rates = hint_following(model, tokenizer, recipe.verify_samples, seed) if recipe.verify_samples else {}
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "recipe": dataclasses.asdict(recipe), "seed": seed, "spec": dataclasses.asdict(spec),
        "factory_version": FACTORY_VERSION, "pretrain_version": PRETRAIN_VERSION,
        "data_seconds": round(data_s, 1), "train_seconds": round(train_s, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "trained_tokens": sum(sum(m) for _, m in examples), "first_loss": losses[0] if losses else None,
        "final_loss": sum(tail) / len(tail) if losses else None, "hint_following": rates,
    }


def default_policy_dir(*, seed: int = 0, recipe: PretrainRecipe = PretrainRecipe(),
                       spec: TinyModelSpec = TinyModelSpec(), cache_root: Path | None = None) -> Path:
    """Where the prepared policy for these settings is cached (it may not exist yet)."""
    return (cache_root or default_cache_root()) / f"policy-{recipe.cache_key(seed, spec)}"


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``pretrain.json`` of a prepared policy, or None when the directory is not one (or incomplete)."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None


def prepare_policy(out_dir: str | os.PathLike[str] | None = None, *, seed: int = 0,
                   recipe: PretrainRecipe = PretrainRecipe(), spec: TinyModelSpec = TinyModelSpec(),
                   cache_root: Path | None = None, threads: int | None = None,
                   progress: Callable[[int, float], None] | None = None) -> Path:
    """The pre-trained tiny policy's directory, built (atomically) unless already complete.

    ``out_dir`` None means the cache (``default_policy_dir``). An existing complete directory
    whose manifest matches the recipe is returned as is. ``threads`` sets torch's CPU threads
    while training (default: leave torch's setting). ``progress(step, loss)`` is called per step.
    """
    final = Path(out_dir) if out_dir is not None else default_policy_dir(
        seed=seed, recipe=recipe, spec=spec, cache_root=cache_root)
    manifest = read_manifest(final)
    if manifest is not None and manifest.get("recipe") == dataclasses.asdict(recipe) and manifest.get("seed") == seed:
        return final
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final} exists and is not a prepared policy for this recipe")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    import torch

    saved_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        info = _build(staging, seed, recipe, spec, cache_root, progress)
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


def add_arguments(parser: Any) -> None:
    """Arguments of ``slime-openclaw prepare-policy``."""
    parser.add_argument("--out", help="directory to write (default: the user cache, reused when complete)")
    parser.add_argument("--seed", type=int, default=0, help="weight init and sampling seed (default 0)")
    parser.add_argument("--steps", type=int, help=f"training steps (default {PretrainRecipe().steps})")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads while training (default 2)")


def run(args: Any) -> int:
    """Prepare (or find) the pre-trained policy and print where it is and what it measured."""
    from slime_openclaw.errors import ConfigError

    recipe = PretrainRecipe() if args.steps is None else dataclasses.replace(PretrainRecipe(), steps=args.steps)
    if recipe.steps < 1 or args.threads < 1:
        raise ConfigError("--steps and --threads must be at least 1")

    def report(step: int, loss: float) -> None:
        if step % 50 == 0 or step == recipe.steps - 1:
            print(f"step {step + 1}/{recipe.steps} loss {loss:.3f}", flush=True)

    try:
        out = prepare_policy(args.out, seed=args.seed, recipe=recipe, threads=args.threads, progress=report)
    except FileExistsError as exc:
        raise ConfigError(str(exc)) from None
    manifest = read_manifest(out) or {}
    print(f"policy: {out}")
    print(f"trained in {manifest.get('train_seconds')} s; preferred-style rate of first answers "
          f"(no hint -> hint): {json.dumps(manifest.get('hint_following', {}))}")
    return 0
