"""Sessions: which conversation a request belongs to, and what the previous turn's next state is.

Resolution order: the ``X-Session-Id`` header, else ``metadata.session_id`` or ``user`` in
the body, else the request's history itself. For history matching, every session keeps a
fingerprint (hash) of its last served turn's messages plus our reply; a new request is
matched by hashing its messages up to and including its last assistant message, one
dictionary lookup whatever the number of open sessions. A request that matches nothing
starts a new session, so a stock client that sends no id still gets its turns grouped.

Memory is bounded: a session keeps only hashes and counts of its last turn (never the
messages or token ids), at most ``max_sessions`` sessions are open (the least recently
active is ended first), and a session idle longer than ``ttl`` seconds ends. An ended
session hands back its last turn so the caller records a SESSION_END next state.

This module decides continuity; it does not render, generate or write the journal.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from slime_openclaw.types import Message, NextState, NextStateKind, TurnType


def canonical_message(message: Message) -> dict:
    """The parts of a message that identify it, insensitive to how clients echo our replies.

    Content ``None`` and ``""`` are equal, tool-call arguments compare as parsed JSON, and
    tool-call ids and reasoning content are ignored (clients often rewrite or drop them).
    """
    canon: dict = {"role": message.get("role"), "content": message.get("content") or ""}
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


def _fingerprint(data: bytes) -> str:
    # SHA-256 (hardware-accelerated on current CPUs, faster than BLAKE2 here), 128 bits kept.
    return hashlib.sha256(data).hexdigest()[:32]


def messages_hash(messages: Sequence[Message]) -> str:
    """A fingerprint of a message list (see ``canonical_message``).

    Serialized with orjson (sorted keys), several times faster than ``json.dumps`` on the
    per-request path; fingerprints live in memory only, so their exact bytes are free.
    """
    return _fingerprint(orjson.dumps([canonical_message(m) for m in messages], option=orjson.OPT_SORT_KEYS))


def tokens_hash(ids: Sequence[int]) -> str:
    """A fingerprint of a token id sequence (its JSON array: the fastest exact serialization at hand)."""
    try:
        data = orjson.dumps(ids if isinstance(ids, (list, tuple)) else list(ids))
    except TypeError:  # ids of another int type (numpy): the same bytes through Python ints
        data = orjson.dumps([int(i) for i in ids])
    return _fingerprint(data)


@dataclass(frozen=True)
class PendingTurn:
    """The last main turn of a session, waiting for its next state. Hashes only, no text."""

    turn_key: str
    message_count: int
    """Number of messages in the request plus our reply."""
    history_hash: str
    """``messages_hash(request messages + [reply])``."""
    token_count: int
    """``len(prompt_ids) + len(response_ids)``."""
    token_hash: str
    """``tokens_hash(prompt_ids + response_ids)``."""

    @classmethod
    def build(cls, turn_key: str, history: Sequence[Message], token_ids: Sequence[int]) -> PendingTurn:
        """Fingerprint a served turn: ``history`` is its messages plus our reply."""
        return cls(turn_key, len(history), messages_hash(history), len(token_ids), tokens_hash(token_ids))


@dataclass(frozen=True)
class SessionTail:
    """Where the last session of a client key stopped: enough to resume it or start its next epoch."""

    session_id: str
    epoch: int
    next_index: int
    """The first turn index not taken yet in that session."""
    pending: PendingTurn | None
    """Its last main turn (to check whether a new request continues it)."""
    observed: bool
    """That turn already has a next state (its session end): resuming attaches none."""


TailLookup = Callable[[str], "SessionTail | None"]
"""Finds a client key's last recorded session (the journal, after a restart), or None."""


@dataclass(frozen=True)
class Assignment:
    """Where a request goes: its session, its turn index and type, and the turn it follows."""

    session_id: str
    turn_index: int
    turn_type: TurnType
    previous: PendingTurn | None = None
    """The session's last main turn, whose next state this request carries (main turns only)."""
    matched_by: str = "new"
    """``header``, ``body``, ``history`` or ``new``."""
    client_key: str = ""
    epoch: int = 0
    reason: str = ""
    """Why the request went to this session (ids and rules only, never text): for DEBUG logs."""
    created: bool = False
    """This request opened the session."""


@dataclass
class _Session:
    session_id: str
    last_seen: float
    next_index: int = 0
    pending: PendingTurn | None = None
    client_key: str = ""
    epoch: int = 0


@dataclass
class SessionTable:
    """Open sessions, bounded in number and idle time. Not thread-safe: one event loop owns it.

    A session keyed by a client key is found by that key while open. Once it ended, the key's
    next request resumes it where its history continues the last turn, and otherwise starts the
    key's next epoch (a fresh session id): turn keys never repeat. Where each key stopped is
    remembered for the last ``max_sessions`` ended keys, and looked up with ``tail_lookup``
    (the journal) beyond that and after a restart.
    """

    ttl: float = 1800.0
    """Seconds of inactivity after which a session ends."""
    max_sessions: int = 10_000
    """Open sessions kept at most; the least recently active ends first."""
    tail_lookup: TailLookup | None = None
    _sessions: OrderedDict[str, _Session] = field(default_factory=OrderedDict)
    _by_history: dict[str, str] = field(default_factory=dict)
    _by_key: dict[str, str] = field(default_factory=dict)
    _ended: OrderedDict[str, SessionTail] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._sessions)

    def assign(self, messages: Sequence[Message], client_key: str | None, turn_type: TurnType | None,
               now: float, *, matched_by: str = "header") -> tuple[Assignment, list[PendingTurn]]:
        """Resolve a request to a session and reserve its turn index.

        Returns the assignment and the pending turns of sessions that ended to make room.
        A main turn takes the session's pending turn (the caller attaches its next state).
        """
        ended: list[PendingTurn] = []
        created = False
        if client_key:
            session, reason = self._keyed(client_key)
            how = matched_by
            if session is None:
                session, reason = self._open_keyed(client_key, messages, now)
                created = True
        else:
            session_id = self._by_history.get(history_key(messages) or "")
            session = self._sessions.get(session_id) if session_id else None
            how, reason = "history", "history continues the session's last turn"
            if session is None:
                session, how, reason = self._add(_Session(f"sess-{uuid.uuid4().hex[:20]}", now)), "new", "no match"
                created = True
        if created:
            ended = self._evict_over_capacity()
        self._touch(session, now)
        kind = turn_type or TurnType.MAIN
        previous = None
        if kind is TurnType.MAIN and session.pending is not None:
            previous = self._take_pending(session)
        index = session.next_index
        session.next_index += 1
        return Assignment(session.session_id, index, kind, previous, how, session.client_key, session.epoch,
                          reason, created), ended

    def _keyed(self, client_key: str) -> tuple[_Session | None, str]:
        session_id = self._by_key.get(client_key)
        return (self._sessions.get(session_id) if session_id else None), "open session of the client key"

    def _open_keyed(self, client_key: str, messages: Sequence[Message], now: float) -> tuple[_Session, str]:
        """Resume the key's ended session where the history continues it, else open its next epoch."""
        tail = self._ended.pop(client_key, None)
        if tail is None and self.tail_lookup is not None:
            tail = self.tail_lookup(client_key)
        if tail is None:
            return self._add(_Session(client_key, now, client_key=client_key)), "first session of the client key"
        if tail.pending is not None and next_state_for(tail.pending, messages, (), now, check_tokens=False).continuous:
            session = _Session(tail.session_id, now, tail.next_index, None if tail.observed else tail.pending,
                               client_key, tail.epoch)
            if session.pending is not None:
                self._by_history[session.pending.history_hash] = session.session_id
            return self._add(session), f"resumes ended session {tail.session_id} at turn {tail.next_index}"
        epoch = tail.epoch + 1
        session = _Session(f"{client_key}#{epoch}", now, client_key=client_key, epoch=epoch)
        return self._add(session), f"new epoch {epoch}: history does not continue ended session {tail.session_id}"

    def _add(self, session: _Session) -> _Session:
        self._sessions[session.session_id] = session
        if session.client_key:
            self._by_key[session.client_key] = session.session_id
        return session

    def complete(self, session_id: str, pending: PendingTurn, now: float) -> PendingTurn | None:
        """A main turn was served: it becomes the session's pending turn.

        Returns a pending turn displaced by it (a concurrent turn of the same session that
        will never get a next state), or None.
        """
        session = self._sessions.get(session_id)
        if session is None:  # ended while the turn was generating
            return pending
        displaced = self._take_pending(session) if session.pending is not None else None
        session.pending = pending
        self._by_history[pending.history_hash] = session_id
        self._touch(session, now)
        return displaced

    def end(self, session_id: str) -> PendingTurn | None:
        """End a session now (``X-Session-Done``); returns its pending turn, if any."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return None
        pending = self._take_pending(session) if session.pending is not None else None
        if session.client_key:
            self._retire(session, pending)
        return pending

    def _retire(self, session: _Session, last: PendingTurn | None) -> None:
        """Remember where a keyed session stopped (bounded: the oldest memory goes first)."""
        if self._by_key.get(session.client_key) == session.session_id:
            del self._by_key[session.client_key]
        self._ended[session.client_key] = SessionTail(session.session_id, session.epoch, session.next_index,
                                                      last, observed=True)
        self._ended.move_to_end(session.client_key)
        while len(self._ended) > self.max_sessions:
            self._ended.popitem(last=False)

    def expire(self, now: float) -> list[PendingTurn]:
        """End every session idle for longer than ``ttl``; returns their pending turns."""
        ended: list[PendingTurn] = []
        while self._sessions:
            session = next(iter(self._sessions.values()))
            if now - session.last_seen <= self.ttl:
                break
            pending = self.end(session.session_id)
            if pending is not None:
                ended.append(pending)
        return ended

    def _evict_over_capacity(self) -> list[PendingTurn]:
        ended = []
        while len(self._sessions) > self.max_sessions:
            oldest = next(iter(self._sessions))
            pending = self.end(oldest)
            if pending is not None:
                ended.append(pending)
        return ended

    def _take_pending(self, session: _Session) -> PendingTurn:
        pending = session.pending
        assert pending is not None
        session.pending = None
        if self._by_history.get(pending.history_hash) == session.session_id:
            del self._by_history[pending.history_hash]
        return pending

    def _touch(self, session: _Session, now: float) -> None:
        session.last_seen = now
        self._sessions.move_to_end(session.session_id)


def history_key(messages: Sequence[Message]) -> str | None:
    """Fingerprint of the messages up to and including the last assistant message, if any."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            return messages_hash(messages[: i + 1])
    return None


def next_state_for(previous: PendingTurn, messages: Sequence[Message], prompt_ids: Sequence[int],
                   now: float, *, check_tokens: bool = True) -> NextState:
    """The next state of ``previous`` carried by a new request, or a recorded break.

    Continuous when the new messages start with the previous request's messages and our
    reply (message level) and, with ``check_tokens``, the new prompt ids start with the
    previous prompt ids followed by the response ids (token level).
    """
    count = previous.message_count
    new = tuple(messages[count:])
    kind = _kind_of(new)
    reason = None
    if len(messages) <= count or messages_hash(messages[:count]) != previous.history_hash:
        reason = "history does not extend the previous turn (edited, compacted or retried)"
    elif any(m.get("role") == "assistant" for m in new):
        reason = "history contains assistant messages the gateway did not serve"
    elif check_tokens and (len(prompt_ids) < previous.token_count
                           or tokens_hash(prompt_ids[: previous.token_count]) != previous.token_hash):
        reason = "rendered prompt does not start with the previous prompt and response tokens"
    if reason is not None:
        return NextState(kind=kind, messages=(), continuous=False, break_reason=reason, observed_at=now)
    return NextState(kind=kind, messages=new, observed_at=now)


def session_end(now: float) -> NextState:
    """The next state of a turn whose session ended with no further message."""
    return NextState(kind=NextStateKind.SESSION_END, observed_at=now)


def _kind_of(messages: Sequence[Message]) -> NextStateKind:
    roles = {m.get("role") for m in messages}
    return NextStateKind.TOOL if roles and roles <= {"tool"} else NextStateKind.USER
