"""README's by-hand flag list against what ``launch`` emits and what slime's parsers consume.

The list is the ```text block after the sentence naming this file in README's "Training with
slime" section: ``# all recipes`` / ``# NAME, NAME`` lines open a section, each other line
is a flag and its value (``<...>``: the user's choice). For every personal-agent recipe:
each README flag of the recipe is in the launch command, with the same value where README
gives one; each plugin flag of the command (a ``slime_openclaw.`` value, or one the run
needs for the plugin to work) is in README. The part marked ``slime`` checks every README
flag against the option strings of slime's own parsers (the shared slime environment).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_launch import QWEN3, hf_dir

from slime_openclaw.slime.recipe import compose, load_recipe

README = Path(__file__).resolve().parents[1] / "README.md"
RECIPES = ("binary_rl", "opd", "combine", "opd_topk")
NEEDED = {"--custom-config-path", "--disable-rollout-global-dataset", "--n-samples-per-prompt",
          "--disable-rewards-normalization", "--advantage-estimator", "--use-opd", "--opd-type", "--loss-type",
          "--save-interval", "--rollout-max-response-len", "--use-tis", "--router-policy"}
"""Flags without a ``slime_openclaw.`` value that the plugin's run needs (guards, slime's own
checks, the OPD wiring, slime's off-policy correction, the training-side length cap, session-affine routing)."""


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    anchor = text.index("`tests/test_readme_flags.py` reads this block")
    match = re.search(r"```text\n(.*?)```", text[anchor:], re.S)
    assert match, "no ```text block after the sentence naming tests/test_readme_flags.py"
    return match.group(1)


def readme_flags() -> dict[str, dict[str, str | None]]:
    """Per recipe, README's flags and values (None: a switch; ``<...>``: the user's choice)."""
    sections: dict[str, dict[str, str | None]] = {name: {} for name in RECIPES}
    current: tuple[str, ...] = ()
    for line in readme_block().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            names = tuple(n.strip() for n in line[1:].split(","))
            current = RECIPES if names == ("all recipes",) else names
            assert set(current) <= set(RECIPES), f"unknown recipe in README section {line!r}"
            continue
        flag, _, value = line.partition(" ")
        assert flag.startswith("--") and current, f"README flag line outside a section: {line!r}"
        for name in current:
            sections[name][flag] = value.strip() or None
    return sections


def launch_flags(name: str, tmp_path: Path) -> dict[str, str | None]:
    plan = compose(load_recipe(name), hf_checkpoint=hf_dir(tmp_path / name / "hf", QWEN3),
                   run_dir=tmp_path / name / "run", train_script="train_async.py", model_args=[])
    flags: dict[str, str | None] = {}
    command = plan.command[2:]
    for i, part in enumerate(command):
        if part.startswith("--"):
            following = command[i + 1] if i + 1 < len(command) else None
            flags[part] = None if following is None or following.startswith("--") else following
    return flags


@pytest.mark.parametrize("name", RECIPES)
def test_readme_by_hand_list_matches_launch(name: str, tmp_path: Path) -> None:
    documented = readme_flags()[name]
    emitted = launch_flags(name, tmp_path)
    for flag, value in documented.items():
        assert flag in emitted, f"README lists {flag} for {name}; launch does not emit it"
        if value is not None and not value.startswith("<"):
            assert emitted[flag] == value, f"{name}: README {flag} {value}, launch {emitted[flag]}"
    plugin = {f for f, v in emitted.items() if (v or "").startswith("slime_openclaw.") or f in NEEDED}
    missing = sorted(plugin - set(documented))
    assert not missing, f"launch emits {missing} for {name}; README's by-hand list lacks them"


@pytest.mark.slime
def test_every_readme_flag_is_one_slime_consumes() -> None:
    from slime_openclaw.slime import flags as slime_flags

    known = slime_flags.option_strings()
    listed = {flag for section in readme_flags().values() for flag in section}
    assert listed and not sorted(listed - known), f"slime's parsers do not consume {sorted(listed - known)}"
