"""Prepares a tiny agent policy once: supervised pre-training on synthetic trajectories, cached.

A trajectory is a real episode of the environment on a train-split task, driven by
reference replies (``envs.reference_replies``): the opening messages, each reply and the
environment's actual answer, over the train tasks of ``task_seeds`` generator seeds. With
probability ``p_foreign`` (0 by default) the replies are those of another task of the same
family; with probability ``p_mistaken`` (0 by default) those of the environment's
``mistaken_replies``: the task's own numbers in a plausible misreading of the question
(toolcall: the share instead of the rest, a range without its end), an episode that fails.
The policy learns both readings and RL, rewarded by the outcome, learns which one is right;
a misreading is a choice per kind of question, so what RL learns carries over to new
questions. A ``short_share`` of the trajectories drop the system prompt and tool schemas
(most of each episode's tokens, the same for every task): the replies keep their distance
to the instruction, at a fraction of the cost. What is learned there carries over to the
full opening only with some full trajectories in the mix (trained on short ones alone, a
toolcall policy writes the reference code for 16 of 60 eval questions without the opening
and for none with it). Each
built-in environment has its recipe (``recipe_for``; toolcall first trains on short
trajectories only, ``short_first``); the tiny policy solves only some tasks, so there is
room for RL. The loss is on the assistant replies only (training/sft.py). Cached by a hash
of the recipe, the environment, the model spec and the versions; ``pretrain.json`` (recipe, losses, timings) is written last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slime_openclaw.chat.template import ChatRenderer
from slime_openclaw.envs import EnvSpec, builtin_tasks, load_env_class, mistaken_replies, reference_replies
from slime_openclaw.local.model.tiny_model import (
    FACTORY_VERSION,
    TinyModelSpec,
    default_cache_root,
    ensure_default_model,
)
from slime_openclaw.local.training.sft import (
    build_atomically,
    encode_dialogue,
    read_manifest,
    save_weights,
    train_policy,
)

AGENT_PRETRAIN_VERSION = 2
"""Bumped whenever the data or the training changes for the same recipe (invalidates caches)."""


@dataclass(frozen=True)
class AgentPretrainRecipe:
    """Everything that decides the prepared agent policy (hashed into the cache key)."""

    steps: int = 300
    p_foreign: float = 0.0
    """Share of trajectories that follow another task's reference replies. 0 by default: at 0.5
    (version 1) half the data paired an instruction with an unrelated command or numbers, so
    the policy learned to ignore the instruction (4-8% solved); its own errors leave RL room."""
    p_mistaken: float = 0.0
    """Share of trajectories that follow the environment's ``mistaken_replies`` (where it has
    them): right copying, wrong reading of the question; they fail. Unlike ``p_foreign``
    they keep the question's own numbers, so copying is learned as well as without them."""
    copies: int = 1
    """Trajectories per train task (each draws its own replies)."""
    data_seed: int = 0
    lr: float = 5e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    batch_tokens: int = 4096
    concurrency: int = 4
    """Environments run at once while the trajectories are collected."""
    max_tasks: int | None = None
    """Use only the first this many train tasks (None: all of them)."""
    task_seeds: int = 3
    """Train tasks of the generator's seeds ``0 .. task_seeds - 1`` (distinct; all in the train split)."""
    short_share: float = 0.8
    """Share of trajectories trained without the system prompt and tool schemas: the same
    replies and answers at the same distance from the question (positions are relative), at a
    third of the tokens, so more steps fit the same time; the rest keep the full opening."""
    short_first: int = 0
    """Of ``steps``, the first this many train on every trajectory without its opening (0: none),
    the rest on the ``short_share`` mix at ``adapt_lr`` (warm-up and cosine again): copying the
    question's numbers is learned fast on short trajectories and slowly with the full opening
    in the batches; the last steps carry it over to the opening the policy is served with."""
    adapt_lr: float = 1e-3
    """Peak learning rate of the steps after ``short_first``."""

    def key_fields(self) -> dict[str, Any]:
        """The recipe as hashed and kept in the manifest: optional fields left at None are left
        out, so adding one keeps the caches of earlier recipes valid."""
        defaults = {"max_tasks": None, "task_seeds": 1, "short_share": 0.0,  # as version 1 had them
                    "short_first": 0, "adapt_lr": 1e-3,  # as version 2 had them (no short-only phase)
                    "p_mistaken": 0.0}
        return {k: v for k, v in dataclasses.asdict(self).items() if not (k in defaults and v == defaults[k])}

    def cache_key(self, env: EnvSpec, seed: int, spec: TinyModelSpec) -> str:
        """Short hash of the recipe, the environment (and its generator's ``TASKS_VERSION``
        once past 1), the model spec, seed and versions."""
        fields: dict[str, Any] = {"recipe": self.key_fields(), "env": [env.name, env.kwargs],
                                  "model": spec.cache_key(seed), "factory": FACTORY_VERSION,
                                  "pretrain": AGENT_PRETRAIN_VERSION}
        tasks_version = getattr(load_env_class(env.name), "TASKS_VERSION", 1)
        if tasks_version != 1:
            fields["tasks"] = tasks_version
        payload = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


AGENT_RECIPES: dict[str, AgentPretrainRecipe] = {
    "toolcall": AgentPretrainRecipe(steps=2600, short_first=2000, batch_tokens=1024, task_seeds=10, short_share=0.5,
                                    p_mistaken=0.4),
}
"""Built-in environments whose default recipe is not ``AgentPretrainRecipe()`` (the others keep
it, and so their cache keys). toolcall: with the default recipe the policy never copies the
question's numbers into its code (0 of 60 eval tasks solved); 2000 small short-only steps on
1973 distinct tasks teach the copying, 600 steps on a half-and-half mix carry it over to the
full opening (0.25 solved, see README), in less time than the default recipe's 300 long steps;
with 40% of the trajectories misreading their question (``p_mistaken``) 0.117 is solved before
RL and RL on the outcome raises it (0.217 after ``agents train``'s defaults, see README)."""


def recipe_for(env_spec: EnvSpec) -> AgentPretrainRecipe:
    """The default pre-training recipe of ``env_spec`` (``AGENT_RECIPES``, else the class default)."""
    return AGENT_RECIPES.get(env_spec.name, AgentPretrainRecipe())


FAST_AGENT_RECIPE = AgentPretrainRecipe(steps=3, copies=1, batch_tokens=2048, max_tasks=12, task_seeds=1,
                                        short_share=0.0, p_foreign=0.5)
"""A seconds-long recipe for tests: the machinery runs, the policy learns little."""


@dataclass(frozen=True)
class Trajectory:
    """One episode to train on (``sft.Chat``): every assistant reply carries loss."""

    messages: list[dict[str, Any]]
    tools: tuple[dict[str, Any], ...] = ()
    train: list[bool] = field(default_factory=list)
    passed: bool = False


async def play(env_spec: EnvSpec, task: dict[str, Any], replies: Sequence[dict[str, Any]]) -> Trajectory:
    """Run ``replies`` in a fresh environment on ``task``; the trajectory it really gives."""
    env = env_spec.build()
    try:
        observation = await env.reset(task)
        messages = list(observation.messages)
        for reply in replies:
            step = await env.step(dict(reply))
            messages += [dict(reply), *step.messages]
            if step.done:
                break
        outcome = await env.outcome()
    finally:
        await env.close()
    train = [m.get("role") == "assistant" for m in messages]
    return Trajectory(messages, tuple(observation.tools), train, outcome.passed)


def without_preamble(trajectory: Trajectory) -> Trajectory:
    """``trajectory`` without its system message and tool schemas (see ``short_share``)."""
    kept = [(m, t) for m, t in zip(trajectory.messages, trajectory.train, strict=True) if m.get("role") != "system"]
    return Trajectory([m for m, _ in kept], (), [t for _, t in kept], trajectory.passed)


def train_tasks(env_spec: EnvSpec, recipe: AgentPretrainRecipe) -> list[dict[str, Any]]:
    """The recipe's distinct train tasks (``task_seeds`` generator seeds, ``max_tasks`` of them)."""
    seen: dict[str, dict[str, Any]] = {}
    for seed in range(recipe.task_seeds):
        for task in builtin_tasks(env_spec.name, "train", seed=seed):
            seen.setdefault(json.dumps(task, sort_keys=True), task)
    return list(seen.values())[: recipe.max_tasks]


async def collect(env_spec: EnvSpec, tasks: Sequence[dict[str, Any]], recipe: AgentPretrainRecipe) -> list[Trajectory]:
    """``recipe.copies`` trajectories per task, a ``p_foreign`` share with another task's replies,
    a ``p_mistaken`` share with the task's mistaken ones."""
    rng = random.Random(recipe.data_seed)
    mistakes = random.Random(recipe.data_seed + 1)  # its own stream: p_mistaken 0 keeps the other draws
    plans = []
    for _ in range(recipe.copies):
        for task in tasks:
            source = rng.choice(tasks) if rng.random() < recipe.p_foreign else task
            mistaken = mistaken_replies(env_spec.name, source) if mistakes.random() < recipe.p_mistaken else None
            plans.append((task, mistaken or reference_replies(env_spec.name, source)))
    gate = asyncio.Semaphore(recipe.concurrency)

    async def one(task: dict[str, Any], replies: list[dict[str, Any]]) -> Trajectory:
        async with gate:
            return await play(env_spec, task, replies)

    played = list(await asyncio.gather(*(one(t, r) for t, r in plans)))
    return [without_preamble(t) if rng.random() < recipe.short_share else t for t in played]


def default_agent_policy_dir(env_spec: EnvSpec, *, seed: int = 0, recipe: AgentPretrainRecipe | None = None,
                             spec: TinyModelSpec = TinyModelSpec(), cache_root: Path | None = None) -> Path:
    """Where the prepared agent policy for these settings is cached (it may not exist yet);
    ``recipe`` defaults to the environment's own (``recipe_for``)."""
    recipe = recipe or recipe_for(env_spec)
    name = env_spec.name.rsplit(".", 1)[-1].lower()
    return (cache_root or default_cache_root()) / f"agent-{name}-{recipe.cache_key(env_spec, seed, spec)}"


def _build(staging: Path, env_spec: EnvSpec, seed: int, recipe: AgentPretrainRecipe, spec: TinyModelSpec,
           cache_root: Path | None, progress: Callable[[int, float], None] | None) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    for path in ensure_default_model(seed=seed, spec=spec, cache_root=cache_root).iterdir():
        shutil.copy2(path, staging / path.name)
    tokenizer = AutoTokenizer.from_pretrained(staging)
    renderer = ChatRenderer(tokenizer)
    tasks = train_tasks(env_spec, recipe)
    trajectories = asyncio.run(collect(env_spec, tasks, recipe))
    examples = [encode_dialogue(renderer, t) for t in trajectories]
    data_s = time.monotonic() - started
    model = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.float32)
    losses = _train(model, renderer, trajectories, examples, recipe, seed, progress)
    save_weights(model, staging)
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "recipe": recipe.key_fields(), "env": env_spec.name, "env_args": env_spec.kwargs, "seed": seed,
        "spec": dataclasses.asdict(spec), "factory_version": FACTORY_VERSION,
        "pretrain_version": AGENT_PRETRAIN_VERSION, "trajectories": len(trajectories),
        "trajectories_passed": sum(t.passed for t in trajectories), "tasks": len(tasks), "data_seconds": round(data_s, 1),
        "total_seconds": round(time.monotonic() - started, 1), "trained_tokens": sum(sum(m) for _, m in examples),
        "first_loss": losses[0] if losses else None, "final_loss": sum(tail) / len(tail) if losses else None,
    }


def _train(model: Any, renderer: ChatRenderer, trajectories: Sequence[Trajectory],
           examples: list[tuple[list[int], list[bool]]], recipe: AgentPretrainRecipe, seed: int,
           progress: Callable[[int, float], None] | None) -> list[float]:
    """``recipe.steps`` steps: the ``short_first`` short-only ones, then the rest on ``examples``."""
    pad = renderer.tokenizer.pad_token_id
    first = min(recipe.short_first, recipe.steps)
    if not first:
        return train_policy(model, examples, pad, recipe, seed, progress)
    short = [encode_dialogue(renderer, without_preamble(t)) for t in trajectories]
    losses = train_policy(model, short, pad, dataclasses.replace(recipe, steps=first), seed, progress)
    rest = dataclasses.replace(recipe, steps=recipe.steps - first, lr=recipe.adapt_lr)
    shifted = None if progress is None else (lambda step, loss: progress(first + step, loss))
    return losses + train_policy(model, examples, pad, rest, seed, shifted)


def prepare_agent_policy(env_spec: EnvSpec, *, seed: int = 0, recipe: AgentPretrainRecipe | None = None,
                         spec: TinyModelSpec = TinyModelSpec(), cache_root: Path | None = None,
                         threads: int | None = None, progress: Callable[[int, float], None] | None = None) -> Path:
    """The pre-trained agent policy for ``env_spec`` (a built-in with reference trajectories), cached;
    ``recipe`` defaults to the environment's own (``recipe_for``)."""
    recipe = recipe or recipe_for(env_spec)
    final = default_agent_policy_dir(env_spec, seed=seed, recipe=recipe, spec=spec, cache_root=cache_root)
    manifest = read_manifest(final)
    if manifest is not None and manifest.get("recipe") == recipe.key_fields():
        return final
    return build_atomically(final, lambda staging: _build(staging, env_spec, seed, recipe, spec, cache_root, progress),
                            threads)
