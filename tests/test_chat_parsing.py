"""ResponseParser on the real tiny tokenizer: streamed deltas add up to the message, whatever the chunking."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from helpers_model import tiny_model_path, tiny_tokenizer  # noqa: F401  (fixtures)

from slime_openclaw.chat import ChatRenderer
from slime_openclaw.chat.parsing import (
    IncrementalDecoder,
    ParsedDelta,
    ParsedMessage,
    ResponseParser,
    parse_tool_call_body,
    prompt_opens_reasoning,
    token_texts,
)
from slime_openclaw.types import FinishReason

CHUNKINGS = (1, 2, 3, 5, 1000)


def encode(tokenizer: Any, *pieces: str) -> list[int]:
    """Ids of the pieces encoded one by one (a piece never merges with its neighbours)."""
    ids: list[int] = []
    for piece in pieces:
        ids.extend(tokenizer(piece, add_special_tokens=False)["input_ids"])
    return ids


def parse_all(tokenizer: Any, ids: list[int], reason: FinishReason = FinishReason.STOP, **kwargs: Any) -> ParsedMessage:
    """Parse with every chunking; check the deltas add up and every chunking agrees; return the message."""
    results = []
    texts = token_texts(tokenizer)
    assert texts is not None  # the tiny tokenizer decodes byte-level: both decoding paths are checked
    for chunk, shortcut in [(c, s) for c in CHUNKINGS for s in (None, texts)]:
        parser = ResponseParser(tokenizer, call_id_seed="turn-1", texts=shortcut, **kwargs)
        deltas: list[ParsedDelta] = []
        for start in range(0, len(ids), chunk):
            deltas.extend(parser.feed(ids[start:start + chunk]))
        deltas.extend(parser.close())
        message = parser.finish(reason)
        for delta in deltas:
            assert [delta.content, delta.reasoning_content, delta.tool_call].count(None) == 2
        assert "".join(d.content for d in deltas if d.content is not None) == (message.content or "")
        reasoning = [d.reasoning_content for d in deltas if d.reasoning_content is not None]
        assert "".join(reasoning) == (message.reasoning_content or "")
        calls = [d.tool_call for d in deltas if d.tool_call is not None]
        assert [c.index for c in calls] == list(range(len(calls)))
        assert [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls] == message.tool_calls
        if "\ufffd" not in (message.content or "") + (message.reasoning_content or ""):
            assert not any("\ufffd" in (d.content or d.reasoning_content or "") for d in deltas)
        results.append(message)
    assert all(r == results[0] for r in results)
    return results[0]


def test_plain_text(tiny_tokenizer: Any) -> None:  # noqa: F811
    ids = encode(tiny_tokenizer, "Hello there, the answer is 42.", "<|im_end|>")
    message = parse_all(tiny_tokenizer, ids)
    assert message == ParsedMessage(content="Hello there, the answer is 42.", reasoning_content=None, finish_reason="stop")
    assert message.to_openai() == {"role": "assistant", "content": "Hello there, the answer is 42."}


def test_reasoning_then_text(tiny_tokenizer: Any) -> None:  # noqa: F811
    ids = encode(tiny_tokenizer, "<think>\nThe user wants a short reply.\n</think>\n\nShort reply.<|im_end|>")
    message = parse_all(tiny_tokenizer, ids)
    assert message.reasoning_content == "The user wants a short reply."
    assert message.content == "Short reply."
    assert message.to_openai()["reasoning_content"] == "The user wants a short reply."


def test_several_tool_calls(tiny_tokenizer: Any) -> None:  # noqa: F811
    text = (
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}\n</tool_call>\n"
        "<tool_call>{\"name\": \"list_files\"}</tool_call><|im_end|>"
    )
    message = parse_all(tiny_tokenizer, encode(tiny_tokenizer, text))
    assert message.content == "Let me check."
    assert message.finish_reason == "tool_calls"
    functions = [c["function"] for c in message.tool_calls]
    assert functions == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"name": "list_files", "arguments": "{}"},
    ]
    ids = [c["id"] for c in message.tool_calls]
    assert len(set(ids)) == 3 and all(i.startswith("call_") for i in ids)
    again = ResponseParser(tiny_tokenizer, call_id_seed="turn-1")
    again.feed(encode(tiny_tokenizer, text))
    assert [c["id"] for c in again.finish().tool_calls] == ids
    other = ResponseParser(tiny_tokenizer, call_id_seed="turn-2")
    other.feed(encode(tiny_tokenizer, text))
    assert [c["id"] for c in other.finish().tool_calls] != ids


def test_tool_calls_only_have_null_content(tiny_tokenizer: Any) -> None:  # noqa: F811
    ids = encode(tiny_tokenizer, '<tool_call>\n{"name": "f", "arguments": {"x": [1, "é"]}}\n</tool_call><|im_end|>')
    message = parse_all(tiny_tokenizer, ids)
    assert message.content is None
    assert message.to_openai()["content"] is None
    assert json.loads(message.tool_calls[0]["function"]["arguments"]) == {"x": [1, "é"]}


@pytest.mark.parametrize("body", [
    "not json at all", '{"name": 3}', '["get_weather"]', '{"arguments": {}}', '{"name": "f", "arguments": [1]}',
    '{"name": "f", "arguments": "not json"}', '{"name": "f", "arguments": {"x": 1}',
])
def test_malformed_tool_call_stays_content(tiny_tokenizer: Any, body: str) -> None:  # noqa: F811
    text = f"Trying.\n<tool_call>\n{body}\n</tool_call>"
    message = parse_all(tiny_tokenizer, encode(tiny_tokenizer, text, "<|im_end|>"))
    assert message.content == text
    assert message.tool_calls == []
    assert message.finish_reason == "stop"
    assert parse_tool_call_body(body) is None


def test_unicode_split_across_byte_tokens(tiny_tokenizer: Any) -> None:  # noqa: F811
    text = "Crab 🦀, fish 鱼, sparkle ✨ and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢."
    ids = encode(tiny_tokenizer, text)
    assert len(ids) > len(text.split()) * 2  # the rare characters really are split into byte tokens
    singles = [tiny_tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in s for s in singles)
    assert parse_all(tiny_tokenizer, ids).content == text
    reasoning = parse_all(tiny_tokenizer, encode(tiny_tokenizer, "<think>", text, "</think>", "ok"))
    assert reasoning.reasoning_content == text and reasoning.content == "ok"


def test_tags_spelled_by_ordinary_tokens(tiny_tokenizer: Any) -> None:  # noqa: F811
    ids = encode(tiny_tokenizer, "<th", "ink>", "hmm", "</", "think", ">", "Hi ", "<tool", "_call>",
                 '{"name": "f", "arguments": {}}', "</tool_", "call>")
    vocab = tiny_tokenizer.get_vocab()
    assert not {vocab["<think>"], vocab["<tool_call>"], vocab["</tool_call>"]} & set(ids)
    message = parse_all(tiny_tokenizer, ids)
    assert (message.reasoning_content, message.content) == ("hmm", "Hi")
    assert message.tool_calls[0]["function"]["name"] == "f"


def test_partial_tag_at_the_end_is_content(tiny_tokenizer: Any) -> None:  # noqa: F811
    message = parse_all(tiny_tokenizer, encode(tiny_tokenizer, "a < b and <tool"))
    assert message.content == "a < b and <tool"


def test_stop_tokens_end_the_response(tiny_tokenizer: Any) -> None:  # noqa: F811
    for stop in ("<|im_end|>", "<|endoftext|>"):
        ids = encode(tiny_tokenizer, "Done.", stop, "<|im_start|>user\nignored")
        parser = ResponseParser(tiny_tokenizer)
        deltas = parser.feed(ids)
        assert parser.stopped
        assert parser.feed(encode(tiny_tokenizer, "more")) == []
        assert deltas + parser.close() == [ParsedDelta(content="Done.")]
        assert parser.finish().content == "Done."


def test_truncated_outputs(tiny_tokenizer: Any) -> None:  # noqa: F811
    cut_call = parse_all(tiny_tokenizer, encode(tiny_tokenizer, 'Ok <tool_call>\n{"name": "f", "argu'),
                         reason=FinishReason.LENGTH)
    assert cut_call.content == 'Ok <tool_call>\n{"name": "f", "argu'
    assert cut_call.finish_reason == "length" and cut_call.tool_calls == []
    cut_think = parse_all(tiny_tokenizer, encode(tiny_tokenizer, "<think>\nstill thinking "), reason=FinishReason.LENGTH)
    assert (cut_think.reasoning_content, cut_think.content) == ("still thinking", "")
    complete_json = parse_all(tiny_tokenizer, encode(tiny_tokenizer, '<tool_call>\n{"name": "f", "arguments": {}}\n'))
    assert complete_json.tool_calls[0]["function"] == {"name": "f", "arguments": "{}"}


def test_start_in_reasoning_and_empty_reasoning(tiny_tokenizer: Any) -> None:  # noqa: F811
    message = parse_all(tiny_tokenizer, encode(tiny_tokenizer, "plan\n</think>\n\nanswer"), start_in_reasoning=True)
    assert (message.reasoning_content, message.content) == ("plan", "answer")
    empty = parse_all(tiny_tokenizer, encode(tiny_tokenizer, "<think>\n\n</think>\n\nanswer"))
    assert (empty.reasoning_content, empty.content) == ("", "answer")
    late = parse_all(tiny_tokenizer, encode(tiny_tokenizer, "answer <think>x</think>"))
    assert (late.reasoning_content, late.content) == (None, "answer <think>x</think>")


def test_delta_wire_shapes(tiny_tokenizer: Any) -> None:  # noqa: F811
    parser = ResponseParser(tiny_tokenizer, call_id_seed="s")
    deltas = parser.feed(encode(tiny_tokenizer, '<think>r</think>c<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'))
    deltas += parser.close()
    assert [d.to_openai() for d in deltas] == [
        {"reasoning_content": "r"},
        {"content": "c"},
        {"tool_calls": [{"index": 0, "id": parser.finish().tool_calls[0]["id"], "type": "function",
                         "function": {"name": "f", "arguments": '{"a": 1}'}}]},
    ]
    with pytest.raises(RuntimeError):
        parser.feed([1])


def test_random_token_soup_is_consistent(tiny_tokenizer: Any) -> None:  # noqa: F811
    vocab = tiny_tokenizer.get_vocab()
    stops = {vocab["<|im_end|>"], vocab["<|endoftext|>"]}
    markup = [vocab[t] for t in ("<think>", "</think>", "<tool_call>", "</tool_call>")]
    pool = [i for i in range(len(tiny_tokenizer)) if i not in stops]
    rng = random.Random(7)
    for _ in range(30):
        ids = [rng.choice(markup) if rng.random() < 0.1 else rng.choice(pool) for _ in range(rng.randint(0, 60))]
        parse_all(tiny_tokenizer, ids)


REPLIES: list[dict[str, Any]] = [
    {"role": "assistant", "content": "Plain answer, 42."},
    {"role": "assistant", "content": "Answer 🦀 鱼.", "reasoning_content": "Some thought."},
    {"role": "assistant", "content": None, "reasoning_content": "Need data.", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "b", "type": "function", "function": {"name": "lookup_user", "arguments": '{"user_id": 7, "verbose": true}'}}]},
    {"role": "assistant", "content": "Checking now.", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "/tmp/a b.txt"}'}}]},
]


@pytest.mark.parametrize("reply", REPLIES)
def test_parse_inverts_the_template(tiny_tokenizer: Any, reply: dict[str, Any]) -> None:  # noqa: F811
    """The response ids the template gives a message parse back to that message, and re-render to the same ids."""
    renderer = ChatRenderer(tiny_tokenizer)
    history = [{"role": "user", "content": "Help"}]
    prompt = renderer.render_ids(history)
    full = renderer.render_ids([*history, reply], add_generation_prompt=False)
    response_ids = full[len(prompt):]
    message = parse_all(tiny_tokenizer, response_ids).to_openai()
    assert message["content"] == reply["content"]
    assert message.get("reasoning_content") == reply.get("reasoning_content")
    assert [c["function"] for c in message.get("tool_calls", [])] == [c["function"] for c in reply.get("tool_calls", [])]
    assert renderer.render_ids([*history, message], add_generation_prompt=False) == full


class ByteTokenizer:
    """A stand-in whose ids are arbitrary byte strings: tokens may straddle character boundaries."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def decode(self, ids: list[int], **_: Any) -> str:
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


def test_decoder_emits_complete_characters_as_soon_as_possible() -> None:
    decoder = IncrementalDecoder(ByteTokenizer([b"a\xe4", b"\xbd\xa0b\xe5", b"\xa5\xbd", b"\xff", b"!"]))
    assert [decoder.feed([i]) for i in range(5)] + [decoder.flush()] == ["a", "\u4f60b", "\u597d", "", "\ufffd!", ""]
    text = "na\u00efve \u4f60\u597d\u4e16\u754c \U0001f980\U0001f389 ok"
    data = text.encode()
    rng = random.Random(0)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), k=rng.randint(1, len(data) - 1)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        decoder = IncrementalDecoder(ByteTokenizer(pieces))
        out = [decoder.feed([i]) for i in range(len(pieces))] + [decoder.flush()]
        assert "".join(out) == text and not any("\ufffd" in piece for piece in out)
    cut = IncrementalDecoder(ByteTokenizer([b"ok\xf0\x9f"]))
    assert (cut.feed([0]), cut.flush()) == ("ok", "\ufffd")


def test_decoder_shortcut_matches_window_decoding(tiny_tokenizer: Any) -> None:  # noqa: F811
    """Joined token texts give the very pieces of the window decoding, on random ids: byte
    tokens that split characters, added tokens, invalid bytes, any chunking."""
    texts = token_texts(tiny_tokenizer)
    assert texts is not None
    vocab = tiny_tokenizer.backend_tokenizer.get_vocab_size(with_added_tokens=True)
    partial = [i for i in range(vocab) if texts(i) is None]
    assert partial  # byte tokens that are part of a character exist, so the fallback is exercised
    base = encode(tiny_tokenizer, "na\u00efve \u4f60\u597d\u4e16\u754c \U0001f980 ok <think> x")
    rng = random.Random(7)
    for trial in range(300):
        pool = [rng.randrange(vocab) for _ in range(8)] + partial[:40] + base
        ids = [rng.choice(pool) for _ in range(rng.randint(0, 40))] if trial % 3 else base
        slow, fast = IncrementalDecoder(tiny_tokenizer), IncrementalDecoder(tiny_tokenizer, texts=texts)
        start = 0
        while start < len(ids):
            step = rng.randint(0, 4)
            assert fast.feed(ids[start:start + step]) == slow.feed(ids[start:start + step]), (ids, start)
            start += step
        assert fast.flush() == slow.flush()


def test_token_texts_only_for_concatenating_decoders(tiny_tokenizer: Any) -> None:  # noqa: F811
    assert token_texts(ByteTokenizer([b"a"])) is None

    class Custom(type(tiny_tokenizer)):  # type: ignore[misc]
        def decode(self, *args: Any, **kwargs: Any) -> Any:
            return super().decode(*args, **kwargs)

    custom = Custom.__new__(Custom)
    custom.__dict__.update(tiny_tokenizer.__dict__)
    assert token_texts(custom) is None


def test_prompt_opens_reasoning(tiny_tokenizer: Any) -> None:  # noqa: F811
    prompt = ChatRenderer(tiny_tokenizer).render_ids([{"role": "user", "content": "Hi"}])
    assert not prompt_opens_reasoning(tiny_tokenizer, prompt)
    assert prompt_opens_reasoning(tiny_tokenizer, prompt + encode(tiny_tokenizer, "<think>\n"))
