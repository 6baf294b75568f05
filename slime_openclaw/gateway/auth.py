"""Who may talk to the gateway: the bind rule and the bearer-token check.

Nothing binds beyond loopback without an API key (``check_bind``), and when a key is set
every endpoint except ``/healthz`` requires ``Authorization: Bearer <key>``
(``check_bearer``, constant-time comparison). It does not log keys or headers.
"""

from __future__ import annotations

import hmac
import ipaddress

from slime_openclaw.errors import AuthenticationError, ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual localhost names."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(f"refusing to bind {host} without an API key (pass --api-key or bind 127.0.0.1)")


def check_bearer(authorization: str | None, api_key: str | None) -> None:
    """Raise ``AuthenticationError`` unless the header carries the configured key."""
    if not api_key:
        return
    scheme, _, token = (authorization or "").partition(" ")
    # Header values arrive as UTF-8 with surrogate escapes: any byte compares, none raises.
    presented = token.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, api_key.encode("utf-8", "surrogateescape")):
        raise AuthenticationError("invalid or missing API key (send Authorization: Bearer <key>)")
