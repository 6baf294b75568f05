"""Every recipe's launch command through upstream slime's own ``parse_args``.

Marked ``slime``: runs in the environment ``make test-slime`` builds (tools/slime_env.sh:
slime 624b824a, Megatron-LM at the commit slime's Dockerfile pins with slime's Megatron
patches, sglang 0.5.15.post1). slime's ``parse_args`` runs its own validation and
Megatron's ``validate_args``; every flag launch emits must be consumed by one of the
parsers slime runs (slime's ``parse_known_args`` drops the others silently).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from slime_parse_env import import_slime_arguments
from test_launch import QWEN3 as LAUNCH_QWEN3
from test_launch import hf_dir

from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import flags as slime_flags
from slime_openclaw.slime.launch import write_files
from slime_openclaw.slime.recipe import (
    MEGATRON_MARKER,
    apply_overrides,
    available_recipes,
    compose,
    load_recipe,
)

pytestmark = pytest.mark.slime

QWEN3 = {**LAUNCH_QWEN3, "architectures": ["Qwen3ForCausalLM"], "max_position_embeddings": 4096}


@pytest.fixture(scope="module")
def arguments():
    return import_slime_arguments()


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return hf_dir(tmp_path / "hf", QWEN3)


def parse(arguments, command: list[str], monkeypatch) -> tuple[object, set[str]]:
    """slime's parse of ``command`` (without the interpreter), and the option strings its parsers know."""
    monkeypatch.setattr(sys, "argv", command[1:])
    with slime_flags.recording_parsers() as seen:
        args = arguments.parse_args()
    return args, seen


def emitted_flags(command: list[str]) -> list[str]:
    return [part for part in command if part.startswith("--")]


@pytest.mark.parametrize("name", available_recipes())
def test_every_recipe_parses_with_slimes_own_parser(name, arguments, checkpoint, tmp_path, monkeypatch) -> None:
    plan = compose(load_recipe(name), hf_checkpoint=checkpoint, run_dir=tmp_path / "run", train_script="train_async.py")
    write_files(plan)
    args, seen = parse(arguments, plan.command, monkeypatch)
    dropped = [flag for flag in emitted_flags(plan.command) if flag not in seen]
    assert dropped == [], f"slime would silently ignore {dropped}"
    assert args.save_interval is not None and args.save == str(tmp_path / "run" / "checkpoints")
    assert args.finetune is True and args.load == str(checkpoint)  # a first start finetunes the HF checkpoint
    assert args.custom_config_path == str(plan.custom_config_path)
    assert args.openclaw_method == plan.custom_config["openclaw_method"]  # our keys reach args


def test_a_restart_resumes_from_the_save_directory(arguments, checkpoint, tmp_path, monkeypatch) -> None:
    save = tmp_path / "run" / "checkpoints"
    (save / "iter_0000020").mkdir(parents=True)
    (save / MEGATRON_MARKER).write_text("20")
    plan = compose(load_recipe("combine"), hf_checkpoint=checkpoint, run_dir=tmp_path / "run", train_script="t.py")
    assert plan.resumed_from == save
    write_files(plan)
    args, _ = parse(arguments, plan.command, monkeypatch)
    assert args.load == str(save) and args.ref_load == str(checkpoint)
    assert not getattr(args, "finetune", False)  # slime loads weights, optimizer and step from the save dir


def test_kl_loss_parses_with_the_hf_reference(arguments, checkpoint, tmp_path, monkeypatch) -> None:
    recipe = apply_overrides(load_recipe("binary_rl"), ["slime.use-kl-loss=true", "slime.kl-loss-coef=0.01"])
    plan = compose(recipe, hf_checkpoint=checkpoint, run_dir=tmp_path / "run", train_script="t.py")
    write_files(plan)
    args, seen = parse(arguments, plan.command, monkeypatch)
    assert args.use_kl_loss and args.ref_load == str(checkpoint)
    assert all(flag in seen for flag in emitted_flags(plan.command))


def test_flags_we_rely_on_are_slime_flags(arguments) -> None:
    known = slime_flags.option_strings()
    assert sorted(slime_flags.RELIED_ON - known) == []
    with pytest.raises(ConfigError, match=r"did you mean slime.use-kl-loss\?"):
        slime_flags.check_flags(["use-kl-los"], known, exhaustive=True)
    with pytest.raises(ConfigError, match="slime has no flag --frobnicate"):
        slime_flags.check_flags(["frobnicate"], known, exhaustive=True)
    slime_flags.check_flags(["lr", "sglang-mem-fraction-static", "micro-batch-size"], known, exhaustive=True)
