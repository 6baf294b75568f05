"""One exception type per boundary, each mapped on purpose to how it reaches a user.

- ``RequestError``: the client's request is wrong -> 4xx OpenAI-style error JSON.
- ``EngineError``: the inference engine failed or is unreachable -> 502/503 (SDKs retry).
- ``OverloadedError``: back-pressure -> 429 with ``Retry-After``.
- ``JudgeError``: a judge or hint call failed -> recorded on the turn, never raised to a client.
- ``UnavailableError``: a part the gateway needs is down for now (the journal cannot commit,
  the engine child is restarting) -> 503 with ``Retry-After``.
- ``JournalError``: the durable store refused a write -> 500, and the turn stays where it was;
  ``JournalStorageError`` when its storage failed (disk full, I/O error): that passes.
- ``ConfigError``: bad configuration -> one-line message and exit code 2 from the CLI.
"""

from __future__ import annotations


class OpenClawError(Exception):
    """Base of every error this package raises on purpose."""

    status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param

    def to_openai(self) -> dict:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class RequestError(OpenClawError):
    """The request is malformed or asks for something we cannot record exactly."""

    status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, status: int = 400, code: str | None = None, param: str | None = None):
        super().__init__(message, code=code, param=param)
        self.status = status


class AuthenticationError(OpenClawError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(OpenClawError):
    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class OverloadedError(OpenClawError):
    """Too many requests in flight; the client should retry after ``retry_after`` seconds."""

    status = 429
    error_type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class EngineError(OpenClawError):
    """The inference engine is unreachable or answered with an error.

    ``message`` says what happened, with the engine's address, for logs; a client gets
    ``to_openai()``, which names neither the engine's address nor its words.
    """

    status = 502
    error_type = "engine_error"
    code = "engine_unavailable"

    def to_openai(self) -> dict:
        public = ("the inference engine refused the request" if self.code == "engine_rejected"
                  else "the inference engine failed or is unavailable; retry shortly")
        return {"error": {"message": public, "type": self.error_type, "param": None, "code": self.code}}


class UnavailableError(OpenClawError):
    """Something the answer needs is down for now; the client should retry after ``retry_after`` seconds."""

    status = 503
    error_type = "server_error"
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float = 1.0):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class JudgeError(OpenClawError):
    """A judge, hint or teacher call failed; recorded on the turn, never shown to a client."""

    error_type = "judge_error"


class JournalError(OpenClawError):
    """The journal could not durably record a change."""

    error_type = "journal_error"


class TurnKeyCollision(JournalError):
    """A turn was recorded under a key that already holds a different turn: the new one was not stored."""

    error_type = "turn_key_collision"


class JournalStorageError(JournalError):
    """The journal's storage refused a write (disk full, I/O error, locked past the busy timeout):
    nothing was written, and the same write may succeed later."""


class ConfigError(OpenClawError):
    """Invalid configuration: unknown key, wrong type, missing path."""

    error_type = "config_error"
