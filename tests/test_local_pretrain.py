"""Pre-training of the tiny policy: token-exact data, batching, a quick run, the cache, hint following."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from slime_openclaw.chat.template import IM_END, ChatRenderer
from slime_openclaw.local.personal import personas as P
from slime_openclaw.local.personal.dialogues import (
    StyleMix,
    hinted_dialogue,
    plain_dialogue,
    synthetic_dialogues,
)
from slime_openclaw.local.personal.pretrain import (
    FAST_RECIPE,
    MANIFEST,
    PretrainRecipe,
    default_policy_dir,
    encode_dialogue,
    hint_following,
    make_batches,
    prepare_policy,
    read_manifest,
)
from slime_openclaw.signals.teacher import HINT_MARKER
from tests.helpers_model import tiny_model_dir


@pytest.fixture(scope="module")
def renderer() -> ChatRenderer:
    from transformers import AutoTokenizer

    return ChatRenderer(AutoTokenizer.from_pretrained(tiny_model_dir()))


def _dialogues() -> list:
    rng = random.Random(3)
    out = []
    for persona in P.default_personas():
        for _ in range(4):
            out += [plain_dialogue(persona, StyleMix(), rng), hinted_dialogue(persona, StyleMix(), rng)]
    return out


def test_trained_tokens_are_what_the_engine_would_generate(renderer: ChatRenderer) -> None:
    """Each trained span is exactly the tokens after the generation prompt of its prefix, up to <|im_end|>."""
    end_id = renderer.tokenizer.convert_tokens_to_ids(IM_END)
    for dialogue in _dialogues():
        ids, mask = encode_dialogue(renderer, dialogue)
        tools = list(dialogue.tools) or None
        spans = [(i, m) for i, m in enumerate(dialogue.messages) if m["role"] == "assistant"]
        starts = [j for j in range(len(mask)) if mask[j] and (j == 0 or not mask[j - 1])]
        assert len(starts) == sum(dialogue.train[i] for i, _ in spans) > 0
        pos = iter(starts)
        for index, _message in spans:
            if not dialogue.train[index]:
                continue
            start = next(pos)
            prompt = renderer.render_ids(dialogue.messages[:index], tools=tools, add_generation_prompt=True)
            through = renderer.render_ids(dialogue.messages[: index + 1], tools=tools, add_generation_prompt=False)
            assert ids[:start] == prompt  # the rendered prefix, token for token
            end = start + mask[start:].index(False) if False in mask[start:] else len(mask)
            assert ids[end - 1] == end_id and through[: end] == ids[:end]


def test_hinted_dialogues_place_the_hint_as_the_teacher_does() -> None:
    rng = random.Random(0)
    for _ in range(20):
        dialogue = hinted_dialogue(P.StudentPersona(), StyleMix(), rng)
        assert dialogue.train == [False] * (len(dialogue.messages) - 1) + [True]
        texts = [str(m.get("content")) for m in dialogue.messages[:-1]]
        assert sum(HINT_MARKER in t for t in texts) == 1


def test_data_is_deterministic_and_mixed() -> None:
    a, b = synthetic_dialogues(60, seed=1), synthetic_dialogues(60, seed=1)
    assert [d.messages for d in a] == [d.messages for d in b]
    assert any(d.tools for d in a) and any(not d.tools for d in a)


def test_batches_cover_every_example_within_the_token_budget() -> None:
    lengths = [random.Random(i).randint(10, 300) for i in range(200)]
    batches = make_batches(lengths, 1024, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) * max(lengths[i] for i in b) <= 1024 for b in batches)


def test_quick_pretrain_saves_a_loadable_cached_checkpoint(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = prepare_policy(tmp_path / "policy", recipe=FAST_RECIPE, threads=1)
    manifest = read_manifest(out)
    assert manifest is not None and manifest["recipe"]["steps"] == FAST_RECIPE.steps
    assert manifest["trained_tokens"] > 0 and manifest["final_loss"] < manifest["first_loss"] + 1.0
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir())
    changed = [n for n, p in model.state_dict().items() if not p.equal(base.state_dict()[n])]
    assert changed  # trained weights, not the factory's init
    tokenizer = AutoTokenizer.from_pretrained(out)
    rates = hint_following(model, tokenizer, samples=2)
    assert set(rates) == {"student_no_hint", "student_hint", "teacher_no_hint", "teacher_hint"}
    assert all(0.0 <= v <= 1.0 for v in rates.values())

    stamp = (out / MANIFEST).stat().st_mtime_ns
    assert prepare_policy(out, recipe=FAST_RECIPE) == out  # complete: reused, not rebuilt
    assert (out / MANIFEST).stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        prepare_policy(out, recipe=dataclasses.replace(FAST_RECIPE, steps=5))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_cache_key_follows_the_recipe(tmp_path: Path) -> None:
    one = default_policy_dir(cache_root=tmp_path)
    assert one == default_policy_dir(cache_root=tmp_path)
    assert one != default_policy_dir(cache_root=tmp_path, recipe=dataclasses.replace(PretrainRecipe(), lr=1e-3))
    assert one != default_policy_dir(cache_root=tmp_path, seed=1)


SMALL_RECIPE = PretrainRecipe(steps=150, dialogues=400, batch_tokens=1024, verify_samples=16)
"""The default recipe made small (a tenth of its tokens): long enough for the hint to matter."""


@pytest.mark.slow
def test_a_small_pretraining_learns_to_follow_the_hint_without_knowing_the_preference(tmp_path: Path) -> None:
    """What the demo relies on, measured by the same check ``prepare-policy`` runs: with the hint
    in context the policy answers in the preferred style far more often than without it."""
    manifest = read_manifest(prepare_policy(tmp_path / "policy", recipe=SMALL_RECIPE, threads=1))
    assert manifest is not None
    rates = manifest["hint_following"]
    assert set(rates) == {"student_no_hint", "student_hint", "teacher_no_hint", "teacher_hint"}
    assert rates["student_hint"] - rates["student_no_hint"] >= 0.5, rates
    assert rates["teacher_hint"] - rates["teacher_no_hint"] >= 0.1, rates
    assert rates["student_no_hint"] < 0.5 and rates["teacher_no_hint"] < 0.5, rates


def test_cli_refuses_bad_numbers() -> None:
    import argparse

    from slime_openclaw.errors import ConfigError
    from slime_openclaw.local.personal import pretrain

    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    with pytest.raises(ConfigError, match="at least 1"):
        pretrain.run(parser.parse_args(["--steps", "0"]))
