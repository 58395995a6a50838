"""OAuth for the CRM connectors: one token request, and one access token shared by everyone who
holds the same credentials.

`OAuthClient` makes the token request (``refresh_token`` or ``client_credentials`` grant, form
body), reads ``expires_in`` and maps the token endpoint's answers onto the connector errors:
credentials refused -> `AuthError`, throttled -> `RateLimited`, no usable answer -> `BadResponse`
(5xx and network failures are `ConnectorUnavailable` from the HTTP layer)::

    oauth = OAuthClient("crm", "https://login.example.com/oauth2/token", http=lambda: self.http,
                        client_id=..., client_secret=..., refresh_token=...)
    self.tokens = CachedToken(oauth)                    # one token per connector, or
    self.tokens = SharedToken(oauth.fetch, key=oauth.fingerprint, redis=context.redis)

`SharedToken` is a `TokenProvider` for vendors that limit how many tokens a credential may hold
(Zoho keeps 10 per refresh token and drops the oldest): every connector of the process built
from the same credentials shares one token, and with Redis every instance does; minting is
serialised with a Redis lock (``SET NX PX``), counted against an optional mint budget, and paused
after the vendor throttles us. Redis down: the process's own token, as if Redis were not set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from dialwhom.integrations.http import HttpClient, retry_after_seconds
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import AuthError, BadResponse, ConnectorTimeout, RateLimited
from dialwhom.routing.redact import error_code, scrub

__all__ = ["OAuthClient", "TokenGrant", "SharedToken", "TokenRegistry", "expires_in_seconds", "CREDENTIAL_ERRORS"]

log = logging.getLogger("dialwhom.oauth")

#: RFC 6749 token errors (and vendor spellings) that mean "these credentials are refused"
CREDENTIAL_ERRORS = frozenset({
    "invalid_client", "invalid_client_secret", "invalid_client_id", "invalid_client_credentials", "invalid_code",
    "invalid_grant", "unauthorized_client", "unsupported_grant_type", "access_denied", "invalid_scope", "invalid_token",
    "inactive_user", "inactive_org", "invalid_app_access", "bad_refresh_token",
})
#: token errors that mean "too many token requests" (Zoho answers HTTP 200 "Access Denied")
THROTTLE_ERRORS = frozenset({"access denied", "too_many_requests", "slow_down", "rate_limit_exceeded"})
#: after a Redis failure, how long minting skips Redis (a down Redis must not cost every mint its timeouts)
REDIS_COOLDOWN_S = 30.0
#: answer fields worth sharing with other connectors and instances (never a refresh token)
SHARED_FIELDS = ("api_domain", "instance_url", "scope", "token_type", "id", "issued_at")


@dataclass(frozen=True)
class TokenGrant:
    """One access token: its lifetime in seconds (None: the vendor did not say) and the answer's other fields."""

    access_token: str
    expires_in: float | None
    body: Mapping[str, Any] = field(default_factory=dict)


def expires_in_seconds(body: Mapping[str, Any]) -> float | None:
    """``expires_in`` in seconds; old Zoho answers carry milliseconds next to ``expires_in_sec``."""
    for key in ("expires_in_sec", "expires_in", "expiresIn"):
        try:
            value = float(body[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value <= 0:
            return None
        return value / 1000.0 if value > 86400 else value
    return None


class OAuthClient:
    """One token endpoint and grant; `fetch(deadline)` asks it for an access token.

    `hint(error)` adds advice to a refusal (e.g. "wrong data centre" for Zoho's invalid_client);
    a rotated refresh token in the answer replaces the configured one in memory.
    """

    def __init__(
        self,
        connector_id: str,
        token_url: str,
        *,
        http: Callable[[], HttpClient],
        client_id: str,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        grant: str = "refresh_token",
        scope: str | None = None,
        extra: Mapping[str, str] | None = None,
        hint: Callable[[str], str] | None = None,
    ):
        if grant not in ("refresh_token", "client_credentials"):
            raise ValueError(f"unsupported grant {grant!r}")
        if grant == "refresh_token" and not refresh_token:
            raise ValueError("the refresh_token grant needs a refresh_token")
        self.id = connector_id
        self.token_url = token_url
        self.grant = grant
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._scope = scope
        self._extra = dict(extra or {})
        self._hint = hint or (lambda error: "check client_id, client_secret and refresh_token")
        self._lock = threading.Lock()
        # Who holds which token is keyed on this: never the secrets themselves.
        material = "\n".join((token_url, grant, client_id, refresh_token or "", scope or ""))
        self.fingerprint = hashlib.sha256(material.encode()).hexdigest()[:24]

    def form(self) -> dict[str, str]:
        """The request body (form-encoded; secrets never go in the URL)."""
        form = {"grant_type": self.grant, "client_id": self._client_id}
        if self._client_secret:
            form["client_secret"] = self._client_secret
        if self.grant == "refresh_token":
            with self._lock:
                form["refresh_token"] = str(self._refresh_token)
        if self._scope:
            form["scope"] = self._scope
        form.update(self._extra)
        return form

    def fetch(self, deadline: Deadline) -> TokenGrant:
        """POST the grant; the token, or the connector error the answer means."""
        resp = self._http().request("POST", self.token_url, deadline=deadline, data=self.form(), auth=False,
                                    retry=False, ok=(200, 400, 401, 403, 429))
        where = f"{self.id}: token request to {_host(self.token_url)}"
        try:
            body = resp.json()
        except BadResponse as exc:
            raise BadResponse(f"{self.id}: {scrub(str(exc))}", connector=self.id, status=resp.status) from None
        if not isinstance(body, dict):
            raise BadResponse(f"{where}: answer is not a JSON object", connector=self.id, status=resp.status)
        error = str(body.get("error") or (body.get("status") if resp.status != 200 else "") or "").strip()
        said = str(body.get("error_description") or body.get("message") or "")
        description = error_code(said) if said else ""  # a vendor's text may echo the client secret
        token = body.get("access_token") or body.get("accessToken")
        throttled = resp.status == 429 or error.lower() in THROTTLE_ERRORS or "too many requests" in said.lower()
        if throttled:
            raise RateLimited(f"{where}: too many token requests ({description or error or 'HTTP 429'})",
                              retry_after=retry_after_seconds(resp.headers), connector=self.id, status=resp.status)
        if error or not isinstance(token, str) or not token:
            if error.lower() in CREDENTIAL_ERRORS or resp.status in (401, 403):
                raise AuthError(f"{where} refused ({error_code(error)}{': ' + description if description else ''}); {self._hint(error)}",
                                connector=self.id, status=resp.status)
            detail = f" ({error_code(error)})" if error else ""
            raise BadResponse(f"{where}: answer (HTTP {resp.status}) has no access_token{detail}", connector=self.id, status=resp.status)
        rotated = body.get("refresh_token")
        if self.grant == "refresh_token" and isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            with self._lock:
                self._refresh_token = rotated
            log.warning("connector=%s the token endpoint rotated the refresh token; using the new one until restart", self.id)
        return TokenGrant(token, expires_in_seconds(body), {k: body[k] for k in SHARED_FIELDS if k in body})

    def __call__(self, deadline: Deadline) -> tuple[str, float | None]:
        """`CachedToken`'s fetch signature."""
        grant = self.fetch(deadline)
        return grant.access_token, grant.expires_in


# -- one token for everyone holding the same credentials -------------------------------------------


class _State:
    """What the connectors of one process share about one credential's token."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.grant: TokenGrant | None = None
        self.fresh_until = 0.0  # wall clock
        self.mints: deque[float] = deque()
        self.blocked_until = 0.0
        self.pause = 0.0
        self.redis_down_until = 0.0  # monotonic: after a Redis failure, this process's own token for a while


class TokenRegistry:
    """Token state by credential fingerprint, alive while a connector uses it (one per process)."""

    def __init__(self) -> None:
        self._states: "weakref.WeakValueDictionary[str, _State]" = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def state(self, key: str) -> _State:
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = _State()
                self._states[key] = state
            return state


#: the process's registry: connectors built from the same credentials share one token
PROCESS_TOKENS = TokenRegistry()

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_FORGET = ("local v = redis.call('GET', KEYS[1]) if v and cjson.decode(v)['access_token'] == ARGV[1] then "
           "return redis.call('DEL', KEYS[1]) end return 0")


class _RedisDown(Exception):
    pass


class SharedToken:
    """A `TokenProvider` whose token is shared by credential (`key`), in-process and through Redis.

    - in-process: every `SharedToken` with the same `key` and `registry` holds one token;
    - `redis` (a redis.Redis client) shares it with other instances under ``<key_prefix>oauth:<key>``:
      the token and its expiry, a lock (``SET NX PX``) held while one instance mints, the mint
      times (a sorted set) and a throttle block;
    - `mint_limit` per `mint_window_s` (None: no budget) is never exceeded, counted across instances
      when Redis is up; after the vendor throttles minting, minting pauses (`throttle_pause_s`,
      doubled on each refusal up to the window, or the vendor's Retry-After);
    - Redis failures are logged and answered from the process's own state.
    """

    def __init__(
        self,
        fetch: Callable[[Deadline], TokenGrant],
        *,
        key: str,
        header: Callable[[str], Mapping[str, str]] = lambda t: {"Authorization": f"Bearer {t}"},
        redis: Any = None,
        key_prefix: str = "dialwhom:",
        margin_s: float = 60.0,
        default_ttl_s: float = 3600.0,
        mint_limit: int | None = None,
        mint_window_s: float = 600.0,
        throttle_pause_s: float = 60.0,
        lock_ttl_s: float = 10.0,
        budget_note: Callable[[], str] = lambda: "",
        registry: TokenRegistry | None = None,
        clock: Callable[[], float] = time.time,
        connector_id: str = "",
    ):
        self._fetch = fetch
        self._header = header
        self._state = (registry or PROCESS_TOKENS).state(key)
        self.redis = redis
        self._k = f"{key_prefix}oauth:{key}"
        self._margin = margin_s
        self._default_ttl = default_ttl_s
        self.mint_limit = mint_limit
        self._window = mint_window_s
        self._throttle_pause = throttle_pause_s
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._budget_note = budget_note
        self.clock = clock
        self.id = connector_id
        self.fetches = 0  # tokens this object minted
        self._last_warning = 0.0

    # -- TokenProvider ------------------------------------------------------------------------

    def auth_headers(self, deadline: Deadline) -> Mapping[str, str]:
        return self._header(self.token(deadline))

    def token(self, deadline: Deadline) -> str:
        return self.grant(deadline).access_token

    def grant(self, deadline: Deadline) -> TokenGrant:
        """The shared token (minting one only when nobody holds a fresh one)."""
        s = self._state
        with s.lock:
            if s.grant is not None and self.clock() < s.fresh_until:
                return s.grant
            if self.redis is not None and time.monotonic() >= s.redis_down_until:
                try:
                    grant, fresh_until = self._through_redis(deadline)
                except _RedisDown:
                    s.redis_down_until = time.monotonic() + REDIS_COOLDOWN_S  # warned; this process mints its own below
                else:
                    s.grant, s.fresh_until = grant, fresh_until
                    return grant
            grant = self._mint(deadline)
            s.grant, s.fresh_until = grant, self._fresh_until(grant)
            return grant

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token (only if it is still `token`), here and in Redis."""
        s = self._state
        with s.lock:
            if token is None or (s.grant is not None and s.grant.access_token == token):
                s.grant = None
        if self.redis is not None and time.monotonic() >= s.redis_down_until:
            try:
                if token is None:
                    self.redis.delete(f"{self._k}:token")
                else:
                    self.redis.eval(_FORGET, 1, f"{self._k}:token", token)
            except Exception as exc:
                s.redis_down_until = time.monotonic() + REDIS_COOLDOWN_S
                self._warn("forgetting the shared token", exc)

    # -- minting ------------------------------------------------------------------------------

    def _fresh_until(self, grant: TokenGrant) -> float:
        ttl = self._default_ttl if grant.expires_in is None else float(grant.expires_in)
        return self.clock() + max(0.0, ttl - min(self._margin, ttl / 2))

    def _mint(self, deadline: Deadline, *, counted: bool = False) -> TokenGrant:
        """Ask the vendor (budget and throttle pause checked; `counted`: Redis already counted it)."""
        s = self._state
        now = self.clock()
        if now < s.blocked_until:
            wait_s = s.blocked_until - now
            raise RateLimited(f"{self.id}: the token endpoint refused new tokens (too many); not asking again for {wait_s:.0f} s",
                              retry_after=wait_s, connector=self.id)
        if not counted and self.mint_limit is not None:
            while s.mints and now - s.mints[0] >= self._window:
                s.mints.popleft()
            if len(s.mints) >= self.mint_limit:
                raise self._over_budget(len(s.mints), self._window - (now - s.mints[0]))
        s.mints.append(now)
        try:
            grant = self._fetch(deadline)
        except RateLimited as exc:
            raise self._throttled(exc) from None
        self.fetches += 1
        s.pause = 0.0
        return grant

    def _over_budget(self, minted: int, wait_s: float) -> RateLimited:
        why = self._budget_note()
        return RateLimited(f"{self.id}: {minted} access tokens minted in {self._window / 60:.0f} min, the most we ask for "
                           f"(the vendor blocks the credential beyond its limit){'; ' + why if why else ''}",
                           retry_after=max(0.0, wait_s), connector=self.id)

    def _throttled(self, exc: RateLimited) -> RateLimited:
        s = self._state
        s.pause = min(self._window, max(self._throttle_pause, s.pause * 2))
        pause = min(self._window, exc.retry_after) if exc.retry_after is not None else s.pause
        s.blocked_until = self.clock() + pause
        if self.redis is not None:
            try:
                self.redis.set(f"{self._k}:blocked", "1", px=max(1, int(pause * 1000)))
            except Exception as e:
                self._warn("sharing the token throttle", e)
        return RateLimited(f"{exc}; pausing token requests for {pause:.0f} s", retry_after=pause,
                           connector=exc.connector, status=exc.status)

    # -- Redis ----------------------------------------------------------------------------------

    def _r(self, method: str, *args: Any, **kw: Any) -> Any:
        try:
            return getattr(self.redis, method)(*args, **kw)
        except Exception as exc:
            self._warn(method, exc)
            raise _RedisDown() from None

    def _read(self) -> tuple[TokenGrant, float] | None:
        raw = self._r("get", f"{self._k}:token")
        if not raw:
            return None
        try:
            data = json.loads(raw)
            grant = TokenGrant(str(data["access_token"]), data.get("expires_in"), dict(data.get("body") or {}))
            fresh_until = float(data["fresh_until"])
        except (ValueError, KeyError, TypeError):
            return None
        return (grant, fresh_until) if self.clock() < fresh_until else None

    def _through_redis(self, deadline: Deadline) -> tuple[TokenGrant, float]:
        """Another instance's fresh token, or one we mint while holding the lock."""
        found = self._read()
        if found is not None:
            return found
        lock_key, mine = f"{self._k}:lock", secrets.token_hex(8)
        while True:
            if self._r("set", lock_key, mine, nx=True, px=self._lock_ttl_ms):
                try:
                    return self._mint_shared(deadline)
                finally:
                    try:
                        self.redis.eval(_RELEASE, 1, lock_key, mine)
                    except Exception as exc:
                        self._warn("releasing the mint lock", exc)
            # Someone else is minting: their token shows up shortly (or their lock expires).
            if deadline.remaining() < 0.05:
                raise ConnectorTimeout(f"{self.id}: another instance is minting the access token; out of time waiting", connector=self.id)
            time.sleep(0.02)
            found = self._read()
            if found is not None:
                return found

    def _mint_shared(self, deadline: Deadline) -> tuple[TokenGrant, float]:
        found = self._read()  # minted by someone else while we waited for the lock
        if found is not None:
            return found
        blocked_ms = self._r("pttl", f"{self._k}:blocked")
        if blocked_ms and blocked_ms > 0:
            raise RateLimited(f"{self.id}: the token endpoint refused new tokens (too many); shared pause, "
                              f"not asking again for {blocked_ms / 1000:.0f} s", retry_after=blocked_ms / 1000, connector=self.id)
        mints_key, now = f"{self._k}:mints", self.clock()
        if self.mint_limit is not None:
            self._r("zremrangebyscore", mints_key, "-inf", now - self._window)
            recent = self._r("zrange", mints_key, 0, 0, withscores=True)
            count = self._r("zcard", mints_key)
            if count >= self.mint_limit:
                raise self._over_budget(int(count), self._window - (now - recent[0][1]))
            self._r("zadd", mints_key, {f"{now:.6f}:{secrets.token_hex(4)}": now})
            self._r("pexpire", mints_key, int(self._window * 1000))
        grant = self._mint(deadline, counted=True)
        fresh_until = self._fresh_until(grant)
        value = json.dumps({"access_token": grant.access_token, "expires_in": grant.expires_in,
                            "fresh_until": fresh_until, "body": dict(grant.body)})
        try:
            self.redis.set(f"{self._k}:token", value, px=max(1, int((fresh_until - self.clock()) * 1000)))
        except Exception as exc:
            self._warn("sharing the new token", exc)  # we still hold it; others mint their own
        return grant, fresh_until

    def _warn(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 30.0:
            self._last_warning = now
            log.warning("connector=%s redis %s failed (%s: %s); using this process's own access token",
                        self.id, what, type(exc).__name__, scrub(str(exc))[:120])

    def __repr__(self) -> str:
        return f"<SharedToken {'set' if self._state.grant else 'empty'}{' redis' if self.redis is not None else ''}>"


def _host(url: str) -> str:
    return urlsplit(url).netloc or url
