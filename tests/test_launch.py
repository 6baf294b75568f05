"""Recipes and `slime-openclaw launch`: loading, overrides, command composition, errors, a real run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from slime_openclaw.config import OpenClawConfig
from slime_openclaw.errors import ConfigError
from slime_openclaw.slime import launch
from slime_openclaw.slime.model_args import megatron_model_args
from slime_openclaw.slime.recipe import (
    apply_overrides,
    available_recipes,
    compose,
    load_recipe,
    openclaw_config,
)

QWEN3 = {"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
         "intermediate_size": 128, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
         "rope_theta": 1000000.0, "vocab_size": 512, "tie_word_embeddings": True}


def hf_dir(path: Path, config: dict) -> Path:
    """A directory with just the ``config.json`` of an HF checkpoint (all launch reads)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return hf_dir(tmp_path / "ckpt", QWEN3)


@pytest.fixture
def cli(capsys):
    """Run `slime-openclaw launch ARGV` in process (the CLI's real entry point)."""
    from slime_openclaw.cli import main

    def invoke(*argv: str) -> subprocess.CompletedProcess:
        code = main(["launch", *argv])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["launch", *argv], code, captured.out, captured.err)

    return invoke


def test_every_recipe_loads_and_validates(tmp_path) -> None:
    assert set(available_recipes()) >= {"binary_rl", "opd", "opd_topk", "combine"}
    for name in available_recipes():
        recipe = load_recipe(name)
        config = openclaw_config(recipe, tmp_path)
        if "custom-generate-function-path" in recipe["slime"]:  # a general agent: tasks from --prompt-data
            assert recipe["slime"]["n-samples-per-prompt"] > 1 and config.agent.env == name
            continue
        assert recipe["slime"]["n-samples-per-prompt"] == 1
        assert recipe["slime"]["disable-rollout-global-dataset"] is True
        if name == "opd_topk":
            assert config.teacher.topk > 0 and Path(config.teacher.topk_dir).is_relative_to(tmp_path)


def test_methods_map_to_slime_builtins_or_our_hooks(checkpoint, tmp_path) -> None:
    def argv(name: str) -> list[str]:
        return compose(load_recipe(name), hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="T").command

    binary = argv("binary_rl")
    assert "--disable-rewards-normalization" in binary and "--custom-loss-function-path" not in binary
    opd = argv("opd")
    assert opd[opd.index("--opd-type") + 1] == "sglang" and "--use-opd" in opd
    combine = argv("combine")
    assert combine[combine.index("--custom-advantage-function-path") + 1] == "slime_openclaw.slime.hooks.combined_advantage"
    assert "--use-opd" not in combine  # our hook forms the OPD term, exactly zero without a hint
    topk = argv("opd_topk")
    assert topk[topk.index("--rollout-data-postprocess-path") + 1] == "slime_openclaw.slime.hooks.topk_postprocess"
    for command in (binary, opd, combine, topk):
        assert command[command.index("--rollout-function-path") + 1] == "slime_openclaw.slime.rollout.generate_rollout"


def test_overrides_reach_config_flags_and_gpu_split(checkpoint, tmp_path) -> None:
    recipe = apply_overrides(load_recipe("opd"), [
        "openclaw.opd_weight=0.5", "judge_votes=5", "resources.judge_gpus=1", "resources.rollout_gpus=3",
        "slime.lr=2e-6", "slime.use-kl-loss=true",
    ])
    plan = compose(recipe, hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="train_async.py")
    argv = plan.command
    assert argv[argv.index("--opd-kl-coef") + 1] == "0.5"  # one source for the OPD weight
    assert argv[argv.index("--rollout-num-gpus") + 1] == "4" and "--use-kl-loss" in argv
    assert argv[argv.index("--lr") + 1] == "2e-6"
    assert plan.custom_config["openclaw_judge_votes"] == 5
    assert OpenClawConfig.from_mapping(plan.custom_config).opd_weight == 0.5
    groups = {m["name"]: m for m in plan.sglang_config["sglang"]}
    assert groups["judge"]["update_weights"] is False and groups["judge"]["server_groups"][0]["num_gpus"] == 1
    assert groups["actor"]["server_groups"][0]["num_gpus"] == 3


@pytest.mark.parametrize(("item", "fragment"), [
    ("openclaw.judge_vots=5", "did you mean openclaw_judge_votes?"),
    ("resources.cpu=4", "unknown resources key(s) cpu"),
    ("lr=1e-6", "write slime.lr for a slime flag"),
    ("openclaw.method=ppo", "must be one of binary, opd, combine"),
])
def test_bad_overrides_are_errors(item, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides(load_recipe("combine"), [item])
    assert fragment in err.value.message


def test_model_args_from_hf_config() -> None:
    flags = megatron_model_args(QWEN3)
    assert flags[flags.index("--num-query-groups") + 1] == "2" and "--qk-layernorm" in flags
    assert "--untie-embeddings-and-output-weights" not in flags
    qwen2 = megatron_model_args({**QWEN3, "model_type": "qwen2", "tie_word_embeddings": False})
    assert "--add-qkv-bias" in qwen2 and "--untie-embeddings-and-output-weights" in qwen2
    with pytest.raises(ConfigError, match="--model-args"):
        megatron_model_args({**QWEN3, "model_type": "deepseek_v3"})


def test_dry_run_prints_command_and_files_without_slime(cli, checkpoint, tmp_path) -> None:
    result = cli("--recipe", "combine", "--hf-checkpoint", str(checkpoint), "--run-dir", str(tmp_path / "run"),
                 "--dry-run", "--set", "openclaw.gateway_port=31111")
    assert result.returncode == 0, result.stderr
    assert "train_async.py" in result.stdout and "--custom-config-path" in result.stdout
    assert "openclaw_gateway_port: 31111" in result.stdout and "update_weights: false" in result.stdout
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--recipe", "combine", "--set", "openclaw.jduge_votes=1"], "unknown config key(s): openclaw_jduge_votes"),
    (["--recipe", "combine", "--slime-dir", "/nonexistent/slime"], "slime not found at /nonexistent/slime"),
])
def test_errors_are_one_line_exit_2(cli, checkpoint, argv, fragment) -> None:
    result = cli(*argv, "--hf-checkpoint", str(checkpoint))
    assert result.returncode == 2
    assert fragment in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    missing = cli("--recipe", "combine", "--hf-checkpoint", str(checkpoint.parent / "missing"), "--dry-run")
    assert missing.returncode == 2 and "no such directory" in missing.stderr


def test_real_run_writes_files_and_runs_train_script(cli, checkpoint, tmp_path) -> None:
    slime_dir = tmp_path / "slime"
    (slime_dir / "slime").mkdir(parents=True)
    # a stand-in train_async.py that records what it was started with
    (slime_dir / "train_async.py").write_text(
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'pythonpath': os.environ['PYTHONPATH'], 'cwd': os.getcwd()},"
        " open(os.path.join(os.getcwd(), 'started.json'), 'w'))\n"
    )
    run_dir = tmp_path / "run"
    result = cli("--recipe", "binary_rl", "--hf-checkpoint", str(checkpoint), "--slime-dir", str(slime_dir),
                 "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    started = json.loads((run_dir / "started.json").read_text())
    argv = started["argv"]
    custom = yaml.safe_load(Path(argv[argv.index("--custom-config-path") + 1]).read_text())
    assert custom["openclaw_method"] == "binary"
    assert Path(argv[argv.index("--sglang-config") + 1]).is_file()
    assert started["pythonpath"].split(":")[:2] == [str(slime_dir.resolve()), str(launch.PLUGIN_ROOT)]


def test_ray_submit_command_carries_runtime_env(checkpoint, tmp_path) -> None:
    plan = compose(load_recipe("combine"), hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="/s/train_async.py")
    argv, env = launch.job_command(plan, "/s", "http://127.0.0.1:8265")
    assert argv[:5] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265"] and env == {}
    runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])
    assert runtime_env["env_vars"]["PYTHONPATH"].startswith("/s:")
    assert argv[argv.index("--") + 1:] == plan.command


@pytest.mark.parametrize(("item", "fragment"), [
    ("slime.use-kl-los=true", "did you mean slime.use-kl-loss?"),
    ("slime.save-intervall=5", "did you mean slime.save-interval?"),
])
def test_misspelled_slime_flags_are_one_line_errors_without_slime(cli, checkpoint, item, fragment, monkeypatch) -> None:
    monkeypatch.setattr(launch, "optional_slime", lambda explicit: None)
    result = cli("--recipe", "binary_rl", "--hf-checkpoint", str(checkpoint), "--dry-run", "--set", item)
    assert result.returncode == 2 and fragment in result.stderr and result.stderr.count("\n") == 1


def test_flags_outside_the_static_list_pass_without_slime(cli, checkpoint, monkeypatch) -> None:
    monkeypatch.setattr(launch, "optional_slime", lambda explicit: None)
    result = cli("--recipe", "binary_rl", "--hf-checkpoint", str(checkpoint), "--dry-run",
                 "--set", "slime.sglang-mem-fraction-static=0.7")
    assert result.returncode == 0, result.stderr
    assert "--sglang-mem-fraction-static 0.7" in result.stdout


def test_every_emitted_flag_is_one_launch_relies_on(checkpoint, tmp_path) -> None:
    from slime_openclaw.slime.flags import RELIED_ON

    for name in available_recipes():
        command = compose(load_recipe(name), hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="T").command
        model_flags = set(megatron_model_args(QWEN3))
        ours = {part for part in command if part.startswith("--") and part not in model_flags}
        assert ours <= RELIED_ON, f"{name}: {sorted(ours - RELIED_ON)} not in RELIED_ON (the slime parse test checks it)"


def test_save_interval_and_resume_from_the_save_directory(checkpoint, tmp_path) -> None:
    fresh = compose(load_recipe("combine"), hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="T")
    argv = fresh.command
    assert argv[argv.index("--save-interval") + 1] == "20" and fresh.resumed_from is None
    assert argv[argv.index("--load") + 1] == str(checkpoint) == argv[argv.index("--ref-load") + 1]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("20")
    again = compose(load_recipe("combine"), hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="T")
    argv = again.command
    assert again.resumed_from == tmp_path / "checkpoints"
    assert argv[argv.index("--load") + 1] == str(tmp_path / "checkpoints")
    assert argv[argv.index("--ref-load") + 1] == str(checkpoint)  # the reference stays the HF checkpoint
    pinned = apply_overrides(load_recipe("combine"), [f"slime.load={checkpoint}"])
    assert compose(pinned, hf_checkpoint=checkpoint, run_dir=tmp_path, train_script="T").resumed_from is None


def test_dry_run_line_expands_slime_dir_when_pasted(cli, checkpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SLIME_DIR", raising=False)
    result = cli("--recipe", "opd", "--hf-checkpoint", str(checkpoint), "--run-dir", str(tmp_path / "run"), "--dry-run")
    line = result.stdout.splitlines()[1]
    assert line.startswith('PYTHONPATH="$SLIME_DIR:')
    echoed = subprocess.run(["bash", "-c", f"SLIME_DIR=/opt/slime; set -- {line}; echo \"$1 $3\""],
                            capture_output=True, text=True, check=True).stdout.split()
    assert echoed[0].startswith("PYTHONPATH=/opt/slime:") and echoed[1] == "/opt/slime/train_async.py"
