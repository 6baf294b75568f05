"""The chat fast paths give exactly what the slow reference gives, on the real tiny tokenizer.

``SegmentEncoder`` (piecewise, cached encoding) against ``tokenizer(text)`` and
``apply_chat_template``; ``text_decoder`` (the Rust backend directly) against
``tokenizer.decode``. Random texts mix added tokens, partial tags, combining marks and
whitespace runs, the places where piecewise encoding could go wrong.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (fixtures)
from test_chat_template import HISTORIES, REPLIES, WEATHER_TOOL
from tokenizers import AddedToken
from transformers import AutoTokenizer

from slime_openclaw.chat import ChatRenderer
from slime_openclaw.chat.parsing import text_decoder
from slime_openclaw.chat.segments import SegmentEncoder, _pre_tokenizer_is_position_free

ATOMS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<|im_", "<think", "think>", "</", "<", ">", "|", "\n", "\n\n", " ", "  ",
    "\t", "\r\n", "a", "Hello", " world", "'s", "'LL", "123", "4", "é", "e\u0301", "\u0338", "日本語", "🦀",
    "\u200b", "\xa0", '{"a": 1}', ".", "!?", "user", "assistant\n",
)


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 24))) for _ in range(n)]


def test_piecewise_encoding_equals_the_tokenizer(tiny_tokenizer: Any) -> None:  # noqa: F811
    encoder = SegmentEncoder.for_tokenizer(tiny_tokenizer)
    assert encoder is not None
    tiny = SegmentEncoder.for_tokenizer(tiny_tokenizer, max_entries=3, max_chars=40)  # evicts all the time
    assert tiny is not None
    texts = random_texts(1500)
    for text in texts + texts:  # cold, then warm cache
        expected = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert encoder.encode(text) == expected, text
        assert tiny.encode(text) == expected, text
    assert encoder.hits > encoder.misses > 0
    assert len(tiny._cache) <= 3


def test_renderer_ids_equal_apply_chat_template(tiny_tokenizer: Any) -> None:  # noqa: F811
    renderer = ChatRenderer(tiny_tokenizer)
    assert renderer.encoder is not None
    odd = [{"role": "user", "content": text} for text in random_texts(40, seed=1)]
    conversations = [[*h, r] for h in HISTORIES for r in REPLIES] + [[m] for m in odd] + [odd[:7]]
    for messages in conversations:
        for tools in (None, [WEATHER_TOOL]):
            for prompt in (True, False):
                expected = tiny_tokenizer.apply_chat_template(
                    messages, tools=tools, add_generation_prompt=prompt, tokenize=True, return_dict=False)
                assert renderer.render_ids(messages, tools=tools, add_generation_prompt=prompt) == list(expected)


def test_next_turn_encodes_only_its_new_messages(tiny_tokenizer: Any) -> None:  # noqa: F811
    renderer = ChatRenderer(tiny_tokenizer)
    assert renderer.encoder is not None
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First question?"}]
    renderer.render_ids(history, tools=[WEATHER_TOOL])
    history += [{"role": "assistant", "content": "First answer."}, {"role": "user", "content": "Second?"}]
    misses = renderer.encoder.misses
    renderer.render_ids(history, tools=[WEATHER_TOOL])
    # new pieces: the first reply closing the assistant turn, the second user message
    assert renderer.encoder.misses - misses == 2


def test_tokenizer_state_left_by_other_calls_is_honoured(tiny_model_path: Any) -> None:  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    encoder = SegmentEncoder.for_tokenizer(tokenizer)
    assert encoder is not None
    text = "<|im_start|>user\nsome words to truncate here<|im_end|>\n"
    expected = tokenizer(text, add_special_tokens=False)["input_ids"]
    tokenizer.backend_tokenizer.enable_truncation(3)
    assert encoder.encode(text) == expected


def test_unsafe_tokenizers_get_no_piecewise_encoder(tiny_model_path: Any) -> None:  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    tokenizer.add_tokens([AddedToken("<tag>", lstrip=True)])
    assert SegmentEncoder.for_tokenizer(tokenizer) is None
    assert ChatRenderer(tokenizer).encoder is None
    ids = ChatRenderer(tokenizer).render_ids([{"role": "user", "content": "a <tag> b"}])
    assert ids == tokenizer.apply_chat_template([{"role": "user", "content": "a <tag> b"}],
                                                add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ChatRenderer(tokenizer, sanitize_control_tokens=True).encoder is None


@pytest.mark.parametrize("config, free", [
    (None, True),
    ({"type": "ByteLevel", "add_prefix_space": False}, True),
    ({"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel"}]}, True),
    ({"type": "Metaspace", "prepend_scheme": "always"}, True),
    ({"type": "Metaspace", "prepend_scheme": "first"}, False),
    ({"type": "Sequence", "pretokenizers": [{"type": "Metaspace", "prepend_scheme": "first"}]}, False),
    ({"type": "SomethingNew"}, False),
])
def test_position_dependent_pre_tokenizers_are_refused(config: Any, free: bool) -> None:
    assert _pre_tokenizer_is_position_free(config) is free


def test_backend_decoding_equals_the_tokenizer(tiny_tokenizer: Any) -> None:  # noqa: F811
    decode = text_decoder(tiny_tokenizer)
    rng = random.Random(2)
    size = len(tiny_tokenizer)
    for _ in range(500):
        ids = [rng.randrange(size) for _ in range(rng.randint(0, 12))]
        expected = tiny_tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert decode(ids) == expected, ids


def random_conversation(rng: random.Random) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """Messages and tools in every shape the template reads (and some it rejects)."""
    texts = ["", "plain", " spaced ", "multi\nline", "<think>x</think>", "日本 🦀", '{"k": [1, 2]}']

    def content() -> Any:
        kind = rng.randrange(7)
        if kind < 3:
            return rng.choice(texts)
        if kind == 3:
            return None
        if kind == 4:
            return [rng.choice([rng.choice(texts), {"type": "text", "text": rng.choice(texts)}])
                    for _ in range(rng.randrange(3))]
        return rng.choice([{"type": "image_url"}, 7, [{"type": "image"}], ("a", "b")])

    def call() -> Any:
        arguments = rng.choice(['{"city": "Oslo"}', {"city": "Rome", "n": 2.5}, {}, None, 3, ["x"], "not json"])
        fn = {"name": rng.choice(["get_weather", "f", 5]), **({} if rng.random() < 0.2 else {"arguments": arguments})}
        return rng.choice([{"id": "c", "type": "function", "function": fn}, fn, "bad"]) if rng.random() < 0.95 else {}

    messages: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 7)):
        role = rng.choice(["system", "developer", "user", "user", "assistant", "assistant", "tool", "tool", "wizard"])
        message: dict[str, Any] = {"role": role}
        if rng.random() < 0.9:
            message["content"] = content()
        if role == "assistant":
            for key in ("reasoning_content", "thinking", "reasoning"):
                if rng.random() < 0.2:
                    message[key] = rng.choice([*texts, None, 4])
            if rng.random() < 0.5:
                message["tool_calls"] = rng.choice([None, [], [call() for _ in range(rng.randint(1, 3))]])
        if role == "tool":
            message["tool_call_id"] = "c"
        messages.append(message)
    tools = rng.choice([None, [], [WEATHER_TOOL], [WEATHER_TOOL["function"], {"type": "function", "function": None}]])
    return messages, tools


def test_builtin_template_in_python_equals_jinja(tiny_tokenizer: Any) -> None:  # noqa: F811
    from slime_openclaw.chat.native import render_builtin

    rng = random.Random(3)
    handled = 0
    for _ in range(1500):
        messages, tools = random_conversation(rng)
        prompt = rng.random() < 0.5
        native = render_builtin(messages, tools or None, prompt)
        try:
            jinja: str | None = tiny_tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=prompt, tokenize=False)
        except Exception:  # the template rejects it: Python must leave it to Jinja
            jinja = None
        if native is not None:
            handled += 1
            assert native == jinja, (messages, tools)
    assert handled > 300, handled
    for messages in [[*h, r] for h in HISTORIES for r in REPLIES]:  # every well-formed corpus case is handled
        for tools in (None, [WEATHER_TOOL]):
            assert render_builtin(messages, tools, True) == tiny_tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False)
