"""Pieces several connectors need: a cached OAuth token, a small TTL memo, record tie-breaks."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Generic, Hashable, Iterable, Mapping, Sequence, TypeVar

from cachetools import TTLCache

from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Query
from dialwhom.routing.phones import to_e164
from dialwhom.routing.redact import mask

__all__ = ["CachedToken", "TTLMemo", "Candidate", "pick_record", "as_utc", "search_key", "SAFE_ACCOUNT_KEY", "KeySearch"]

T = TypeVar("T")


class CachedToken:
    """A `TokenProvider` that keeps a token until shortly before it expires.

    `fetch(deadline)` returns ``(token, expires_in_seconds_or_None)``; it runs at most once at a
    time (other threads wait for it), and again only after expiry or `invalidate()` (a 401).
    `header(token)` builds the auth headers (``Bearer`` by default); keep them in the form
    ``Authorization: <scheme> <token>``, which is how the HTTP layer names a refused token.
    """

    def __init__(
        self,
        fetch: Callable[[Deadline], tuple[str, float | None]],
        *,
        header: Callable[[str], Mapping[str, str]] = lambda t: {"Authorization": f"Bearer {t}"},
        margin_s: float = 60.0,
        default_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fetch = fetch
        self._header = header
        self._margin = margin_s
        self._default_ttl = default_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def token(self, deadline: Deadline) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                token, ttl = self._fetch(deadline)
                self.fetches += 1
                ttl = self._default_ttl if ttl is None else float(ttl)
                self._token = token
                self._expires_at = self._clock() + max(0.0, ttl - min(self._margin, ttl / 2))
            return self._token

    def auth_headers(self, deadline: Deadline) -> Mapping[str, str]:
        return self._header(self.token(deadline))

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token; with `token`, only if it is still the one cached, so a burst of
        concurrent 401s for one expired token makes one refresh, not one per request."""
        with self._lock:
            if token is None or self._token == token:
                self._token = None

    def __repr__(self) -> str:
        return f"<CachedToken {'set' if self._token else 'empty'}>"


class TTLMemo(Generic[T]):
    """A bounded, thread-safe TTL cache with `get_or_load` (owners, users, teams)."""

    def __init__(self, maxsize: int = 2048, ttl_s: float = 3600.0):
        self._cache: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl_s)
        self._lock = threading.Lock()

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            try:
                return self._cache[key]
            except KeyError:
                pass
        value = load()  # outside the lock: a slow CRM must not block other keys
        with self._lock:
            self._cache[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


@dataclass(frozen=True)
class Candidate:
    """One CRM record that matched the caller's number, for `pick_record`."""

    object_type: str
    record_id: str
    modified: str  # ISO-8601 as the CRM sends it; compared as text after normalising 'Z'
    data: Any = None


def pick_record(candidates: Sequence[Candidate], priority: Iterable[str]) -> tuple[Candidate | None, str]:
    """Deterministic tie-break: object priority, then most recently modified, then record id.

    Returns the winner and a note for the trace when there was more than one candidate.
    """
    if not candidates:
        return None, ""
    order = {name.lower(): i for i, name in enumerate(priority)}

    def rank(c: Candidate):
        return (order.get(c.object_type.lower(), len(order)), _desc(as_utc(c.modified)), c.record_id)

    ranked = sorted(candidates, key=rank)
    winner = ranked[0]
    if len(ranked) == 1:
        return winner, ""
    others = ", ".join(f"{c.object_type}/{c.record_id}" for c in ranked[1:4])
    more = f" (+{len(ranked) - 4} more)" if len(ranked) > 4 else ""
    return winner, f"{len(ranked)} records share this number; chose {winner.object_type}/{winner.record_id} by object priority then latest change over {others}{more}"


def as_utc(text: str | None) -> str:
    """An ISO-8601 time as sortable UTC text; CRMs write local offsets (Zoho), 'Z' with or
    without milliseconds (HubSpot) or '+0000' (Salesforce). Unparseable text is kept as is.

    >>> as_utc("2024-05-01T10:00:00+05:30")
    '2024-05-01T04:30:00.000000+00:00'
    >>> as_utc("2024-05-01T04:30:00.000+0000") == as_utc("2024-05-01T04:30:00Z")
    True
    """
    raw = (text or "").strip()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return raw
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _desc(text: str) -> tuple:
    """Sort key that orders strings descending."""
    return tuple(-ord(ch) for ch in text) + (1,)


#: what an account key may hold before it goes into any CRM's query syntax
SAFE_ACCOUNT_KEY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def search_key(query: Query, region: str, log: logging.Logger, connector_id: str,
               account_pattern: re.Pattern = SAFE_ACCOUNT_KEY) -> tuple[str, str] | None:
    """The query as a value safe to search a CRM with: ``("phone", e164)`` or ``("account", key)``.

    None, logged with the value masked, when it cannot be searched safely: then the connector
    answers "not found" without a call rather than build a query from unchecked text.
    """
    if query.kind == "phone":
        e164 = to_e164(query.value, region)
        if e164 is None:
            log.info("connector=%s not a phone number (%s); not searched", connector_id, mask(query.value))
            return None
        return "phone", e164
    if query.kind == "account":
        key = query.value.strip()
        if not account_pattern.match(key):
            log.info("connector=%s account key has characters outside %s; not searched", connector_id, account_pattern.pattern)
            return None
        return "account", key
    return None


class KeySearch:
    """`lookup` for a connector that finds one record by phone or by account key, then answers
    from it (HubSpot, Zoho). The subclass provides:

    - ``_find_by_phone(e164, deadline, notes)`` and ``_find_by_account(key, deadline, notes)``:
      ``(kind, record)`` for the record found, or None;
    - ``_answer(kind, record, deadline, notes)``: the Match;
    - `account_key`: what an account key may hold before it goes into the CRM's query syntax.
    """

    account_key: re.Pattern = SAFE_ACCOUNT_KEY

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        key = search_key(query, self.context.region, self.log, self.id, self.account_key)
        if key is None:
            return None
        kind, value = key
        notes: list[str] = []
        find = self._find_by_phone if kind == "phone" else self._find_by_account
        found = find(value, deadline, notes)
        if found is None:
            return None
        record_kind, record = found
        return self._answer(record_kind, record, deadline, notes)
