"""No user text in logs: aiohttp's own error records about broken requests are redacted.

aiohttp logs a badly framed request (``Transfer-Encoding: gzip``, a body its declared
``Content-Encoding`` cannot decode, ...) with the parser's exception, whose message quotes
the raw request bytes, that is, the user's text. ``redact_server_logs()`` puts a filter
on aiohttp's server loggers that keeps the event (level, the exception's class name) and
drops its arguments and traceback; a client's broken request is logged at INFO, not
ERROR. No setting turns user text in logs on. This module knows nothing about requests.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

SERVER_LOGGERS = ("aiohttp.server", "aiohttp.web")
_CLIENT_FAULTS = (HttpProcessingError, RequestPayloadError, ConnectionError)


class RedactingFilter(logging.Filter):
    """Rewrites a record to its level and exception class, without message arguments or traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        kind = type(error).__name__ if error is not None else "no exception"
        event = str(record.msg).split("%", 1)[0].removesuffix(" from ").strip() or "aiohttp error"
        record.msg = "%s (%s); request details withheld: user text is never logged"
        record.args = (event, kind)
        if isinstance(error, _CLIENT_FAULTS) and record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"  # a client's broken request, not ours
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_FILTER = RedactingFilter()


def redact_server_logs() -> None:
    """Install the filter on aiohttp's server loggers (idempotent)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
