"""The most recent decisions and per-minute tallies of them, for the operator console.

`RoutingService.answer` hands every decision to `RecentDecisions.record`, which only appends
to two deques (the answer path pays well under a microsecond). Entries are turned into
masked, JSON-ready dicts when someone reads them; nothing kept here holds a full number.
With a Redis client (``shared_state``) a background thread pushes the masked entries to one
capped list (LPUSH + LTRIM) that every instance reads, so each shows the same list; when
Redis is down, each instance shows its own buffer.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections import deque
from typing import Any, Iterable

from dialwhom.routing.redact import mask, scrub
from dialwhom.routing.ports import SystemClock

log = logging.getLogger("dialwhom.recent")

#: decisions kept (locally and in the shared Redis list)
RECENT_SIZE = 200
#: per-minute buckets kept for the charts: one day
SERIES_MINUTES = 24 * 60
#: queued tallies applied by the request that queues the next one
TALLY_AT = 256
#: connector outcomes that are no CRM call (no latency to chart)
_NOT_CALLS = frozenset({"cache-hit", "cache-negative", "breaker-open"})
#: how often the pusher sends queued entries to Redis
PUSH_EVERY_S = 0.25


class Bucket:
    """One minute of answers: counts per path, owner rung first, CRM call times."""

    __slots__ = ("paths", "answers", "owner_first", "routed", "crm_ms", "crm_calls", "crm_max_ms")

    def __init__(self) -> None:
        self.paths: dict[str, int] = {}
        self.answers = 0
        self.owner_first = 0
        self.routed = 0  # answers that are not repeats of a call's first plan
        self.crm_ms = 0.0
        self.crm_calls = 0
        self.crm_max_ms = 0.0


class RecentDecisions:
    """A bounded ring of recent decisions plus per-minute tallies (see the module doc)."""

    def __init__(self, *, size: int = RECENT_SIZE, redis: Any = None, prefix: str = "dialwhom:", clock: Any = None):
        self._ring: deque[list] = deque(maxlen=size)
        self._pending: deque[tuple] = deque()
        self._push: deque[list] = deque(maxlen=size)
        self._lock = threading.Lock()
        clock = clock or SystemClock()
        # wall time read as an offset from the monotonic clock: a third of the cost of now()
        # on every answer, and a day's drift from NTP is far below what the console shows
        self._offset = clock.time() - clock.monotonic()
        self._mono = clock.monotonic
        self._ids = itertools.count(1)  # next() is atomic under the GIL: no lock on the answer path
        #: distinguishes this process's entry ids from other instances' in the shared list
        self._instance = os.urandom(3).hex()
        self.size = size
        self.series: dict[int, Bucket] = {}
        self.redis = redis
        self.key = f"{prefix}recent"
        self.redis_errors = 0
        self._wake = threading.Event()
        self._pusher: threading.Thread | None = None
        self._closed = False

    # -- the answer path -----------------------------------------------------------------------

    def record(self, endpoint: str, req: Any, decision: Any) -> None:
        """Remember one answer (cheap: the entry is formatted when read)."""
        item = [next(self._ids), self._offset + self._mono(), endpoint, req, decision, None]
        self._ring.append(item)
        self._pending.append(item)
        if len(self._pending) >= TALLY_AT:
            self._tally(wait=False)
        if self.redis is not None:
            self._push.append(item)
            if self._pusher is None:
                self._start_pusher()

    # -- reading ---------------------------------------------------------------------------------

    def entries(self, *, path: str = "", team: str = "", connector: str = "", limit: int | None = None) -> list[dict]:
        """Newest first, masked; the shared list when Redis answers, else this instance's."""
        items = self._shared() if self.redis is not None else None
        if items is None:
            items = [self._format(i) for i in reversed(self._ring)]
        out = [e for e in items if _matches(e, path, team, connector)]
        return out[:limit] if limit else out

    def get(self, entry_id: str) -> dict | None:
        """One entry by its id (shared list first, then this instance's ring)."""
        for e in (self._shared() or []):
            if e["id"] == entry_id:
                return e
        for item in self._ring:
            e = self._format(item)
            if e["id"] == entry_id:
                return e
        return None

    def buckets(self) -> dict[int, Bucket]:
        """The per-minute tallies, keyed by minute since the epoch (everything queued applied)."""
        self._tally(wait=True)
        return self.series

    def _format(self, item: list) -> dict:
        if item[5] is None:
            item[5] = describe(item, self._instance)
        return item[5]

    def _shared(self) -> list[dict] | None:
        try:
            raw = self.redis.lrange(self.key, 0, self.size - 1)
        except Exception as exc:
            self._redis_failed("read", exc)
            return None
        out = []
        for r in raw:
            try:
                out.append(json.loads(r))
            except ValueError:
                continue
        return out

    # -- tallies ---------------------------------------------------------------------------------

    def _tally(self, *, wait: bool) -> None:
        if not self._lock.acquire(blocking=wait):
            return
        try:
            series, pending = self.series, self._pending
            b, b_minute = None, None  # a batch is mostly one minute: its bucket found once
            while pending:
                _, ts, _, _, decision, _ = pending.popleft()
                minute = int(ts // 60)
                if minute != b_minute:
                    b, b_minute = series.get(minute), minute
                    if b is None:
                        b = series[minute] = Bucket()
                        if len(series) > SERIES_MINUTES:
                            for old in sorted(series)[: len(series) - SERIES_MINUTES]:
                                del series[old]
                trace, plan = decision.trace, decision.plan
                path, paths = trace.path, b.paths
                b.answers += 1
                paths[path] = paths.get(path, 0) + 1
                if path != "repeat":
                    b.routed += 1
                    if plan.steps and _is_owner(plan.steps[0].why):
                        b.owner_first += 1
                for s in trace.steps:
                    if s.outcome not in _NOT_CALLS:
                        b.crm_calls += 1
                        b.crm_ms += s.ms
                        b.crm_max_ms = max(b.crm_max_ms, s.ms)
        finally:
            self._lock.release()

    # -- the shared list -------------------------------------------------------------------------

    def _start_pusher(self) -> None:
        with self._lock:
            if self._pusher is None:
                self._pusher = threading.Thread(target=self._push_loop, name="dialwhom-recent", daemon=True)
                self._pusher.start()

    def _push_loop(self) -> None:
        while not self._closed:
            self._wake.wait(PUSH_EVERY_S)
            self.flush()

    def flush(self) -> None:
        """Send the queued entries to the shared list now (the pusher does it every 0.25 s)."""
        batch = []
        while self._push:
            batch.append(json.dumps(self._format(self._push.popleft())))
        if not batch:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.lpush(self.key, *batch)
            pipe.ltrim(self.key, 0, self.size - 1)
            pipe.execute()
        except Exception as exc:
            self._redis_failed("write", exc)

    def _redis_failed(self, what: str, exc: Exception) -> None:
        self.redis_errors += 1
        if self.redis_errors in (1, 100) or self.redis_errors % 1000 == 0:
            log.warning("redis %s of recent decisions failed (%s); the console shows this instance's own", what, type(exc).__name__)

    def close(self) -> None:
        self._closed = True
        self._wake.set()


def describe(item: list, instance: str = "-") -> dict:
    """One decision as the console shows it: every number masked, free text scrubbed."""
    seq, ts, endpoint, req, decision, _ = item
    trace, plan = decision.trace, decision.plan
    steps = [{"number": mask(s.number), "why": s.why} for s in plan.steps]
    return {
        "id": f"{instance}-{seq}",
        "time": ts,
        "endpoint": endpoint,
        "call": scrub(trace.call_sid or ""),
        "caller": mask(req.caller or req.caller_raw) if (req.caller or req.caller_raw) else "-",
        "line": mask(req.line) if req.line else None,
        "path": trace.path,
        "key": trace.key,
        "connector": trace.connector,
        "team": plan.team,
        "first": steps[0] if steps else None,
        "plan": steps,
        "owner_first": bool(plan.steps) and _is_owner(plan.steps[0].why),
        "lookups": [{"connector": s.connector, "key": s.key, "outcome": s.outcome, "ms": round(s.ms, 1), "detail": scrub(s.detail)} for s in trace.steps],
        # availability (routing/plan.py) builds Trace.skips from config and masked numbers
        # only, and explain() scrubs what connectors wrote: scrubbing again would mask dates
        "skips": list(getattr(trace, "skips", ())),
        "notes": [scrub(n) for n in trace.notes],
        "explain": trace.explain(),
        "elapsed_ms": round(trace.elapsed_ms, 1),
        "connectors": sorted({s.connector for s in trace.steps}),
    }


def _is_owner(why: str) -> bool:
    return why == "owner" or why.startswith("delegate")


def _matches(e: dict, path: str, team: str, connector: str) -> bool:
    return (not path or e.get("path") == path) and (not team or e.get("team") == team) and (not connector or connector in e.get("connectors", ()))


def minutes(series: dict[int, Bucket], now: float, count: int, width: int = 1) -> list[tuple[int, Bucket]]:
    """`count` consecutive buckets of `width` minutes ending at `now`, oldest first, merged."""
    end = int(now // 60)
    out = []
    for i in range(count - 1, -1, -1):
        first = end - (i + 1) * width + 1
        out.append((first, merge(series.get(m) for m in range(first, first + width))))
    return out


def merge(buckets: Iterable[Bucket | None]) -> Bucket:
    total = Bucket()
    for b in buckets:
        if b is None:
            continue
        for p, n in b.paths.items():
            total.paths[p] = total.paths.get(p, 0) + n
        total.answers += b.answers
        total.owner_first += b.owner_first
        total.routed += b.routed
        total.crm_ms += b.crm_ms
        total.crm_calls += b.crm_calls
        total.crm_max_ms = max(total.crm_max_ms, b.crm_max_ms)
    return total
