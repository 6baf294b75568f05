"""``slime-openclaw launch``: compose a slime job from a recipe, print it or run it.

``--dry-run`` prints the command and the generated files and needs neither slime nor a
GPU. A real run writes the custom config (and the ``--sglang-config`` when slime serves
the judge) into the run directory and runs ``train_async.py`` directly, or through ``ray
job submit`` when ``--ray-address`` is given, with our package and slime on
``PYTHONPATH`` (the job's runtime env, so Ray workers import the plugin). Run directly,
Ray starts inside the job with its dashboard on 127.0.0.1 (Ray's default); launch binds
nothing itself, kills nothing, and stops only the process it started.
Errors (unknown recipe or key, missing checkpoint, no slime) are one line and exit 2.

Every ``slime.*`` key is checked before anything runs (slime itself would drop a misspelled
flag silently): against slime's own parsers when the slime checkout is known (``--slime-dir``,
``$SLIME_DIR``; read by running ``slime_openclaw.slime.flags`` with the job's ``PYTHONPATH``),
else against the flags launch relies on (``flags.RELIED_ON``). When ``--save`` already holds a
Megatron checkpoint the job resumes from it (``recipe.resume_dir``) and launch says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import slime_openclaw
from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import flags as slime_flags
from slime_openclaw.slime.recipe import LaunchPlan, apply_overrides, available_recipes, compose, load_recipe

PLUGIN_ROOT = Path(slime_openclaw.__file__).resolve().parent.parent
DRY_RUN_SLIME = "$SLIME_DIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``slime-openclaw launch``."""
    parser.add_argument("--recipe", required=True, help=f"recipe name ({', '.join(available_recipes())}) or YAML path")
    parser.add_argument("--hf-checkpoint", required=True, type=Path, help="Hugging Face checkpoint directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override: openclaw.KEY, resources.KEY or slime.FLAG (repeatable)")
    parser.add_argument("--run-dir", type=Path, default=None, help="where generated files go (default: runs/RECIPE)")
    parser.add_argument("--slime-dir", type=Path, default=None, help="slime checkout (default: $SLIME_DIR, or the "
                        "installed slime package's checkout)")
    parser.add_argument("--ray-address", default=None, help="submit with `ray job submit` to this dashboard address "
                        "(e.g. http://127.0.0.1:8265) instead of running train_async.py directly")
    parser.add_argument("--model-args", default=None, help="Megatron model flags, quoted (default: from config.json)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for train_async.py")
    parser.add_argument("--dry-run", action="store_true", help="print the command and generated files, run nothing")


def find_slime(explicit: Path | None, environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """The slime checkout holding ``train_async.py``; ``ConfigError`` when there is none."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    elif environ.get("SLIME_DIR"):
        candidates.append(Path(environ["SLIME_DIR"]))
    else:
        try:
            spec = importlib.util.find_spec("slime")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p).parent for p in spec.submodule_search_locations]
    for path in candidates:
        if (path / "train_async.py").is_file() and (path / "slime").is_dir():
            return path.resolve()
    where = str(candidates[0]) if candidates else "nowhere (no --slime-dir, no $SLIME_DIR, slime not importable)"
    raise ConfigError(f"slime not found at {where}: pass --slime-dir with a checkout of github.com/THUDM/slime")


def known_flags(slime_dir: Path | None, python: str) -> tuple[set[str], bool]:
    """slime's option strings and True, or ``RELIED_ON`` and False when slime's parser cannot be read."""
    if slime_dir is None:
        return set(slime_flags.RELIED_ON), False
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(slime_dir), str(PLUGIN_ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([python, "-m", "slime_openclaw.slime.flags"], env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        if done.returncode == 0:
            return set(json.loads(done.stdout)), True
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        reason = str(exc)
    print(f"launch: slime's parser unreadable ({reason}); checking slime.* keys against the flags launch uses",
          file=sys.stderr)
    return set(slime_flags.RELIED_ON), False


def check_recipe_flags(args: argparse.Namespace, slime_dir: Path | None) -> None:
    """One-line ``ConfigError`` for a ``slime.*`` key slime would ignore."""
    recipe = apply_overrides(load_recipe(args.recipe), args.overrides)
    known, exhaustive = known_flags(slime_dir, args.python)
    slime_flags.check_flags(recipe["slime"], known, exhaustive=exhaustive)


def optional_slime(explicit: Path | None) -> Path | None:
    """The slime checkout if one is named or installed, else None (a dry run needs none)."""
    try:
        return find_slime(explicit)
    except ConfigError:
        return None


def plan_from_args(args: argparse.Namespace, slime_dir: Path | None) -> LaunchPlan:
    """The launch plan for parsed CLI arguments (``slime_dir`` None: dry-run placeholder)."""
    recipe = apply_overrides(load_recipe(args.recipe), args.overrides)
    if not args.hf_checkpoint.is_dir():
        raise ConfigError(f"--hf-checkpoint {args.hf_checkpoint}: no such directory")
    name = Path(args.recipe).stem
    run_dir = (args.run_dir or Path("runs") / name).resolve()
    script = str(slime_dir / "train_async.py") if slime_dir else f"{DRY_RUN_SLIME}/train_async.py"
    model_args = shlex.split(args.model_args) if args.model_args else None
    return compose(recipe, hf_checkpoint=args.hf_checkpoint.resolve(), run_dir=run_dir, train_script=script,
                   model_args=model_args, python=args.python)


def job_command(plan: LaunchPlan, slime_dir: Path | str, ray_address: str | None) -> tuple[list[str], dict[str, str]]:
    """The argv to run and the environment additions (``PYTHONPATH`` with slime and the plugin)."""
    pythonpath = os.pathsep.join([str(slime_dir), str(PLUGIN_ROOT)])
    if ray_address is None:
        return plan.command, {"PYTHONPATH": pythonpath}
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
    submit = ["ray", "job", "submit", "--address", ray_address, "--runtime-env-json", json.dumps(runtime_env), "--"]
    return submit + plan.command, {}


def shell_word(word: str) -> str:
    """``word`` quoted for a POSIX shell; the ``$SLIME_DIR`` placeholder stays expandable."""
    if DRY_RUN_SLIME not in word:
        return shlex.quote(word)
    escaped = word
    for char in ("\\", '"', "`", "$"):
        escaped = escaped.replace(char, "\\" + char)
    return '"' + escaped.replace("\\" + DRY_RUN_SLIME, DRY_RUN_SLIME) + '"'


def shell_line(argv: list[str], env: dict[str, str]) -> str:
    """The command as one line to paste into a shell (environment assignments first)."""
    return " ".join([*(f"{k}={shell_word(v)}" for k, v in env.items()), *(shell_word(a) for a in argv)])


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def write_files(plan: LaunchPlan) -> None:
    """Write the generated custom config (and sglang config) of a plan."""
    plan.custom_config_path.parent.mkdir(parents=True, exist_ok=True)
    plan.custom_config_path.write_text(_yaml(plan.custom_config), encoding="utf-8")
    if plan.sglang_config is not None and plan.sglang_config_path is not None:
        plan.sglang_config_path.write_text(_yaml(plan.sglang_config), encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``slime-openclaw launch``."""
    plan = plan_from_args(args, None)  # recipe, keys and checkpoint are checked before slime is looked for
    slime_dir = optional_slime(args.slime_dir) if args.dry_run else find_slime(args.slime_dir)
    check_recipe_flags(args, slime_dir)
    if slime_dir is not None and not args.dry_run:
        plan = plan_from_args(args, slime_dir)
    else:
        slime_dir = None
    argv, env = job_command(plan, slime_dir or DRY_RUN_SLIME, args.ray_address)
    if plan.resumed_from is not None:
        print(f"launch: resuming from the checkpoint in {plan.resumed_from} (--load); "
              "the HF checkpoint is the reference (--ref-load)", file=sys.stderr)
    if args.dry_run:
        print("# command")
        print(shell_line(argv, env))
        print(f"# {plan.custom_config_path}")
        print(_yaml(plan.custom_config), end="")
        if plan.sglang_config is not None:
            print(f"# {plan.sglang_config_path}")
            print(_yaml(plan.sglang_config), end="")
        return 0
    write_files(plan)
    full_env = {**os.environ, **env}
    if "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):
        full_env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
    process = subprocess.Popen(argv, env=full_env, cwd=plan.custom_config_path.parent)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()  # the job we started, by its own handle
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
