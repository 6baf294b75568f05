"""``POST /v1/sessions/{id}/outcome``: an outside harness records an episode's outcome.

Body: ``{"score": <number in [0, 1]>, "passed": <bool, optional>, "details": <object,
optional>}``. ``{id}`` is the session key the client sent (``X-Session-Id``; a reused key
means its latest session) or a journal session id; a session with no turn recorded is
404. The first outcome recorded stands: the same score again answers 200 with
``"recorded": false``, a different one 409. Errors are OpenAI-style (``RequestError``).
The handler writes through the journal's ``OutcomeStore``; step rewards read it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from slime_openclaw.errors import NotFoundError, RequestError
from slime_openclaw.journal.base import OutcomeStore, TurnRecorder
from slime_openclaw.types import SessionOutcome

_FIELDS = {"score", "passed", "details"}


def parse_outcome(session_id: str, body: dict[str, Any]) -> SessionOutcome:
    """The outcome a request body states; ``RequestError`` (400) naming the bad field otherwise."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise RequestError(f"unrecognized outcome field: {unknown[0]}", code="unknown_parameter", param=unknown[0])
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
            or not 0.0 <= score <= 1.0:
        raise RequestError("score must be a number in [0, 1]", code="invalid_value", param="score")
    passed = body.get("passed")
    if passed is not None and not isinstance(passed, bool):
        raise RequestError("passed must be true or false", code="invalid_value", param="passed")
    details = body.get("details", {})
    if not isinstance(details, dict):
        raise RequestError("details must be a JSON object", code="invalid_value", param="details")
    return SessionOutcome(session_id=session_id, score=float(score), passed=passed, details=details)


def resolve_session(key: str, store: OutcomeStore, recorder: TurnRecorder) -> str:
    """The journal session ``key`` names: its latest session as a client key, else itself; 404 if none."""
    last = recorder.last_turn_for_client(key)
    if last is not None:
        return last.turn.session_id
    if store.has_session(key):
        return key
    raise NotFoundError(f"session '{key}' does not exist", code="session_not_found", param="session_id")


async def record_outcome(
    key: str, body: dict[str, Any], store: OutcomeStore | None, recorder: TurnRecorder,
    flush: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Record the outcome ``body`` states on session ``key``; the response body, or an OpenAI-style error."""
    if store is None:
        raise RequestError("this gateway records no session outcomes (no journal)", status=404, code="not_found")
    parse_outcome(key, body)  # a bad body is a 400 whether or not the session exists
    await flush()  # the session's last turns may still be queued for the journal
    outcome = parse_outcome(resolve_session(key, store, recorder), body)
    recorded = store.record_outcome(outcome)
    stored = store.get_outcome(outcome.session_id) or outcome
    if not recorded and stored.score != outcome.score:
        raise RequestError(f"session '{outcome.session_id}' already has outcome {stored.score}", status=409,
                           code="outcome_conflict", param="score")
    return {"object": "session.outcome", "session_id": stored.session_id, "score": stored.score,
            "passed": stored.passed, "recorded": recorded}
