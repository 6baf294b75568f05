"""The tiny-model factory: loadable offline, reproducible, atomic cache, CLI behaviour."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (fixtures)

from slime_openclaw import cli
from slime_openclaw.chat.template import CHAT_TEMPLATE, CONTROL_TOKENS, TAG_TOKENS
from slime_openclaw.errors import ConfigError
from slime_openclaw.local.model import tiny_model
from slime_openclaw.local.model.tiny_model import (
    TinyModelSpec,
    default_model_dir,
    ensure_default_model,
    make_tiny_model,
)
from slime_openclaw.local.model.tokenizer_corpus import synthetic_corpus

SMALL = TinyModelSpec(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                      tokenizer_corpus_docs=200)


def test_checkpoint_loads_offline_with_the_spec(tiny_model_path: Path, tiny_tokenizer: Any) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(tiny_model_path, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}
    spec = TinyModelSpec()
    config = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM" and config.model_type == "qwen2"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.intermediate_size, config.max_position_embeddings) == (128, 4, 4, 2, 384, 4096)
    assert config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert config.vocab_size == len(tiny_tokenizer) == spec.vocab_size
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    ids = tiny_tokenizer("Hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], config.vocab_size) and torch.isfinite(logits).all()
    generated = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 4)


def test_tokenizer_special_tokens_and_round_trip(tiny_model_path: Path, tiny_tokenizer: Any) -> None:  # noqa: F811
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = tiny_tokenizer
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert tok.chat_template == CHAT_TEMPLATE
    vocab = tok.get_vocab()
    for token in (*CONTROL_TOKENS, *TAG_TOKENS):
        assert tok.encode(f"a{token}b", add_special_tokens=False)[1] == vocab[token]
    text = "Hi <|im_start|><think>x</think> {\"a\": 12.5}\n\n  def f(x):\n\treturn x  😀 你好 🦀 café"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == text.replace("<|im_start|>", "")
    # The same ids whichever class loads tokenizer.json (transformers 5 rebuilds "qwen2" tokenizers).
    assert Tokenizer.from_file(str(tiny_model_path / "tokenizer.json")).encode(text).ids == ids
    assert PreTrainedTokenizerFast.from_pretrained(tiny_model_path).encode(text, add_special_tokens=False) == ids
    assert len(tok.encode("Can you rewrite my homework so it sounds natural?", add_special_tokens=False)) <= 12


def test_files_written(tiny_model_path: Path) -> None:  # noqa: F811
    names = {p.name for p in tiny_model_path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= names
    generation = json.loads((tiny_model_path / "generation_config.json").read_text())
    config = json.loads((tiny_model_path / "config.json").read_text())
    assert generation["eos_token_id"] == [config["eos_token_id"], config["pad_token_id"]]


def test_cli_build_is_byte_identical_to_the_cache(tiny_model_path: Path, tmp_path: Path,  # noqa: F811
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    out.mkdir()  # an existing empty directory is fine
    assert cli.main(["tiny-model", str(out), "--seed", "0"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging leftovers
    printed = capsys.readouterr().out
    assert "model.safetensors" in printed and "tokenizer.json" in printed
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in tiny_model_path.iterdir())
    for name in written:
        assert (out / name).read_bytes() == (tiny_model_path / name).read_bytes(), name


def test_seed_changes_weights_only(tmp_path: Path) -> None:
    a = make_tiny_model(tmp_path / "a", seed=1, spec=SMALL)
    b = make_tiny_model(tmp_path / "b", seed=1, spec=SMALL)
    c = make_tiny_model(tmp_path / "c", seed=2, spec=SMALL)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert json.loads((a / "config.json").read_text())["vocab_size"] == SMALL.vocab_size


def test_long_context_changes_the_configs_only(tmp_path: Path) -> None:
    """RoPE has no position weights: a longer context is the same weights and tokenizer."""
    short = make_tiny_model(tmp_path / "short", seed=1, spec=SMALL)
    assert cli.main(["tiny-model", str(tmp_path / "cli"), "--max-position-embeddings", "65536"]) == 0
    long = make_tiny_model(tmp_path / "long", seed=1, spec=dataclasses.replace(SMALL, max_position_embeddings=65536))
    for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (short / name).read_bytes() == (long / name).read_bytes(), name
    assert json.loads((long / "config.json").read_text())["max_position_embeddings"] == 65536
    assert json.loads((long / "tokenizer_config.json").read_text())["model_max_length"] == 65536
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["max_position_embeddings"] == 65536
    assert default_model_dir(spec=SMALL) != default_model_dir(spec=dataclasses.replace(SMALL, max_position_embeddings=65536))


def test_cli_rejects_bad_out_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for target in (full, a_file, a_file / "sub"):
        assert cli.main(["tiny-model", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("slime-openclaw tiny-model: ") and err.count("\n") == 1
    assert [p.name for p in full.iterdir()] == ["x"]


def test_default_dir_keys_and_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = default_model_dir()
    assert path.parent == tmp_path / "slime-openclaw" / "models" and path.name.startswith("tiny-")
    assert default_model_dir(seed=1) != path and default_model_dir(spec=SMALL) != path
    monkeypatch.setattr(tiny_model, "FACTORY_VERSION", tiny_model.FACTORY_VERSION + 1)
    assert default_model_dir() != path


def test_ensure_default_model_is_atomic_under_concurrency(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(ensure_default_model(seed=3, spec=SMALL, cache_root=tmp_path))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results)) == 1
    final = results[0]
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # no staging leftovers
    assert (final / "model.safetensors").is_file() and (final / "tokenizer_config.json").is_file()
    mtime = (final / "model.safetensors").stat().st_mtime_ns
    assert ensure_default_model(seed=3, spec=SMALL, cache_root=tmp_path) == final
    assert (final / "model.safetensors").stat().st_mtime_ns == mtime


def test_corpus_is_deterministic_and_varied() -> None:
    first = list(synthetic_corpus(200, seed=1))
    assert first == list(synthetic_corpus(200, seed=1))
    assert first != list(synthetic_corpus(200, seed=2))
    text = "\n".join(first)
    assert "{" in text and "def " in text and any(ord(ch) > 0x3000 for ch in text)
    assert all("<|" not in doc and "<think>" not in doc for doc in first)


@pytest.mark.parametrize("bad", [{"vocab_size": 100}, {"hidden_size": 130}, {"num_key_value_heads": 3},
                                 {"max_position_embeddings": 8}])
def test_spec_validation(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        TinyModelSpec(**bad)
