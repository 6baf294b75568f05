"""From served requests to recorded turns: session headers, next states, session ends.

``TurnBook`` is the bridge between the session table (which decides continuity) and the
``TurnRecorder`` (the journal seam): when a request arrives it assigns the session and works
out the previous turn's next state; when the answer is complete it attaches that next state,
records the turn token-exactly and makes it the session's pending turn; a request that fails
first is abandoned (its session is left as if it never came: no empty session stays open,
and a retry finds the previous turn again); when sessions end (``X-Session-Done``, idle TTL,
capacity) it closes their pending turns with a SESSION_END next state. A side
turn is recorded and discarded at once (never trained); ``X-OpenClaw-Train: off`` requests
are served but never reach this module's recorder.

Journal writes go through ``JournalWriter`` (journal/writer.py): in order, those of one
loop iteration in one SQLite transaction; ``close`` hands back what resolves once the
turn is recorded (None) or what failed, and the chat service awaits it before an answer's
final chunk: an answer whose turn could not be recorded is not delivered as a success. A
recorder failure is logged (turn key only, never text) and counted; storage failures mark the
journal failing (gateway/journal_health.py) until a write commits again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slime_openclaw.errors import JournalError, RequestError, TurnKeyCollision, UnavailableError
from slime_openclaw.gateway.journal_health import JournalHealth
from slime_openclaw.gateway.matching import History, PendingTurn, next_state_for, session_end
from slime_openclaw.gateway.metrics import GatewayMetrics
from slime_openclaw.gateway.sessions import Assignment, SessionTable, SessionTail
from slime_openclaw.gateway.wire import ChatRequest
from slime_openclaw.journal.base import TurnRecorder
from slime_openclaw.journal.writer import JournalWriter, Write
from slime_openclaw.types import FinishReason, Message, NextState, NextStateKind, Turn, TurnState, TurnType

log = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class TurnContext:
    """What the request's headers and body say about its session."""

    session_id: str | None = None
    matched_by: str = "history"
    turn_type: TurnType | None = None
    train: bool = True
    """False for ``X-OpenClaw-Train: off``: serve, never record."""
    session_done: bool = False
    """``X-Session-Done: 1``: the session ends after this turn."""


def turn_context(headers: Mapping[str, str], request: ChatRequest) -> TurnContext:
    """Read ``X-Session-Id``, ``X-Turn-Type``, ``X-Session-Done`` and ``X-OpenClaw-Train``.

    The session key: the ``X-Session-Id`` header, else ``metadata.session_id``, else
    ``prompt_cache_key``, else ``user`` (the most specific first: a ``user`` spans sessions).
    """
    session_id, matched_by = headers.get("X-Session-Id") or None, "header"
    if session_id is None:
        session_id, matched_by = request.metadata_session_id or request.prompt_cache_key or request.user, "body"
    raw_type = (headers.get("X-Turn-Type") or "").strip().lower()
    if raw_type and raw_type not in ("main", "side"):
        raise RequestError("X-Turn-Type must be 'main' or 'side'", param="X-Turn-Type")
    return TurnContext(
        session_id=session_id,
        matched_by=matched_by if session_id else "history",
        turn_type=TurnType(raw_type) if raw_type else None,
        train=_flag(headers, "X-OpenClaw-Train", default=True),
        session_done=_flag(headers, "X-Session-Done", default=False),
    )


def _flag(headers: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = (headers.get(name) or "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RequestError(f"{name} must be 1/0, true/false or on/off", param=name)


@dataclass(frozen=True)
class GeneratedTurn:
    """What generation produced for one request, token-exactly."""

    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    log_probs: tuple[float, ...]
    weight_versions: tuple[int, ...]
    finish_reason: FinishReason
    message: Message
    """The assistant message the client got."""
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass
class TurnBook:
    """Assigns sessions, attaches next states and records turns."""

    recorder: TurnRecorder
    sessions: SessionTable
    metrics: GatewayMetrics
    clock: Callable[[], float] = time.time
    check_token_continuity: bool = False
    """Require the previous prompt + response ids to prefix the new prompt ids."""
    writer: JournalWriter = field(init=False)
    health: JournalHealth = field(init=False)

    def __post_init__(self) -> None:
        self.writer = JournalWriter(self.recorder, self._on_result)
        self.health = JournalHealth(self.recorder)
        if self.sessions.tail_lookup is None:
            self.sessions.tail_lookup = self._journal_tail

    def _journal_tail(self, client_key: str) -> SessionTail | None:
        """Where the journal says the key's last session stopped (after a restart, or long ago)."""
        try:
            record = self.recorder.last_turn_for_client(client_key)
        except JournalError as exc:  # without it the key's next turn key is unknown: do not guess
            log.error("looking up where a session key stopped failed: %s", exc.message)
            raise UnavailableError("the journal cannot be read right now; retry shortly", code="journal_unavailable",
                                   retry_after=self.health.retry_after) from exc
        if record is None:
            return None
        turn = record.turn
        pending = None
        if turn.turn_type is TurnType.MAIN and turn.messages:
            pending = self._pending(turn.key, History.of(turn.messages), turn.response_message,
                                    turn.prompt_ids, turn.response_ids)
        return SessionTail(turn.session_id, turn.session_epoch, turn.turn_index + 1, pending,
                           observed=record.state is not TurnState.SERVED)

    def open(self, context: TurnContext, messages: Sequence[Message], prompt_ids: Sequence[int]) -> Assignment:
        """Assign the request to a session and work out the previous turn's next state, if any.

        The next state is attached by ``close`` (with this turn's record), so a request that
        fails leaves the previous turn waiting for the client's retry (``abandon``). Raises
        503 ``journal_unavailable`` first when the journal cannot record now.
        """
        self.health.require()
        now = self.clock()
        self._end_all(self.sessions.expire(now), now)
        history = History.of(messages)
        assignment, ended = self.sessions.assign(
            history, context.session_id, context.turn_type, now, matched_by=context.matched_by
        )
        self._end_all(ended, now)
        self.metrics.sessions_open = len(self.sessions)
        state = None
        if assignment.previous is not None:
            state = next_state_for(assignment.previous, history, prompt_ids, now,
                                   check_tokens=self.check_token_continuity)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request -> session %s turn %d (%s: %s)%s", assignment.session_id, assignment.turn_index,
                      assignment.matched_by, assignment.reason, _describe(assignment.previous, state))
        return dataclasses.replace(assignment, history=history, next_state=state)

    def abandon(self, assignment: Assignment) -> None:
        """The request failed before its turn was recorded: leave the sessions as if it never came."""
        now = self.clock()
        orphan = self.sessions.release(assignment)
        if orphan is not None:
            self._attach(orphan.turn_key, session_end(now))
        self.metrics.sessions_open = len(self.sessions)
        log.debug("request for session %s turn %d failed: released", assignment.session_id, assignment.turn_index)

    def close(self, assignment: Assignment, request: ChatRequest, generated: GeneratedTurn,
              *, session_done: bool) -> asyncio.Future[BaseException | None]:
        """Record the served turn; it becomes the session's pending turn (main) or is discarded (side).

        Returns what resolves once the record is in the journal (None) or failed (the error);
        a turn that failed ends its session (nothing may follow a turn the journal lacks).
        """
        now = self.clock()
        turn = Turn(
            session_id=assignment.session_id,
            turn_index=assignment.turn_index,
            turn_type=assignment.turn_type,
            messages=request.messages,
            tools=request.tools,
            prompt_ids=generated.prompt_ids,
            response_ids=generated.response_ids,
            response_log_probs=generated.log_probs,
            weight_versions=generated.weight_versions,
            finish_reason=generated.finish_reason,
            response_message=generated.message,
            sampling=generated.sampling,
            model=request.model,
            created_at=now,
            client_key=assignment.client_key,
            session_epoch=assignment.epoch,
        )
        if assignment.previous is not None and assignment.next_state is not None:
            self._attach(assignment.previous.turn_key, assignment.next_state)
        recorded = self._submit("record_turn", turn.key, lambda: self.recorder.record_turn(turn))
        recorded.add_done_callback(lambda done: self._unrecorded(done, assignment.session_id, turn.key))
        if assignment.turn_type is TurnType.SIDE:
            self._submit("discard", turn.key, lambda: self.recorder.discard(turn.key, "side turn"))
        else:
            history = assignment.history or History.of(request.messages)
            pending = self._pending(turn.key, history, generated.message, generated.prompt_ids,
                                    generated.response_ids)
            displaced = self.sessions.complete(assignment.session_id, pending, now)
            if displaced is not None:
                self._attach(displaced.turn_key, NextState(
                    kind=NextStateKind.SESSION_END, continuous=False, observed_at=now,
                    break_reason="superseded by a concurrent turn of the same session"))
        if session_done:
            self._end_all([p for p in [self.sessions.end(assignment.session_id)] if p is not None], now)
        self.metrics.sessions_open = len(self.sessions)
        return recorded

    def _pending(self, turn_key: str, history: History, reply: Message, prompt_ids: Sequence[int],
                 response_ids: Sequence[int]) -> PendingTurn:
        """The served turn's fingerprint; its token ids are hashed only when token continuity is checked."""
        if self.check_token_continuity:
            return PendingTurn.build(turn_key, history, reply, tuple(prompt_ids) + tuple(response_ids))
        return PendingTurn.build(turn_key, history, reply, None, token_count=len(prompt_ids) + len(response_ids))

    async def flush(self) -> None:
        """Return once every journal write so far has been applied."""
        await self.writer.flush()

    def expire(self) -> None:
        """End idle sessions now (the app's sweeper calls this periodically)."""
        now = self.clock()
        self._end_all(self.sessions.expire(now), now)
        self.metrics.sessions_open = len(self.sessions)

    def _end_all(self, ended: Sequence[PendingTurn], now: float) -> None:
        for pending in ended:
            self._attach(pending.turn_key, session_end(now))

    def _attach(self, turn_key: str, state: NextState) -> None:
        label = "break" if not state.continuous else state.kind.value
        self._submit("attach_next_state", turn_key, lambda: self.recorder.attach_next_state(turn_key, state), label)

    def _unrecorded(self, done: asyncio.Future[BaseException | None], session_id: str, turn_key: str) -> None:
        """End the session of a turn that could not be recorded (a pending turn of another request is closed)."""
        if done.result() is None:
            return
        ended = self.sessions.end(session_id)
        if ended is not None and ended.turn_key != turn_key:
            self._end_all([ended], self.clock())
        self.metrics.sessions_open = len(self.sessions)

    def _submit(self, what: str, turn_key: str, call: Callable[[], None],
                label: str = "") -> asyncio.Future[BaseException | None]:
        return self.writer.submit(Write(what, turn_key, call, label))

    def _on_result(self, write: Write, error: BaseException | None) -> None:
        """Count a journal write; a failure is logged (turn key only) and counted, and the
        journal's health follows (the chat service learns of a failed record from its future)."""
        if isinstance(error, TurnKeyCollision):
            log.error("turn %s was NOT recorded: its key already holds another turn", write.turn_key)
            self.metrics.recorder_errors += 1
            self.metrics.turn_key_collisions += 1
            return
        if error is not None:
            log.error("recorder.%s failed for turn %s: %s", write.what, write.turn_key, error,
                      exc_info=None if isinstance(error, JournalError) else error)
            self.metrics.recorder_errors += 1
            self.health.failed(error)
            return
        self.health.succeeded()
        if write.what == "record_turn":
            self.metrics.turns_recorded += 1
        elif write.what == "attach_next_state":
            self.metrics.next_states[write.label] += 1


def _describe(previous: PendingTurn | None, state: NextState | None) -> str:
    """The next-state decision for a DEBUG line: turn key, kind, counts and reasons, no text."""
    if previous is None or state is None:
        return "; no previous turn"
    if not state.continuous:
        return f"; previous turn {previous.turn_key}: break ({state.break_reason})"
    extra = ", reply dropped by the client" if state.reply_dropped else ""
    if state.dropped_messages:
        extra += f", {state.dropped_messages} prompt message(s) not replayed"
    return f"; previous turn {previous.turn_key}: next state {state.kind.value}, {len(state.messages)} message(s){extra}"
