"""What a harness episode needs from the gateway: a session id and the outcome endpoint.

Any OpenAI-speaking client is grouped into one session by sending ``X-Session-Id: <id>``
on its requests; its outcome then goes to ``POST <gateway>/v1/sessions/<id>/outcome``
with ``{"score", "passed", "details"}``. Errors are one-line ``HarnessError``s.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from slime_openclaw.envs.base import Outcome
from slime_openclaw.harnesses.runs import HarnessError

DETAILS_CAP = 20000
"""Characters of a detail string posted with an outcome (the rest is cut)."""


def api_base(gateway: str) -> str:
    """The OpenAI base URL (``.../v1``) of a gateway given with or without ``/v1``."""
    url = gateway.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise HarnessError(f"--gateway {gateway!r}: not an http(s) URL")
    return url if url.endswith("/v1") else url + "/v1"


def new_session_id(harness: str, task: dict[str, Any]) -> str:
    """``<harness>-<task id>-<8 hex>``: unique per episode, readable in the journal."""
    name = str(task.get("id") or task.get("instance_id") or "task")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]
    return f"{harness}-{safe}-{secrets.token_hex(4)}"


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value[:DETAILS_CAP]
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    return value


def post_outcome(gateway: str, session_id: str, outcome: Outcome, *, api_key: str = "",
                 timeout: float = 60.0) -> dict[str, Any]:
    """Record ``outcome`` on the session; the gateway's answer (``recorded``, ``session_id``)."""
    body = json.dumps({"score": outcome.score, "passed": outcome.passed, "details": _cut(outcome.details)},
                      default=str).encode()
    request = urllib.request.Request(f"{api_base(gateway)}/sessions/{quote(session_id, safe='')}/outcome",
                                     data=body, method="POST", headers={"Content-Type": "application/json"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result
    except urllib.error.HTTPError as exc:
        raise HarnessError(f"outcome for session {session_id!r} not recorded: HTTP {exc.code} "
                           f"{_error_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise HarnessError(f"outcome for session {session_id!r} not recorded: {exc}") from None


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")[:200]
