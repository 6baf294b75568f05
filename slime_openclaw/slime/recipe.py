"""Recipes (``recipes/*.yaml``) and the slime job they compose into.

A recipe has four sections: ``description``; ``resources`` (GPU split: train actors,
policy engines, judge engines); ``slime`` (flags, ``true`` = bare flag, ``false``/null =
omitted); ``openclaw`` (our config keys without the ``openclaw_`` prefix). ``--set
section.key=value`` (or ``key=value`` for an ``openclaw``/``resources`` key) overrides any
of them; unknown ``openclaw``/``resources`` keys and sections are errors listing the
valid ones (``slime`` flags are slime's to check).

``compose`` turns a recipe into a :class:`LaunchPlan`: the ``train_async.py`` command
with the model flags of the checkpoint, the GPU split, our plugin paths and the two
generated files (the custom config, and the ``--sglang-config`` with the frozen judge).
Nothing here runs anything or imports slime.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from slime_openclaw.config import PREFIX, OpenClawConfig, parse_override
from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import guards
from slime_openclaw.slime.model_args import megatron_model_args, read_hf_config

RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"
SECTIONS = ("description", "resources", "slime", "openclaw")
RESOURCE_KEYS = {"actor_gpus": int, "rollout_gpus": int, "judge_gpus": int, "judge_model": str, "gpus_per_engine": int}
ROLLOUT_FUNCTION = guards.PERSONAL_ROLLOUT
ROUTER_POLICY = "manual"
"""The SGLang router policy that routes by the gateway's ``X-SMG-Routing-Key`` (the session):
every turn of a session reaches the engine holding its prefix cache (sticky by key; the
router slime pins, sglang-router 0.3.2, offers no ``consistent_hashing`` on its command line)."""
DATA_SOURCE = "slime_openclaw.slime.rollout.LiveDataSource"
"""Starts the gateway when slime builds its RolloutManager (with our rollout function only;
the same path as ``slime.rollout.DATA_SOURCE``, which this module does not import)."""
REWARD_FUNCTION = "slime_openclaw.slime.reward.reward"
RUN_RELATIVE_KEYS = ("openclaw_journal_path", "openclaw_teacher_topk_dir")
SAVE_INTERVAL = 20
"""Default ``--save-interval`` (training steps between Megatron checkpoints; ``--save`` needs one)."""
MEGATRON_MARKER = "latest_checkpointed_iteration.txt"


def available_recipes(recipe_dir: Path = RECIPE_DIR) -> list[str]:
    """Names of the recipes shipped in ``recipe_dir``."""
    return sorted(p.stem for p in recipe_dir.glob("*.yaml"))


def load_recipe(name_or_path: str, recipe_dir: Path = RECIPE_DIR) -> dict[str, Any]:
    """A recipe by name (``combine``) or path, as plain data with interpolations resolved."""
    path = Path(name_or_path)
    if not path.suffix:
        path = recipe_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name_or_path!r} (recipes: {', '.join(available_recipes(recipe_dir))})")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    recipe = {"description": "", "resources": {}, "slime": {}, "openclaw": {}, **data}
    _check_sections(recipe, str(path))
    return recipe


def _check_sections(recipe: dict[str, Any], where: str) -> None:
    unknown = sorted(set(recipe) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown recipe section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    bad = sorted(set(recipe["resources"]) - set(RESOURCE_KEYS))
    if bad:
        raise ConfigError(f"{where}: unknown resources key(s) {', '.join(bad)}; valid: {', '.join(RESOURCE_KEYS)}")


def apply_overrides(recipe: dict[str, Any], items: Sequence[str]) -> dict[str, Any]:
    """A copy of ``recipe`` with ``--set`` items applied (see the module doc)."""
    out = copy.deepcopy(recipe)
    for item in items:
        key, value = parse_override(item)
        section, _, name = key.partition(".")
        if not name:
            section, name = _section_of(key), key
        if section == "openclaw" and name.startswith(PREFIX):
            name = name[len(PREFIX) :]
        if section not in ("resources", "slime", "openclaw") or not name:
            raise ConfigError(f"--set {item}: key must be resources.KEY, slime.FLAG or openclaw.KEY")
        out[section][name] = value
    _check_sections(out, "--set")
    openclaw_config(out)  # unknown or invalid openclaw keys fail here, listing the valid ones
    return out


def _section_of(key: str) -> str:
    if key in RESOURCE_KEYS:
        return "resources"
    if key.startswith(PREFIX) or f"{PREFIX}{key}" in OpenClawConfig().to_mapping():
        return "openclaw"
    raise ConfigError(f"--set {key}: not a resources or openclaw key; write slime.{key} for a slime flag")


def openclaw_config(recipe: dict[str, Any], run_dir: Path | None = None) -> OpenClawConfig:
    """The recipe's ``openclaw`` section as a validated config (paths under ``run_dir``)."""
    values = {f"{PREFIX}{k}": v for k, v in recipe["openclaw"].items()}
    if run_dir is not None:
        for key in RUN_RELATIVE_KEYS:
            if values.get(key) and not Path(values[key]).is_absolute():
                values[key] = str(run_dir / values[key])
    return OpenClawConfig.from_mapping(values)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything ``launch`` runs or prints."""

    command: list[str]
    custom_config: dict[str, Any]
    custom_config_path: Path
    sglang_config: dict[str, Any] | None = None
    sglang_config_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    resumed_from: Path | None = None
    """The ``--save`` directory the job resumes from (a Megatron checkpoint is there), else None."""


def slime_flags(flags: dict[str, Any]) -> list[str]:
    """``{flag: value}`` -> argv (``true``: bare flag; ``false``/null: omitted; list: repeated values)."""
    argv: list[str] = []
    for name, value in flags.items():
        flag = name if name.startswith("--") else f"--{name}"
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def compose(
    recipe: dict[str, Any],
    *,
    hf_checkpoint: Path,
    run_dir: Path,
    train_script: str,
    model_args: Sequence[str] | None = None,
    python: str = "python3",
) -> LaunchPlan:
    """The slime command of a recipe (see the module doc)."""
    config = openclaw_config(recipe, run_dir)
    resources: dict[str, Any] = {"actor_gpus": 1, "rollout_gpus": 1, "judge_gpus": 0, "judge_model": "", "gpus_per_engine": 1}
    resources.update(recipe["resources"])
    flags = dict(recipe["slime"])
    if model_args is None:
        model_args = megatron_model_args(read_hf_config(hf_checkpoint))
    custom_path = run_dir / "openclaw.yaml"
    sglang, sglang_path = _sglang_config(config, resources, hf_checkpoint, run_dir)
    if flags.get("use-opd"):
        flags["opd-kl-coef"] = config.opd_weight  # one source for the OPD weight
    base = {
        "hf-checkpoint": str(hf_checkpoint),
        "load": str(hf_checkpoint),
        "ref-load": str(hf_checkpoint),
        "save": str(run_dir / "checkpoints"),
        "save-interval": SAVE_INTERVAL,
        "actor-num-nodes": 1,
        "actor-num-gpus-per-node": int(resources["actor_gpus"]),
        "rollout-num-gpus": int(resources["rollout_gpus"]) + int(resources["judge_gpus"]),
        "rollout-num-gpus-per-engine": int(resources["gpus_per_engine"]),
        "rollout-function-path": ROLLOUT_FUNCTION,
        "custom-rm-path": REWARD_FUNCTION,
        "custom-config-path": str(custom_path),
        "sglang-config": str(sglang_path) if sglang_path else None,
    }
    base.update(flags)  # the recipe (and --set slime.*) may override any default above
    if base["rollout-function-path"] == ROLLOUT_FUNCTION:
        base.setdefault("data-source-path", DATA_SOURCE)
        base.setdefault("router-policy", ROUTER_POLICY)
    guards.check(guards.settings_from_flags(base))
    resumed = resume_dir(base, explicit_load="load" in flags)
    if resumed is not None:
        base["load"] = str(resumed)  # slime resumes weights, optimizer and step; the HF dir stays the reference
    command = [python, train_script, *model_args, *slime_flags(base)]
    return LaunchPlan(command, config.to_mapping(), custom_path, sglang, sglang_path, resumed_from=resumed)


def resume_dir(flags: dict[str, Any], *, explicit_load: bool) -> Path | None:
    """The ``--save`` directory when it holds a Megatron checkpoint and ``--load`` was not set by hand.

    With ``--load`` at the HF checkpoint slime starts a fresh finetune every time; loading
    the save directory makes a restarted job continue where the last one saved."""
    save = flags.get("save")
    if explicit_load or not save or not (Path(str(save)) / MEGATRON_MARKER).is_file():
        return None
    return Path(str(save))


def _sglang_config(
    config: OpenClawConfig, resources: dict[str, Any], hf_checkpoint: Path, run_dir: Path
) -> tuple[dict[str, Any] | None, Path | None]:
    models = config.slime_models()
    judge_gpus = int(resources["judge_gpus"])
    if not models:
        if judge_gpus:
            raise ConfigError("resources.judge_gpus > 0 but no openclaw endpoint names a slime:MODEL")
        return None, None
    if len(models) > 1 or judge_gpus < 1:
        raise ConfigError(
            f"endpoints name slime models {', '.join(models)}: launch serves exactly one frozen model "
            "(resources.judge_gpus > 0); write --sglang-config yourself for more"
        )
    actor = {
        "name": "actor",
        "model_path": str(hf_checkpoint),
        "update_weights": True,
        "server_groups": [{"worker_type": "regular", "num_gpus": int(resources["rollout_gpus"])}],
    }
    frozen = {
        "name": models[0],
        "model_path": str(resources["judge_model"] or hf_checkpoint),
        "update_weights": False,
        "server_groups": [{"worker_type": "regular", "num_gpus": judge_gpus}],
    }
    return {"sglang": [actor, frozen]}, run_dir / "sglang.yaml"
