"""The tiny-model factory: a small Qwen2-architecture checkpoint in Hugging Face format, from nothing.

``make_tiny_model(out_dir)`` writes ``config.json``, ``generation_config.json``,
``model.safetensors`` (seeded random init: the same seed gives byte-identical files),
``tokenizer.json`` (byte-level BPE trained deterministically on ``tokenizer_corpus``) and
``tokenizer_config.json`` carrying the chat template of ``chat/template.py``. The result
loads offline with ``AutoTokenizer`` / ``AutoModelForCausalLM`` and runs fast on a CPU.
``ensure_default_model()`` builds one shared copy in the user cache, atomically.

This module does not train the model (the weights are random until the local trainer or a
pre-training step changes them) and does not serve it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slime_openclaw.chat.template import CHAT_TEMPLATE, CONTROL_TOKENS, IM_END, PAD_TOKEN, TAG_TOKENS
from slime_openclaw.errors import ConfigError
from slime_openclaw.local.model.tokenizer_corpus import synthetic_corpus
from slime_openclaw.paths import cache_dir

FACTORY_VERSION = 2
"""Bumped whenever the factory's output changes for the same spec and seed (invalidates caches)."""

# Pre-tokenization as Qwen2's tokenizer class does it (transformers 5 rebuilds a "qwen2"
# tokenizer with this pattern and NFC whatever tokenizer.json says, so ours must agree):
# letters with one leading non-letter, single digits, punctuation runs, newline runs, spaces.
PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture and tokenizer sizes of the tiny model (defaults: about 1.05M parameters)."""

    vocab_size: int = 2048
    """Total vocabulary including the 9 added tokens (BPE learns up to ``vocab_size - 9``; a corpus
    too small to support that many merges gives fewer, and config.json records the real size)."""
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 4096
    """Context length the config declares. The model has no position weights (RoPE), so a longer
    context changes only config.json: e.g. 65536 fits OpenClaw's ~26k-token prompt."""
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    tokenizer_corpus_docs: int = 6000
    """Synthetic documents the tokenizer is trained on."""
    tokenizer_corpus_seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < 512:
            raise ConfigError(f"vocab_size must be at least 512 (256 bytes + merges + added tokens), got {self.vocab_size}")
        if self.max_position_embeddings < 16:
            raise ConfigError(f"max_position_embeddings must be at least 16, got {self.max_position_embeddings}")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError("hidden_size must divide by num_attention_heads, and that by num_key_value_heads")

    def cache_key(self, seed: int) -> str:
        """Short hash of this spec, the weight seed and the factory version."""
        payload = json.dumps({"spec": dataclasses.asdict(self), "seed": seed, "factory": FACTORY_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def build_tokenizer(spec: TinyModelSpec) -> Any:
    """Train the byte-level BPE tokenizer (a ``tokenizers.Tokenizer``) with the added tokens last."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    n_added = len(CONTROL_TOKENS) + len(TAG_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - n_added,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = synthetic_corpus(spec.tokenizer_corpus_docs, seed=spec.tokenizer_corpus_seed)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CONTROL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return tokenizer


def _tokenizer_config(tokenizer: Any, spec: TinyModelSpec) -> dict[str, Any]:
    added = {}
    for token in (*CONTROL_TOKENS, *TAG_TOKENS):
        added[str(tokenizer.token_to_id(token))] = {
            "content": token, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": token in CONTROL_TOKENS,
        }
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": [CONTROL_TOKENS[1], IM_END],
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
        "model_max_length": spec.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
    }


def _model_config(spec: TinyModelSpec, vocab_size: int, eos_id: int, pad_id: int) -> dict[str, Any]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.initializer_range,
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": spec.rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": spec.num_hidden_layers,
        "attention_dropout": 0.0,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
    }


def _init_weights(config_dict: dict[str, Any], seed: int) -> dict[str, Any]:
    """Seeded init of every persistent tensor of ``Qwen2ForCausalLM``, independent of transformers' own init."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**{k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in Qwen2ForCausalLM(config).state_dict().items()}
    if config_dict["tie_word_embeddings"]:
        shapes.pop("lm_head.weight", None)
    generator = torch.Generator().manual_seed(seed)
    std = config_dict["initializer_range"]
    out_std = std / (2 * config_dict["num_hidden_layers"]) ** 0.5  # residual-branch outputs, GPT-2 style
    tensors = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith("norm.weight"):
            tensors[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            tensors[name] = torch.zeros(shape)
        else:
            scale = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std
            tensors[name] = torch.randn(shape, generator=generator) * scale
    return tensors


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_tiny_model(out_dir: str | os.PathLike[str], *, seed: int = 0, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write the tiny checkpoint into ``out_dir`` (created if missing) and return its path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    tokenizer.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", _tokenizer_config(tokenizer, spec))
    _write_json(out / "special_tokens_map.json", {"eos_token": IM_END, "pad_token": PAD_TOKEN})
    eos_id, pad_id = tokenizer.token_to_id(IM_END), tokenizer.token_to_id(PAD_TOKEN)
    config = _model_config(spec, tokenizer.get_vocab_size(with_added_tokens=True), eos_id, pad_id)
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", {
        "bos_token_id": None, "eos_token_id": [eos_id, pad_id], "pad_token_id": pad_id,
    })  # no sampling defaults: engines (SGLang reads this file) take them from each request
    save_file(_init_weights(config, seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # safetensors writes 0600; a checkpoint is meant to be shared
    return out


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/slime-openclaw/models`` (``~/.cache`` when unset)."""
    return cache_dir() / "models"


def default_model_dir(*, seed: int = 0, spec: TinyModelSpec = TinyModelSpec(), cache_root: Path | None = None) -> Path:
    """Where the cached tiny model for ``spec`` and ``seed`` lives (it may not exist yet)."""
    return (cache_root or default_cache_root()) / f"tiny-{spec.cache_key(seed)}"


def build_atomically(final: Path, *, seed: int = 0, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build the checkpoint in a temporary sibling of ``final`` and rename it into place.

    Nobody ever sees a half-written checkpoint: ``final`` existing means it is complete.
    If another builder renamed first, its (identical) result is kept.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        make_tiny_model(staging, seed=seed, spec=spec)
        staging.chmod(0o755)  # mkdtemp made it 0700
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def ensure_default_model(*, seed: int = 0, spec: TinyModelSpec = TinyModelSpec(), cache_root: Path | None = None) -> Path:
    """Return the cached tiny model, building it first (atomically) if missing."""
    final = default_model_dir(seed=seed, spec=spec, cache_root=cache_root)
    return final if final.is_dir() else build_atomically(final, seed=seed, spec=spec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``slime-openclaw tiny-model``."""
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write (must be missing or empty)")
    parser.add_argument("--seed", type=int, default=0, help="weight init seed (same seed -> identical weights)")
    parser.add_argument("--max-position-embeddings", type=int, default=TinyModelSpec.max_position_embeddings,
                        metavar="N", help="context length in tokens (default %(default)s; the weights do not depend on it)")


def run(args: argparse.Namespace) -> int:
    """Write a tiny checkpoint to ``args.out_dir`` and list what was written."""
    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=".write-test.", dir=out.parent))
        probe.rmdir()
        if out.exists():
            out.rmdir()  # empty: replaced by the complete checkpoint below
    except OSError as exc:
        raise ConfigError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    spec = TinyModelSpec(max_position_embeddings=args.max_position_embeddings)
    build_atomically(out, seed=args.seed, spec=spec)
    for path in sorted(out.iterdir()):
        print(f"{path}  {path.stat().st_size} bytes")
    return 0
