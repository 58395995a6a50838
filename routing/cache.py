"""Caches: connector answers (fresh, negative, stale-if-error), per-call plans, single-flight.

All bounded and thread-safe. Keys are ``<connector id>|<kind>:<value>`` and hold no secrets.
The caches on the answer path (`LookupCache`, `CallPlans`) are `TTLMap`s read and written
without a lock (see there); `TTLMemo` in integrations/support.py (owners, teams) uses
cachetools.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Callable, Generic, Hashable, TypeVar

from dialwhom.routing.config import CacheSettings
from dialwhom.routing.model import Match, Owner

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cached:
    match: Match | None
    stored_at: float  # wall clock, for ages shown to people


class LookupCache:
    """Connector answers: positive (long), negative (short), and the last known owner (stale)."""

    def __init__(self, settings: CacheSettings, *, timer: Callable[[], float] = time.monotonic):
        self._positive = TTLMap(settings.max_entries, max(settings.positive_ttl_s, 0.001), timer)
        self._negative = TTLMap(max(10, settings.max_entries // 4), max(settings.negative_ttl_s, 0.001), timer)
        self._stale = TTLMap(settings.max_entries, max(settings.stale_max_age_s, 0.001), timer)
        self._enabled = settings.positive_ttl_s > 0, settings.negative_ttl_s > 0
        # A team has far fewer owners than customers: one Owner object (and its strings) per
        # owner instead of one per cached customer. Bounded like the cache itself.
        self._owners: dict[Owner, Owner] = {}
        self._owners_max = settings.max_entries

    def fresh(self, key: str) -> Cached | None:
        """A fresh answer (found or not found), or None if we must ask the connector."""
        hit = self._positive.get(key)
        return hit if hit is not None else self._negative.get(key)

    def stale(self, key: str) -> Cached | None:
        """The last owner we knew for this key, for answering while the connector fails."""
        return self._stale.get(key)

    def put(self, key: str, match: Match | None) -> None:
        if match is not None:
            match = self._share_owner(match)
        entry = Cached(match, time.time())
        if match is None:
            if self._enabled[1]:
                self._negative[key] = entry
            self._positive.pop(key)
            # the CRM no longer knows this customer: an outage must not revive the old owner
            self._stale.pop(key)
        else:
            if self._enabled[0]:
                self._positive[key] = entry
            self._negative.pop(key)
            self._stale[key] = entry

    def _share_owner(self, match: Match) -> Match:
        owner = self._owners.get(match.owner)
        if owner is None:
            if len(self._owners) >= self._owners_max:
                self._owners.clear()
            owner = self._owners.setdefault(match.owner, match.owner)
        return match if owner is match.owner else replace(match, owner=owner)

    def __len__(self) -> int:
        return len(self._positive) + len(self._negative)

    def clear(self) -> None:
        for m in (self._positive, self._negative, self._stale):
            m.clear()

    def drop(self, keep: Callable[[str], bool]) -> int:
        """Forget every answer (stale ones too) whose key `keep` rejects; how many entries went."""
        return sum(len(m.drop(keep)) for m in (self._positive, self._negative, self._stale))

    def forget_connector(self, connector_id: str) -> int:
        """Drop every answer of one connector (its settings or its data changed); how many went."""
        prefix = f"{connector_id}|"
        return self.drop(lambda key: not key.startswith(prefix))

    def forget_key(self, query_key: str) -> int:
        """Drop one customer's answers (a `Query.cache_key()`) from every connector."""
        suffix = f"|{query_key}"
        return self.drop(lambda key: not key.endswith(suffix))


class SingleFlight(Generic[T]):
    """Concurrent callers of one key share one running call.

    `start(key, launch)` returns the future in flight for `key`, or the one `launch()` returns
    (which then becomes the one in flight until it completes).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, Future] = {}

    def start(self, key: Hashable, launch: Callable[[], "Future[T]"]) -> tuple["Future[T]", bool]:
        """(future, started_here)."""
        with self._lock:
            fut = self._inflight.get(key)
            if fut is not None:
                return fut, False
            fut = launch()
            self._inflight[key] = fut
        fut.add_done_callback(lambda f, k=key: self._done(k, f))
        return fut, True

    def running(self, key: Hashable) -> "Future[T] | None":
        """The call in flight for `key`, if any."""
        with self._lock:
            return self._inflight.get(key)

    def _done(self, key: Hashable, fut: Future) -> None:
        with self._lock:
            if self._inflight.get(key) is fut:
                del self._inflight[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._inflight)


class CallPlans(Generic[T]):
    """The first answer per CallSid, returned unchanged on every repeat request of that call.

    The common case, one first request per call, takes no lock: single dict operations are
    atomic under the GIL, and with many requests in flight on one worker a lock hand-off costs
    more than the work it guards. The lock serialises only the rare second request that has to
    wait for the first one's plan, and a claim given up.
    """

    def __init__(self, maxsize: int, ttl_s: float, *, timer: Callable[[], float] = time.monotonic,
                 pack: Callable[[T], Any] = lambda p: p, unpack: Callable[[Any], T] = lambda p: p):
        self._lock = threading.Lock()
        self._plans = TTLMap(maxsize, ttl_s, timer)
        # CallSid -> the claiming request's token, or an Event once another request waits
        self._pending: dict[str, object] = {}
        self._pack, self._unpack = pack, unpack

    def get(self, call_sid: str) -> T | None:
        packed = self._plans.get(call_sid)
        return None if packed is None else self._unpack(packed)

    def claim(self, call_sid: str) -> tuple[T | None, threading.Event | None, bool]:
        """(plan if known, event to wait on if another request is computing it, claimed)."""
        plan = self.get(call_sid)
        if plan is not None:
            return plan, None, False
        token = object()
        if self._pending.setdefault(call_sid, token) is token:  # atomic: one request wins
            plan = self.get(call_sid)  # published between our two reads: not ours to decide
            if plan is None:
                return None, None, True
            self._release(call_sid)
            return plan, None, False
        return self._wait_for(call_sid)

    def _wait_for(self, call_sid: str) -> tuple[T | None, threading.Event | None, bool]:
        with self._lock:
            current = self._pending.get(call_sid)
            if current is None or isinstance(current, threading.Event):
                event = current
            else:
                event = self._pending[call_sid] = threading.Event()
        plan = self.get(call_sid)  # the plan may have landed before our event did
        if plan is not None:
            if event is not None:
                event.set()
                self._release(call_sid)
            return plan, None, False
        return None, event, False  # event None: the claim was given up; decide unclaimed

    def _release(self, call_sid: str) -> None:
        with self._lock:
            waiting = self._pending.pop(call_sid, None)
        if isinstance(waiting, threading.Event):
            waiting.set()

    def publish(self, call_sid: str, plan: T | None) -> None:
        """Store the claimed call's plan (None: give up the claim) and wake the waiters."""
        if plan is None:
            self._release(call_sid)
            return
        self._plans[call_sid] = self._pack(plan)  # stored before the pop: waiters re-read it
        waiting = self._pending.pop(call_sid, None)
        if isinstance(waiting, threading.Event):
            waiting.set()

    def __len__(self) -> int:
        return len(self._plans)


class TTLMap:
    """A bounded map whose entries all live `ttl_s`, read and written without a lock.

    With many requests in flight on one worker, every lock on the answer path becomes a GIL
    hand-off that costs more than the lookup it guards (bench/RESULTS.md), and cachetools'
    caches need one (a read may expire entries). Here each read and write is a single dict
    operation, atomic under the GIL. Entries are kept in insertion order (a re-put moves to
    the end), which is also expiry order, so once the map is a tenth over its size the oldest,
    and any expired, go first. A lock serialises only that eviction.
    """

    def __init__(self, maxsize: int, ttl_s: float, timer: Callable[[], float] = time.monotonic):
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._maxsize = maxsize
        self._limit = maxsize + max(1, maxsize // 10)
        self._ttl = ttl_s
        self._timer = timer
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        hit = self._data.get(key)
        if hit is None or hit[0] <= self._timer():
            return None
        return hit[1]

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self._data.pop(key, None)  # a re-put goes to the end: it is now the newest
        self._data[key] = (self._timer() + self._ttl, value)
        if len(self._data) > self._limit:
            self._evict()

    def pop(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def drop(self, keep: Callable[[Hashable], bool]) -> list[Hashable]:
        """Remove the entries whose key `keep` rejects; their keys (off the answer path:
        reloads, forget)."""
        gone = [key for key in list(self._data) if not keep(key)]
        for key in gone:
            self._data.pop(key, None)
        return gone

    def _evict(self) -> None:
        with self._lock:
            now = self._timer()
            keys = list(self._data)  # list(dict) copies the keys in C, no other thread in between
            excess = len(keys) - self._maxsize
            for key in keys:
                hit = self._data.get(key)
                if excess <= 0 and (hit is None or hit[0] > now):
                    break
                self._data.pop(key, None)
                excess -= 1

    def __len__(self) -> int:
        now = self._timer()
        return sum(1 for expires, _ in list(self._data.values()) if expires > now)
