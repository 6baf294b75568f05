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
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.local.model.tiny_model import (
    FACTORY_VERSION,
    TinyModelSpec,
    default_cache_root,
    ensure_default_model,
)
from slime_openclaw.local.personal import personas as P
from slime_openclaw.local.personal.dialogues import CORRECTION_HINT, StyleMix, synthetic_dialogues
from slime_openclaw.local.personal.scoring import preference_score
from slime_openclaw.local.training.sft import (
    MANIFEST,
    build_atomically,
    encode_dialogue,
    make_batches,
    read_manifest,
    sample_replies,
    save_weights,
    train_policy,
)
from slime_openclaw.signals.teacher import add_hint

__all__ = ["FAST_RECIPE", "MANIFEST", "PretrainRecipe", "default_policy_dir", "encode_dialogue", "hint_following",
           "make_batches", "prepare_policy", "read_manifest"]

PRETRAIN_VERSION = 1
"""Bumped whenever the data or the training changes for the same recipe (invalidates caches)."""


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
    save_weights(model, staging)
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
    return build_atomically(final, lambda staging: _build(staging, seed, recipe, spec, cache_root, progress), threads)


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
