"""Continuity: whether a new request carries the next state of a served turn, and which one.

The rule follows what real clients send. A request continues a turn when its history holds
that turn's reply (our assistant message, compared as clients replay it) right after a
prefix of that turn's prompt: messages of the old prompt the client no longer sends after
that prefix (a per-request context message, as OpenClaw appends to every request and does not
keep) are tolerated, at most ``MAX_DROPPED`` of them and only user/system messages, and
counted on the next state as dropped. A request whose history is the turn's whole prompt
plus new messages, without our reply, is that turn's next state too, marked
``reply_dropped`` (mini-swe-agent drops a malformed reply and appends a format error).

Everything is compared by digests: ``History`` hashes a message list once into prefix
digests (``chain[k]`` covers ``messages[:k]``), and a served turn keeps only the
digests a continuation can show (``PendingTurn``: no text, no token ids). So finding the
turn a request continues costs one dictionary lookup for the reply rule and a few for the
reply-dropped rule, whatever the number of open sessions (gateway/sessions.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from slime_openclaw.types import Message, NextState, NextStateKind

MAX_DROPPED = 4
"""Trailing prompt messages a continuation may leave out (per-request context injections)."""
MAX_NEW = 4
"""New messages after a whole prompt the reply-dropped rule looks for (format-error feedback)."""
DROPPABLE_ROLES = frozenset({"user", "system", "developer"})
"""Roles of prompt messages a client may stop sending: context, never actions or tool results."""


def canonical_message(message: Message) -> dict:
    """The parts of a message that identify it, insensitive to how clients echo our replies.

    Content ``None`` and ``""`` are equal, tool-call arguments compare as parsed JSON, and
    tool-call ids and reasoning content are ignored (clients often rewrite or drop them).
    """
    canon: dict = {"role": message.get("role"), "content": message.get("content") or ""}
    if len(message) <= 2:  # the common case: role and content only
        return canon
    for key in ("name", "tool_call_id"):
        if message.get(key):
            canon[key] = message[key]
    calls = message.get("tool_calls") or []
    if calls:
        canon["tool_calls"] = [[c["function"]["name"], _canonical_arguments(c["function"]["arguments"])] for c in calls]
    return canon


def _canonical_arguments(arguments: str) -> str:
    try:
        return orjson.dumps(orjson.loads(arguments), option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, ValueError):  # not JSON (or beyond orjson's ranges): compared verbatim
        return arguments


def message_digest(message: Message) -> bytes:
    """A digest of one message (see ``canonical_message``). SHA-256, 128 bits kept."""
    return hashlib.sha256(orjson.dumps(canonical_message(message), option=orjson.OPT_SORT_KEYS)).digest()[:16]


def _chain(prefix: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(prefix + digest).digest()[:16]


def tokens_hash(ids: Sequence[int]) -> str:
    """A fingerprint of a token id sequence (its JSON array: the fastest exact serialization at hand)."""
    try:
        data = orjson.dumps(ids if isinstance(ids, (list, tuple)) else list(ids))
    except TypeError:  # ids of another int type (numpy): the same bytes through Python ints
        data = orjson.dumps([int(i) for i in ids])
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(frozen=True)
class History:
    """A request's messages with their prefix digests, computed once per request."""

    messages: tuple[Message, ...]
    chain: tuple[bytes, ...]
    """``chain[k]`` is the digest of ``messages[:k]`` (``chain[0]`` of the empty list)."""
    last_assistant: int | None
    """Index of the last assistant message, if any."""

    @classmethod
    def of(cls, messages: Sequence[Message]) -> History:
        """Digest ``messages``: one serialization per message into one running SHA-256 (JSON
        objects delimit themselves, so the concatenation is unambiguous)."""
        running = hashlib.sha256()
        chain = [running.digest()[:16]]
        last = None
        for i, message in enumerate(messages):
            running.update(orjson.dumps(canonical_message(message), option=orjson.OPT_SORT_KEYS))
            chain.append(running.copy().digest()[:16])
            if message.get("role") == "assistant":
                last = i
        return cls(tuple(messages), tuple(chain), last)

    def reply_key_at(self, i: int) -> bytes:
        """The key of ``messages[:i]`` followed by the assistant message ``messages[i]``."""
        return _chain(self.chain[i], message_digest(self.messages[i]))

    def reply_key(self) -> bytes | None:
        """What a served turn's reply key must equal for this history to continue it (reply rule)."""
        i = self.last_assistant
        return None if i is None or i + 1 >= len(self.messages) else self.reply_key_at(i)

    def prompt_candidates(self) -> list[bytes]:
        """Digests of the prefixes a whole earlier prompt could be (reply-dropped rule), longest first."""
        last = -1 if self.last_assistant is None else self.last_assistant
        low = max(1, len(self.messages) - MAX_NEW, last + 1)
        return [self.chain[n] for n in range(len(self.messages) - 1, low - 1, -1)]


@dataclass(frozen=True)
class PendingTurn:
    """The last main turn of a session, waiting for its next state. Digests only, no text."""

    turn_key: str
    prompt_count: int
    """Number of messages in the turn's request."""
    prompt_key: bytes
    """Digest of the whole request (the reply-dropped rule)."""
    reply_keys: tuple[tuple[bytes, int], ...]
    """``(digest of prompt[:cut] + [reply], cut)`` for every prefix a continuation may keep."""
    token_count: int
    """``len(prompt_ids) + len(response_ids)``."""
    token_hash: str
    """``tokens_hash(prompt_ids + response_ids)``; empty where no token continuity is checked."""

    @classmethod
    def build(cls, turn_key: str, prompt: History, reply: Message, token_ids: Sequence[int] | None, *,
              token_count: int = 0) -> PendingTurn:
        """Fingerprint a served turn from its request's history, our reply and its token ids.

        ``token_ids`` None: no token fingerprint (``token_hash`` empty), for a gateway that
        never checks token continuity; ``token_count`` is then their number."""
        n = len(prompt.messages)
        reply_digest = message_digest(reply)
        cuts = [n]
        while (len(cuts) <= MAX_DROPPED and cuts[-1] > 1
               and prompt.messages[cuts[-1] - 1].get("role") in DROPPABLE_ROLES):
            cuts.append(cuts[-1] - 1)
        keys = tuple((_chain(prompt.chain[cut], reply_digest), cut) for cut in cuts)
        if token_ids is None:
            return cls(turn_key, n, prompt.chain[n], keys, token_count, "")
        return cls(turn_key, n, prompt.chain[n], keys, len(token_ids), tokens_hash(token_ids))


@dataclass(frozen=True)
class Continuation:
    """How a request continues a pending turn."""

    start: int
    """Index of the first next-state message in the request."""
    dropped: int = 0
    """Trailing prompt messages the client left out."""
    reply_dropped: bool = False


def continuation(pending: PendingTurn, history: History) -> Continuation | None:
    """How ``history`` continues ``pending``, or None when it does not."""
    key = history.reply_key()
    if key is not None:
        for reply_key, cut in pending.reply_keys:
            if reply_key == key:
                assert history.last_assistant is not None
                return Continuation(history.last_assistant + 1, pending.prompt_count - cut)
    n = pending.prompt_count
    if (len(history.messages) > n and (history.last_assistant is None or history.last_assistant < n)
            and history.chain[n] == pending.prompt_key):
        return Continuation(n, reply_dropped=True)
    return None


def next_state_for(previous: PendingTurn, history: History, prompt_ids: Sequence[int],
                   now: float, *, check_tokens: bool = True) -> NextState:
    """The next state of ``previous`` carried by a new request, or a recorded break.

    Continuous when ``continuation`` finds one and, with ``check_tokens``, where the client
    kept the whole prompt and our reply, the new prompt ids start with the previous prompt
    ids followed by the response ids (token level).
    """
    found = continuation(previous, history)
    reason = None
    if found is None:
        reason = _break_reason(previous, history)
    elif (check_tokens and not found.reply_dropped and not found.dropped
          and (len(prompt_ids) < previous.token_count
               or tokens_hash(prompt_ids[: previous.token_count]) != previous.token_hash)):
        reason = "rendered prompt does not start with the previous prompt and response tokens"
    if found is None or reason is not None:
        new = history.messages[previous.prompt_count:]
        return NextState(kind=_kind_of(new), messages=(), continuous=False, break_reason=reason, observed_at=now)
    new = history.messages[found.start:]
    return NextState(kind=_kind_of(new), messages=new, observed_at=now, dropped_messages=found.dropped,
                     reply_dropped=found.reply_dropped)


def _break_reason(previous: PendingTurn, history: History) -> str:
    keys = {key for key, _ in previous.reply_keys}
    if any(history.reply_key_at(i) in keys for i, m in enumerate(history.messages) if m.get("role") == "assistant"):
        return "history contains assistant messages the gateway did not serve"
    return "history does not extend the previous turn (edited, compacted or retried)"


def session_end(now: float) -> NextState:
    """The next state of a turn whose session ended with no further message."""
    return NextState(kind=NextStateKind.SESSION_END, observed_at=now)


def _kind_of(messages: Sequence[Message]) -> NextStateKind:
    roles = {m.get("role") for m in messages}
    return NextStateKind.TOOL if roles and roles <= {"tool"} else NextStateKind.USER
