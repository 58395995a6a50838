"""The shared HTTP layer: every connector's calls go through here.

One pooled `requests.Session` per connector. Each call gets a timeout clipped to the request's
deadline, and a *total* time limit: `requests` timeouts apply per socket read, so a server that
trickles a byte a second would defeat them; the body is read in small pieces with the socket
timeout reset to the time left before each read. Bodies are capped. Retryable failures
(connection errors, timeouts, 5xx, 429) are retried with tenacity, exponential backoff with
jitter, only while the deadline leaves room; a `Retry-After` longer than the time left ends the
call at once. A 401 that a new token can cure (the connector's `refreshable` hook decides) makes
one token refresh when the connector has a token provider; the refused token is named, so a burst
of 401s for one expired token refreshes it once. Every transport failure is translated into
`dialwhom.routing.errors` here and nowhere else.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from dialwhom.integrations.transport import DeadlineAdapter, NoRedirectSession, current, set_read_timeout
from dialwhom.routing.errors import (
    AuthError,
    BadResponse,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    RateLimited,
)
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.redact import exception_reason as _reason
from dialwhom.routing.redact import safe_url as _safe_url

__all__ = ["HttpClient", "Response", "TokenProvider", "MAX_RETRIES", "USER_AGENT"]

log = logging.getLogger("dialwhom.http")

USER_AGENT = "dialwhom/0.1 (+https://github.com/dialwhom/dialwhom)"
#: hard caps, whatever config says
MAX_RETRIES = 5
MAX_BACKOFF_S = 1.0
#: an attempt is not worth starting with less time than this
MIN_ATTEMPT_S = 0.02
DEFAULT_MAX_BODY = 2 * 1024 * 1024
_READ_CHUNK = 16 * 1024
#: 50 ms, 100 ms, 200 ms ... plus up to 50 ms of jitter so retries from threads spread out
_BACKOFF = wait_exponential(multiplier=0.05, max=MAX_BACKOFF_S) + wait_random(0, 0.05)


class TokenProvider(Protocol):
    """How a connector with tokens plugs its auth into the shared layer."""

    def auth_headers(self, deadline: Deadline) -> Mapping[str, str]:
        """Headers carrying a valid token, fetching one if none is cached."""

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token, called once on a curable 401 before the single retry.

        `token` is the refused one, read from the request's ``Authorization`` header (the part
        after the scheme); forget the cache only if it still holds that token, so concurrent 401s
        for one expired token cause one refresh. None: forget unconditionally. A provider whose
        `invalidate` takes no argument still works (it is called without one).
        """


@dataclass
class Response:
    """A fully read HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    elapsed_ms: float
    attempts: int = 1

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or `BadResponse` saying what came instead."""
        if not self.body.strip():
            raise BadResponse(f"empty body from {_safe_url(self.url)} (HTTP {self.status}) where JSON was expected", status=self.status)
        try:
            return json.loads(self.body)
        except ValueError:
            ctype = self.headers.get("Content-Type", "?").split(";")[0][:40]
            head = self.body[:20].lstrip().lower()
            kind = "HTML" if head.startswith((b"<!doctype", b"<html")) else "not JSON"
            # never the body itself: a bad answer may hold an owner's email or an echoed token
            raise BadResponse(f"answer from {_safe_url(self.url)} is {kind} (HTTP {self.status}, {ctype}, {len(self.body)} bytes)", status=self.status) from None


class HttpClient:
    """One connector's HTTP calls: pooled, deadline-bound, retried, translated.

    Connector hooks, both optional:

    - `refreshable(resp) -> bool` is asked about a 401 when a `token_provider` is set and the
      token has not been refreshed yet in this attempt: True (the default for every 401 when the
      hook is not given) invalidates the refused token and repeats the call once with a new one;
      False makes the 401 final at once, with no token fetch (e.g. a missing scope).
    - `classify(resp) -> ConnectorError | None` then sees the final answer, whatever its
      status: an error it returns is raised; None falls back to the generic status mapping.
    """

    def __init__(
        self,
        connector_id: str,
        *,
        timeout_s: float = 1.5,
        retries: int = 1,
        max_body: int = DEFAULT_MAX_BODY,
        headers: Mapping[str, str] | None = None,
        token_provider: TokenProvider | None = None,
        classify: Callable[[Response], ConnectorError | None] | None = None,
        refreshable: Callable[[Response], bool] | None = None,
    ):
        self.connector_id = connector_id
        self.timeout_s = timeout_s
        self.retries = max(0, min(MAX_RETRIES, retries))
        self.max_body = max_body
        self.token_provider = token_provider
        self.classify = classify
        self.refreshable = refreshable
        self.session = NoRedirectSession()
        adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.session.headers.update(headers or {})
        #: the last "requests left" figure the remote reported (for /metrics), if it reports one
        self.limit_remaining: float | None = None

    def close(self) -> None:
        self.session.close()

    # -- public -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        deadline: Deadline,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204, 404),
        auth: bool = True,
        retry: bool = True,
    ) -> Response:
        """Make the call, retrying what is retryable while time allows.

        Statuses in `ok` are returned; everything else becomes a connector error. With
        `auth`, the token provider's headers are added and a curable 401 refreshes the token
        once (see the class docstring).
        """
        attempts = 0

        def once() -> Response:
            nonlocal attempts
            attempts += 1
            return self._with_auth(method, url, deadline, params, json_body, data, headers, ok, auth)

        if not retry or self.retries == 0:
            resp = once()
        else:
            resp = self._retrying(deadline)(once)
        resp.attempts = attempts
        return resp

    def get_json(self, url: str, *, deadline: Deadline, params: Mapping[str, Any] | None = None, **kw) -> Any | None:
        """GET and decode JSON; None on 404 or 204."""
        resp = self.request("GET", url, deadline=deadline, params=params, **kw)
        if resp.status in (404, 204):
            return None
        try:
            return resp.json()
        except BadResponse as exc:
            raise BadResponse(f"{self.connector_id}: {exc}", connector=self.connector_id, status=exc.status) from None

    # -- internals ----------------------------------------------------------------------------

    def _retrying(self, deadline: Deadline) -> Retrying:
        def wait(state) -> float:
            exc = state.outcome.exception()
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                return exc.retry_after
            return min(MAX_BACKOFF_S, _BACKOFF(state))

        def out_of_time(state) -> bool:
            # Give up at once when the next wait plus a useful attempt does not fit: the
            # caller's patience, not the CRM's, decides how long we keep trying.
            return state.upcoming_sleep + MIN_ATTEMPT_S > deadline.remaining()

        return Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, ConnectorError) and e.retryable),
            stop=stop_after_attempt(self.retries + 1) | out_of_time,
            wait=wait,
            reraise=True,
            sleep=time.sleep,
        )

    def _with_auth(self, method, url, deadline, params, json_body, data, headers, ok, auth) -> Response:
        provider = self.token_provider if auth else None
        for refreshed in (False, True):
            merged = dict(headers or {})
            sent: Mapping[str, str] = provider.auth_headers(deadline) if provider is not None else {}
            merged.update(sent)
            resp = self._once(method, url, deadline, params, json_body, data, merged)
            if resp.status == 401 and provider is not None and not refreshed and self._curable(resp):
                log.info("connector=%s got 401; refreshing the token once", self.connector_id)
                provider.invalidate(_sent_token(sent))
                continue
            return self._check(resp, ok)
        raise AssertionError("unreachable")

    def _curable(self, resp: Response) -> bool:
        return self.refreshable is None or bool(self.refreshable(resp))

    def _check(self, resp: Response, ok: tuple[int, ...]) -> Response:
        if self.classify is not None:
            err = self.classify(resp)
            if err is not None:
                err.connector = err.connector or self.connector_id
                raise err
        status = resp.status
        if status in ok:
            return resp
        where = f"{self.connector_id}: HTTP {status} from {_safe_url(resp.url)}"
        if status == 429:
            raise RateLimited(f"{where} (rate limited)", retry_after=retry_after_seconds(resp.headers), connector=self.connector_id, status=status)
        if status in (401, 403):
            raise AuthError(f"{where}: credentials refused; check the token/keys and their scopes", connector=self.connector_id, status=status)
        if status >= 500:
            raise ConnectorUnavailable(where, connector=self.connector_id, status=status)
        raise BadResponse(where, connector=self.connector_id, status=status)

    def _once(self, method, url, deadline, params, json_body, data, headers) -> Response:
        budget = deadline.clip(self.timeout_s)
        if budget < MIN_ATTEMPT_S:
            raise ConnectorTimeout(f"{self.connector_id}: no time left for a call", connector=self.connector_id)
        call = deadline.child(budget)
        started = time.monotonic()
        current.call = call  # read by _DeadlineConnectionMixin.getresponse, in this thread
        try:
            raw = self.session.request(
                method, url, params=params, json=json_body, data=data, headers=headers,
                timeout=(min(budget, 1.0), budget), stream=True,
            )
        except requests.exceptions.Timeout:
            raise ConnectorTimeout(f"{self.connector_id}: no answer from {_safe_url(url)} within {budget * 1000:.0f} ms", connector=self.connector_id) from None
        except requests.exceptions.InvalidURL as exc:
            raise BadResponse(f"{self.connector_id}: invalid URL {_safe_url(url)}: {_reason(exc)}", connector=self.connector_id) from None
        except (requests.exceptions.RequestException, OSError) as exc:
            if call.expired:  # the watchdog cut a status line/headers that never finished
                raise ConnectorTimeout(f"{self.connector_id}: no complete headers from {_safe_url(url)} within {budget * 1000:.0f} ms", connector=self.connector_id) from None
            raise ConnectorUnavailable(f"{self.connector_id}: cannot reach {_safe_url(url)}: {_reason(exc)}", connector=self.connector_id) from None
        finally:
            current.call = None
        try:
            body = self._read_body(raw, call)
        finally:
            raw.close()
        remaining = limit_remaining(raw.headers)
        if remaining is not None:
            self.limit_remaining = remaining
        return Response(
            status=raw.status_code, headers=raw.headers, body=body, url=raw.url or url,
            elapsed_ms=(time.monotonic() - started) * 1000.0,
        )

    def _read_body(self, raw: requests.Response, call: Deadline) -> bytes:
        """Read the whole body within the call's deadline and the size cap."""
        declared = raw.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise BadResponse(f"{self.connector_id}: answer of {declared} bytes is over the {self.max_body}-byte cap", connector=self.connector_id, status=raw.status_code)
        chunks: list[bytes] = []
        size = 0
        stream = raw.raw
        try:
            while True:
                left = call.remaining()
                if left <= 0:
                    raise ConnectorTimeout(f"{self.connector_id}: body from {_safe_url(raw.url)} not complete in time (server too slow)", connector=self.connector_id)
                set_read_timeout(stream, left)
                chunk = stream.read1(_READ_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_body:
                    raise BadResponse(f"{self.connector_id}: answer over the {self.max_body}-byte cap", connector=self.connector_id, status=raw.status_code)
                chunks.append(chunk)
        except ConnectorError:
            raise
        except Exception as exc:  # urllib3 ReadTimeoutError, ProtocolError, socket errors
            if "timed out" in str(exc).lower() or isinstance(exc, TimeoutError):
                raise ConnectorTimeout(f"{self.connector_id}: body from {_safe_url(raw.url)} not complete in time", connector=self.connector_id) from None
            raise ConnectorUnavailable(f"{self.connector_id}: connection broke while reading: {_reason(exc)}", connector=self.connector_id) from None
        return b"".join(chunks)


def _sent_token(headers: Mapping[str, str]) -> str | None:
    """The token an ``Authorization: <scheme> <token>`` header carried, or None."""
    for name, value in headers.items():
        if name.lower() == "authorization" and value:
            return value.split(None, 1)[-1].strip()
    return None


#: headers that say how many requests are left, most specific first
_REMAINING_HEADERS = ("X-HubSpot-RateLimit-Remaining", "X-RateLimit-Remaining", "X-API-CREDITS-REMAINING", "RateLimit-Remaining")
_SFORCE_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def limit_remaining(headers: Mapping[str, str]) -> float | None:
    """Requests left in the current window as the vendor reports it, or None.

    >>> limit_remaining({"Sforce-Limit-Info": "api-usage=25/15000"})
    14975.0
    """
    for name in _REMAINING_HEADERS:
        value = headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    usage = _SFORCE_USAGE.search(headers.get("Sforce-Limit-Info") or "")
    if usage:
        return float(int(usage.group(2)) - int(usage.group(1)))
    return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds (delta or HTTP date), or None."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
