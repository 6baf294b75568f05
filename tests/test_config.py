"""OpenClawConfig: parsing from a slime args namespace, YAML and --set; validation errors."""

from __future__ import annotations

import argparse

import pytest
import yaml

from slime_openclaw.config import VALID_KEYS, OpenClawConfig, check_custom_config_keys, parse_override
from slime_openclaw.errors import ConfigError
from slime_openclaw.types import Method

BASE = {"openclaw_method": "combine", "openclaw_judge_endpoints": ["slime:judge"]}


def test_round_trip_through_flat_keys() -> None:
    config = OpenClawConfig.from_mapping({**BASE, "openclaw_opd_clip": 2.5, "openclaw_gateway_port": 31000})
    assert config.method is Method.COMBINE
    assert config.opd_clip == 2.5 and config.gateway.port == 31000
    assert config.hint_endpoints == ("slime:judge",)
    assert OpenClawConfig.from_mapping(config.to_mapping()) == config
    assert set(config.to_mapping()) == set(VALID_KEYS)


def test_unknown_key_lists_valid_keys_and_suggests() -> None:
    with pytest.raises(ConfigError) as err:
        OpenClawConfig.from_mapping({**BASE, "openclaw_jugde_votes": 5})
    message = err.value.message
    assert "openclaw_jugde_votes (did you mean openclaw_judge_votes?)" in message
    assert "valid keys:" in message and "openclaw_teacher_topk" in message


def test_from_args_reads_namespace_and_rechecks_the_file(tmp_path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump({**BASE, "opd_kl_coef": 1.0, "openclaw_judge_votes": 5}))
    args = argparse.Namespace(custom_config_path=str(path), lr=1e-6, **BASE, openclaw_judge_votes=5)
    assert OpenClawConfig.from_args(args).judge.votes == 5
    # a misspelled prefix in the file is caught although slime would just set it on args
    path.write_text(yaml.safe_dump({**BASE, "opneclaw_judge_votes": 5}))
    with pytest.raises(ConfigError, match="opneclaw_judge_votes"):
        OpenClawConfig.from_args(args)


def test_other_plugins_keys_pass_the_file_check() -> None:
    check_custom_config_keys({"my_plugin_threshold": 3, "lr": 1e-6, **BASE})
    with pytest.raises(ConfigError):
        check_custom_config_keys({"openclaw_mehtod": "opd"})


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"openclaw_method": "ppo"}, "openclaw_method: must be one of binary, opd, combine"),
        ({**BASE, "openclaw_judge_votes": 0}, "openclaw_judge_votes: must be >= 1"),
        ({**BASE, "openclaw_judge_votes": "three"}, "expected an integer"),
        ({**BASE, "openclaw_rl_weight": -1}, "openclaw_rl_weight"),
        ({"openclaw_method": "binary", "openclaw_judge_mode": "llm"}, "needs at least one judge"),
        ({**BASE, "openclaw_judge_endpoints": ["judge.local:80"]}, "is not an http(s) URL"),
        ({**BASE, "openclaw_gateway_host": "0.0.0.0"}, "is not loopback"),
        ({**BASE, "openclaw_teacher_topk": 8}, "openclaw_teacher_topk_dir"),
        ({**BASE, "openclaw_method": "binary", "openclaw_teacher_topk": 8, "openclaw_teacher_topk_dir": "/x"}, "opd or combine"),
    ],
)
def test_invalid_values_are_one_line_errors(values, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        OpenClawConfig.from_mapping(values)
    assert fragment in err.value.message
    assert "\n" not in err.value.message


def test_non_loopback_gateway_with_key_from_environment() -> None:
    config = OpenClawConfig.from_mapping(
        {**BASE, "openclaw_gateway_host": "0.0.0.0", "openclaw_gateway_api_key_env": "OC_KEY"}
    )
    assert config.gateway_api_key({"OC_KEY": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="OC_KEY is not set"):
        config.gateway_api_key({})


def test_scientific_notation_and_set_overrides() -> None:
    assert parse_override("openclaw_opd_clip=1e-1") == ("openclaw_opd_clip", "1e-1")
    config = OpenClawConfig.from_mapping({**BASE, "openclaw_opd_clip": "1e-1"})
    assert config.opd_clip == pytest.approx(0.1)
    assert parse_override("openclaw_judge_endpoints=[http://a:1/v1, slime:j]")[1] == ["http://a:1/v1", "slime:j"]
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("novalue")


def test_slime_models_named_by_the_config() -> None:
    config = OpenClawConfig.from_mapping(
        {**BASE, "openclaw_hint_endpoints": ["http://127.0.0.1:9/v1"], "openclaw_teacher_endpoint": "slime:ref"}
    )
    assert config.slime_models() == ("judge", "ref")


def test_example_custom_config_parses() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "slime_plugin" / "openclaw.yaml"
    assert OpenClawConfig.from_file(example).method is Method.COMBINE
