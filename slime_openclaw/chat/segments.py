"""Exact prompt encoding in pieces: the ids of text between added tokens, cached.

A Hugging Face fast tokenizer first cuts the text at its added tokens (``<|im_start|>``,
``<|im_end|>``, ``<think>``, ...; leftmost-longest match on the raw text when none of them
is ``normalized``/``lstrip``/``rstrip``/``single_word``), then normalizes, pre-tokenizes
and encodes every piece between them on its own. So the ids of a rendered chat are the
concatenation of the ids of its pieces, and a piece seen before (the system prompt and
tools, every earlier message of a conversation) need not be encoded again.

``SegmentEncoder.for_tokenizer`` returns an encoder only for tokenizers where this holds
by construction: fast backend, no position-dependent pre-tokenizer (``Metaspace`` with
``prepend_scheme: first``), added tokens matched on raw text without stripping, no
special-token splitting; otherwise None and the caller encodes the whole text. ``encode``
re-checks the backend state that a tokenizer call may leave behind (truncation, padding,
``encode_special_tokens``) and, when any is set, encodes the whole text through the
tokenizer's own call. The cache is a bounded LRU (entries and characters); encoding runs
outside its lock, so threads share one encoder without waiting on each other's encodes.

This module does not render chat templates (see chat/template.py).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

# Pre-tokenizers whose output for a piece does not depend on where the piece sits in the text.
LONG_PIECE = 4096
"""Pieces at least this long are encoded with the GIL released (``encode_batch``)."""
_POSITION_FREE_PRE_TOKENIZERS = frozenset({
    "BertPreTokenizer", "ByteLevel", "CharDelimiterSplit", "Digits", "Punctuation", "Split",
    "UnicodeScripts", "Whitespace", "WhitespaceSplit", "FixedLength",
})


def _pre_tokenizer_is_position_free(config: Any) -> bool:
    if config is None:
        return True
    kind = config.get("type")
    if kind == "Sequence":
        return all(_pre_tokenizer_is_position_free(p) for p in config.get("pretokenizers", []))
    if kind == "Metaspace":
        return config.get("prepend_scheme", "always") in ("always", "never")
    return kind in _POSITION_FREE_PRE_TOKENIZERS


class SegmentEncoder:
    """Encodes text to the same ids as ``tokenizer(text, add_special_tokens=False)``,
    reusing the cached ids of pieces between added tokens."""

    def __init__(self, tokenizer: Any, added: dict[str, int], *, max_entries: int = 8192,
                 max_chars: int = 8_000_000):
        self._tokenizer = tokenizer
        self._backend = tokenizer.backend_tokenizer
        self._added = added
        names = sorted(added, key=len, reverse=True)  # alternation order = leftmost-longest
        self._splitter = re.compile("(" + "|".join(re.escape(n) for n in names) + ")") if names else None
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()  # renderers may be shared by threads (signal workers)
        self._chars = 0
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.hits = 0
        """Pieces found in the cache (for tests and benchmarks)."""
        self.misses = 0

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, **limits: int) -> SegmentEncoder | None:
        """An encoder for ``tokenizer``, or None when piecewise encoding is not provably exact for it."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not hasattr(backend, "get_added_tokens_decoder"):
            return None
        if getattr(tokenizer, "split_special_tokens", False):
            return None
        try:
            config = json.loads(backend.to_str())
        except (TypeError, ValueError):
            return None
        if not _pre_tokenizer_is_position_free(config.get("pre_tokenizer")):
            return None
        added: dict[str, int] = {}
        for token_id, token in backend.get_added_tokens_decoder().items():
            if token.normalized or token.lstrip or token.rstrip or token.single_word or not token.content:
                return None
            added[str(token.content)] = int(token_id)
        return cls(tokenizer, added, **limits)

    def _plain_state(self) -> bool:
        backend = self._backend
        return backend.truncation is None and backend.padding is None and not backend.encode_special_tokens

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without added special tokens (BOS/EOS templates).

        Safe from several threads: the lock guards the cache only, never an encode, so a
        long text encoding in one thread does not hold up a short one in another; pieces
        of ``LONG_PIECE`` characters or more are encoded through the backend's batch call,
        which releases the GIL (a single ``encode`` holds it for the whole piece)."""
        if not self._plain_state():  # the tokenizer's own call resets that state
            return [int(i) for i in self._tokenizer(text, add_special_tokens=False)["input_ids"]]
        pieces = self._splitter.split(text) if self._splitter is not None else [text]
        added = self._added
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            if i % 2:
                ids.append(added[piece])
            elif piece:
                ids.extend(self._piece_ids(piece))
        with self._lock:
            self._evict()
        return ids

    def _piece_ids(self, piece: str) -> tuple[int, ...]:
        """Ids of one text piece (no added tokens in it), from the cache or encoded and cached."""
        with self._lock:
            cached = self._cache.get(piece)
            if cached is not None:
                self._cache.move_to_end(piece)
                self.hits += 1
                return cached
            self.misses += 1
        if len(piece) < LONG_PIECE:  # one at a time: a batch would wake the tokenizers thread pool
            ids = tuple(self._backend.encode(piece, add_special_tokens=False).ids)
        else:
            ids = tuple(self._backend.encode_batch([piece], add_special_tokens=False)[0].ids)
        if len(piece) <= self.max_chars // 16:  # one huge piece would evict everything else
            with self._lock:
                self._store(piece, ids)
        return ids

    def _store(self, piece: str, ids: tuple[int, ...]) -> None:
        if piece not in self._cache:
            self._chars += len(piece)
        self._cache[piece] = ids

    def _evict(self) -> None:
        while self._cache and (len(self._cache) > self.max_entries or self._chars > self.max_chars):
            piece, _ = self._cache.popitem(last=False)
            self._chars -= len(piece)
