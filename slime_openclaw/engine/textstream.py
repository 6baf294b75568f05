"""Incremental detokenization of one response and stop-string detection.

Text is only a convenience of the wire format (the product trains on token ids); it is
decoded with the offset-window method (decode a few tokens of left context, emit what
grew, hold back an incomplete UTF-8 sequence) so that each new token costs a short decode.
This module does not tokenize and never changes the token ids.
"""

from __future__ import annotations

from typing import Any

_INCOMPLETE = "\ufffd"


class TextStream:
    """Turns a growing list of output token ids into text deltas and finds stop strings."""

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool, stop: tuple[str, ...] = ()):
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._stop = stop
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""
        """Concatenation of every delta returned so far."""

    def _decode(self, ids: list[int]) -> str:
        if self._tokenizer is None or not ids:
            return ""
        return str(self._tokenizer.decode(ids, skip_special_tokens=self._skip))

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (may be empty)."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) <= len(prefix) or full.endswith(_INCOMPLETE):
            return ""
        delta = full[len(prefix) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        self.text += delta
        return delta

    def matched_stop(self, delta: str) -> str | None:
        """The first stop string that ends inside ``delta`` (just appended to ``text``), if any."""
        if not delta:
            return None
        for stop in self._stop:
            start = max(0, len(self.text) - len(delta) - len(stop) + 1)
            if stop and self.text.find(stop, start) != -1:
                return stop
        return None

    def final_text(self, *, trim_stop: str | None = None, drop_last_token: bool = False) -> str:
        """The whole response decoded at once, trimmed the way SGLang trims a matched stop.

        ``trim_stop``: cut the text at the first occurrence of this stop string.
        ``drop_last_token``: leave out the last token (a matched stop token).
        """
        ids = self._ids[:-1] if drop_last_token else self._ids
        text = self._decode(ids)
        if trim_stop:
            index = text.find(trim_stop)
            if index != -1:
                text = text[:index]
        return text
