"""Sessions: which conversation a request belongs to, and which served turn it follows.

Resolution order: a client session key (the ``X-Session-Id`` header, else ``metadata.session_id``,
``prompt_cache_key`` or ``user`` in the body; gateway/recording.py reads them), else the
request's history itself. History matching uses the continuity rule of gateway/matching.py:
every session's pending turn is indexed by its reply keys (prompt prefix + our reply) and
its prompt key (whole prompt, for replies the client dropped), so a request is matched with
one lookup for its last assistant message and a few for a dropped reply, whatever the
number of open sessions. A request that matches nothing starts a new session, so a stock
client that sends no key still gets its turns grouped.

A client key names one session at a time. Once that session ended, the key's next request
resumes it (at its next turn index) where the history continues its last turn, and
otherwise starts the key's next epoch, session ``KEY#n`` (``epoch_session_id``): a turn key
is never taken twice.
Where each key stopped is remembered for the last ``max_sessions`` ended keys, and asked of
``tail_lookup`` (the journal) beyond that and after a restart.

Memory is bounded: a session keeps only digests and counts of its last turn (never the
messages or token ids), at most ``max_sessions`` sessions are open (the least recently
active is ended first), and a session idle longer than ``ttl`` seconds ends. An ended
session hands back its last turn so the caller records a SESSION_END next state.

This module decides continuity; it does not render, generate or write the journal.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from slime_openclaw.gateway.matching import History, PendingTurn, continuation, session_end
from slime_openclaw.types import NextState, TurnType

__all__ = ["Assignment", "PendingTurn", "SessionTable", "SessionTail", "epoch_session_id", "session_end"]


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
    history: History | None = None
    """The request's message digests (set by the caller; the served turn is fingerprinted from them)."""
    next_state: NextState | None = None
    """The previous turn's next state, attached once this turn is recorded (set by the caller)."""


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
    """Open sessions, bounded in number and idle time. Not thread-safe: one event loop owns it."""

    ttl: float = 1800.0
    """Seconds of inactivity after which a session ends."""
    max_sessions: int = 10_000
    """Open sessions kept at most; the least recently active ends first."""
    tail_lookup: TailLookup | None = None
    _sessions: OrderedDict[str, _Session] = field(default_factory=OrderedDict)
    _by_reply: dict[bytes, str] = field(default_factory=dict)
    _by_prompt: dict[bytes, str | int] = field(default_factory=dict)
    """Prompt key -> session id, or how many sessions share that prompt (ambiguous: never matched)."""
    _by_key: dict[str, str] = field(default_factory=dict)
    _ended: OrderedDict[str, SessionTail] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._sessions)

    def assign(self, history: History, client_key: str | None, turn_type: TurnType | None,
               now: float, *, matched_by: str = "header") -> tuple[Assignment, list[PendingTurn]]:
        """Resolve a request to a session and reserve its turn index.

        Returns the assignment and the pending turns of sessions that ended to make room.
        A main turn takes the session's pending turn (the caller attaches its next state).
        """
        created = False
        if client_key:
            how = matched_by
            session, reason = self._open_of_key(client_key), "open session of the client key"
            if session is None:
                session, reason = self._open_keyed(client_key, history, now)
                created = True
        else:
            session, reason = self._match(history)
            how = "history"
            if session is None:
                session = self._add(_Session(f"sess-{uuid.uuid4().hex[:20]}", now))
                how, reason, created = "new", "history continues no open session", True
        ended = self._evict_over_capacity() if created else []
        self._touch(session, now)
        kind = turn_type or TurnType.MAIN
        previous = self._take_pending(session) if kind is TurnType.MAIN and session.pending is not None else None
        index = session.next_index
        session.next_index += 1
        return Assignment(session.session_id, index, kind, previous, how, session.client_key, session.epoch,
                          reason, created), ended

    def _open_of_key(self, client_key: str) -> _Session | None:
        session_id = self._by_key.get(client_key)
        return self._sessions.get(session_id) if session_id else None

    def _match(self, history: History) -> tuple[_Session | None, str]:
        """The open session whose pending turn ``history`` continues: one lookup, a few for a dropped reply."""
        key = history.reply_key()
        session = self._sessions.get(self._by_reply.get(key, "")) if key is not None else None
        if session is not None:
            return session, "history holds the reply of the session's last turn"
        for prompt_key in history.prompt_candidates():
            found = self._by_prompt.get(prompt_key)
            if isinstance(found, str) and found in self._sessions:
                return self._sessions[found], "history extends the last turn's prompt without its reply"
        return None, ""

    def _open_keyed(self, client_key: str, history: History, now: float) -> tuple[_Session, str]:
        """Resume the key's ended session where the history continues it, else open its next epoch."""
        tail = self._ended.pop(client_key, None)
        if tail is None and self.tail_lookup is not None:
            tail = self.tail_lookup(client_key)
        if tail is None:
            return self._new_epoch(client_key, 0, now), "first session of the client key"
        if tail.pending is not None and continuation(tail.pending, history) is not None:
            session = self._add(_Session(tail.session_id, now, tail.next_index, client_key=client_key,
                                         epoch=tail.epoch))
            if not tail.observed:
                self._set_pending(session, tail.pending)
            return session, f"resumes ended session {tail.session_id} at turn {tail.next_index}"
        session = self._new_epoch(client_key, tail.epoch + 1, now)
        return session, f"new epoch {session.epoch}: history does not continue ended session {tail.session_id}"

    def _new_epoch(self, client_key: str, epoch: int, now: float) -> _Session:
        """The key's session ``epoch`` (the next free one should an open session hold that id)."""
        while epoch_session_id(client_key, epoch) in self._sessions:
            epoch += 1
        return self._add(_Session(epoch_session_id(client_key, epoch), now, client_key=client_key, epoch=epoch))

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
        self._set_pending(session, pending)
        self._touch(session, now)
        return displaced

    def release(self, assignment: Assignment) -> PendingTurn | None:
        """The request of ``assignment`` failed (nothing recorded): undo what it changed.

        The turn it took becomes the session's pending turn again (a retry finds it), its turn
        index is free again, and a session it opened that holds nothing else is closed. Returns the taken turn when its
        session ended meanwhile (the caller closes it with a session end), else None.
        """
        session = self._sessions.get(assignment.session_id)
        previous = assignment.previous
        if session is None:
            return previous
        if previous is not None and session.pending is None:
            self._set_pending(session, previous)
        if session.next_index != assignment.turn_index + 1:
            return None  # a later request of the session took the next index: keep the gap
        session.next_index -= 1  # never recorded: the retry takes the same index
        if assignment.created and session.pending is None:
            del self._sessions[session.session_id]
            if self._by_key.get(session.client_key) == session.session_id:
                del self._by_key[session.client_key]
        return None

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

    def _set_pending(self, session: _Session, pending: PendingTurn) -> None:
        session.pending = pending
        for key, _ in pending.reply_keys:
            self._by_reply[key] = session.session_id
        found = self._by_prompt.get(pending.prompt_key)
        if found is None or found == session.session_id:
            self._by_prompt[pending.prompt_key] = session.session_id
        else:  # another session has the very same prompt: which one a dropped reply follows is unknowable
            self._by_prompt[pending.prompt_key] = (found if isinstance(found, int) else 1) + 1

    def _take_pending(self, session: _Session) -> PendingTurn:
        pending = session.pending
        assert pending is not None
        session.pending = None
        for key, _ in pending.reply_keys:
            if self._by_reply.get(key) == session.session_id:
                del self._by_reply[key]
        found = self._by_prompt.get(pending.prompt_key)
        if found == session.session_id or found == 1:
            del self._by_prompt[pending.prompt_key]
        elif isinstance(found, int):
            self._by_prompt[pending.prompt_key] = found - 1
        return pending

    def _touch(self, session: _Session, now: float) -> None:
        session.last_seen = now
        self._sessions.move_to_end(session.session_id)


def epoch_session_id(client_key: str, epoch: int) -> str:
    """The session id of a client key's ``epoch``: the key itself first, then ``KEY#n``.

    One-to-one: a key holding ``#`` is never used bare (its first session is ``KEY#0``), so no
    key's session id can equal another key's epoch (``"a#1"`` is epoch 1 of ``"a"``, and
    epoch 0 of the key ``"a#1"`` is ``"a#1#0"``).
    """
    return client_key if epoch == 0 and "#" not in client_key else f"{client_key}#{epoch}"
