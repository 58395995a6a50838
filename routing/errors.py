"""The errors a connector may raise, and nothing else.

Foreign exceptions (requests, json, socket) are translated into these at one boundary, the
shared HTTP layer (`dialwhom.integrations.http`), so the framework can tell the cases apart::

    ConnectorError                 any failure of one lookup; the caller falls back
    ├── ConnectorUnavailable       retryable: connection refused/reset, 5xx
    │   ├── ConnectorTimeout       no (complete) answer before the deadline or the read timeout
    │   └── RateLimited            429 or a vendor's limit answer; `retry_after` in seconds
    ├── AuthError                  401/403 that a token refresh did not (or cannot) cure: fix credentials
    └── BadResponse                an answer we cannot use: HTML, invalid JSON, wrong shape, too big

`ConfigError` (from `dialwhom.routing.config`, re-exported here) is raised when a connector is built
from a bad config, at startup; it is not a lookup failure.

Not found is not an error: `Connector.lookup` returns ``None``.
"""

from __future__ import annotations

from dialwhom.routing.config_error import ConfigError

__all__ = [
    "ConnectorError", "ConnectorUnavailable", "ConnectorTimeout", "RateLimited",
    "AuthError", "BadResponse", "ConfigError",
]


class ConnectorError(Exception):
    """A lookup failed; the framework answers from cache or fallback instead."""

    #: retried by the shared HTTP layer when time allows
    retryable = False
    #: short machine name used in traces and metrics
    kind = "error"

    def __init__(self, message: str = "", *, connector: str | None = None, status: int | None = None):
        super().__init__(message)
        self.connector = connector
        self.status = status


class ConnectorUnavailable(ConnectorError):
    """The remote side is down or failing (connection error, 5xx). Retryable."""

    retryable = True
    kind = "unavailable"


class ConnectorTimeout(ConnectorUnavailable):
    """No complete answer in the time allowed."""

    kind = "timeout"


class RateLimited(ConnectorUnavailable):
    """The remote side asked us to slow down; `retry_after` is in seconds, if it said."""

    kind = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Credentials were refused. Not retryable: someone has to fix the config."""

    kind = "auth"


class BadResponse(ConnectorError):
    """The remote answered with something we cannot use (HTML, bad JSON, wrong shape)."""

    kind = "bad_response"
