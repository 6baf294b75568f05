"""Megatron model flags for a Hugging Face checkpoint, read from its ``config.json``.

slime needs the architecture on its command line (its ``scripts/models/*.sh``) and checks
it against the checkpoint. For the dense decoder families that share one layout and that
slime converts between Megatron and Hugging Face (Llama, Qwen2, Qwen3: slime's
``megatron_to_hf`` has no Mistral converter, so a Mistral checkpoint could be trained but not
pushed to SGLang) the flags follow from ``config.json``; anything else (Mistral, MoE, MLA,
multimodal) must be given by the user with ``--model-args "..."``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slime_openclaw.errors import ConfigError

DENSE_FAMILIES = ("llama", "qwen2", "qwen3")


def read_hf_config(checkpoint: str | Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``; a one-line ``ConfigError`` when it is missing."""
    path = Path(checkpoint)
    if not path.is_dir():
        raise ConfigError(f"--hf-checkpoint {checkpoint}: no such directory")
    config_file = path / "config.json"
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--hf-checkpoint {checkpoint}: no config.json (not a Hugging Face checkpoint)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{config_file}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{config_file}: not a JSON object")
    return data


def megatron_model_args(config: dict[str, Any]) -> list[str]:
    """Megatron flags equivalent to slime's model scripts for a dense decoder config."""
    family = str(config.get("model_type", ""))
    if family not in DENSE_FAMILIES:
        raise ConfigError(
            f"model_type {family!r} has no automatic Megatron flags (supported: {', '.join(DENSE_FAMILIES)}); "
            "pass them with --model-args"
        )
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        flags = [
            "--swiglu",
            "--num-layers", str(config["num_hidden_layers"]),
            "--hidden-size", str(hidden),
            "--ffn-hidden-size", str(config["intermediate_size"]),
            "--num-attention-heads", str(heads),
            "--group-query-attention",
            "--num-query-groups", str(config.get("num_key_value_heads", heads)),
            "--kv-channels", str(config.get("head_dim") or hidden // heads),
            "--use-rotary-position-embeddings",
            "--disable-bias-linear",
            "--normalization", "RMSNorm",
            "--norm-epsilon", str(config.get("rms_norm_eps", 1e-6)),
            "--rotary-base", _rope_theta(config),
            "--vocab-size", str(config["vocab_size"]),
        ]
    except KeyError as exc:
        raise ConfigError(f"config.json lacks {exc.args[0]!r}; pass the Megatron flags with --model-args") from None
    if family == "qwen2" or config.get("attention_bias"):
        flags.append("--add-qkv-bias")
    if family == "qwen3":
        flags.append("--qk-layernorm")
    if not config.get("tie_word_embeddings", False):
        flags.append("--untie-embeddings-and-output-weights")
    return flags


def _rope_theta(config: dict[str, Any]) -> str:
    params = config.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        return _number(params["rope_theta"])
    return _number(config.get("rope_theta", 10000))


def _number(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)
