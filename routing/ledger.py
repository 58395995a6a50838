"""Who is on a call right now, whose turn it is, who has waited longest: the busy ledger.

Fed by Exotel's popup URL (`/exotel/agent-event`: ``Status`` busy/free per attempt) and by the
Passthru applet (``completed`` frees the agent). `MemoryLedger` keeps it per process;
`RedisLedger` keeps it in Redis for every instance (``shared_state``), writes through to memory,
and answers from memory while Redis is down. `Moment` is what one plan reads: availability, the
busy ledger, the rotation and the idle clock, at one instant.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Mapping

from dialwhom.routing.availability import Availability, Unavailable

#: a ledger forgets numbers beyond this many (only numbers we offered are recorded)
MAX_AGENTS = 100_000
#: after a Redis failure, the ledger answers from memory this long before trying Redis again
REDIS_RETRY_S = 5.0


class MemoryLedger:
    """Busy agents (number -> since), the idle clock (number -> last call ended), team turns."""

    shared = False

    def __init__(self, busy_ttl_s: float):
        self.ttl = busy_ttl_s
        self._busy: dict[str, float] = {}
        self._idle: dict[str, float] = {}
        self._turns: dict[str, int] = {}
        self._lock = threading.Lock()
        #: bumped on every change, so a plan worked out for one version can be reused until the next
        self.version = 0

    def mark_busy(self, number: str, at: float) -> None:
        """`number` is being rung or talking since `at` (the first busy of a stretch counts)."""
        with self._lock:
            since = self._busy.get(number)
            if since is None or at - since >= self.ttl:
                if len(self._busy) >= MAX_AGENTS:
                    self._busy.clear()
                self._busy[number] = at
                self.version += 1

    def mark_free(self, number: str, at: float) -> None:
        """`number`'s call ended at `at`: free, and idle since then."""
        with self._lock:
            self._busy.pop(number, None)
            if len(self._idle) >= MAX_AGENTS:
                self._idle.clear()
            self._idle[number] = at
            self.version += 1

    def busy_map(self) -> Mapping[str, float]:
        return self._busy

    def idle_map(self) -> Mapping[str, float]:
        return self._idle

    def turn(self, team: str) -> int:
        """This new call's turn in `team`'s rotation (0, 1, 2, ...)."""
        with self._lock:
            n = self._turns.get(team, 0)
            self._turns[team] = n + 1
            return n


class RedisLedger(MemoryLedger):
    """The same ledger in Redis hashes under the shared prefix; memory when Redis is down."""

    shared = True

    def __init__(self, busy_ttl_s: float, state: Any):
        super().__init__(busy_ttl_s)
        self.state = state  # dialwhom.routing.shared.RedisState: client, prefix, warnings
        p = state.prefix
        self._busy_key, self._idle_key, self._turn_key = f"{p}busy", f"{p}idle", f"{p}turn:"
        self._retry_at = 0.0

    def _redis(self, what: str, fn, fallback):
        if time.monotonic() < self._retry_at:
            return fallback()
        try:
            return fn(self.state.client)
        except Exception as exc:
            self._retry_at = time.monotonic() + REDIS_RETRY_S
            self.state._warn(what, exc)
            return fallback()

    def mark_busy(self, number: str, at: float) -> None:
        super().mark_busy(number, at)

        def write(r):
            since = r.hget(self._busy_key, number)
            if since is None or at - float(since) >= self.ttl:
                r.hset(self._busy_key, number, repr(at))
        self._redis("write of the busy ledger", write, lambda: None)

    def mark_free(self, number: str, at: float) -> None:
        super().mark_free(number, at)

        def write(r):
            pipe = r.pipeline(transaction=False)
            pipe.hdel(self._busy_key, number)
            pipe.hset(self._idle_key, number, repr(at))
            pipe.execute()
        self._redis("write of the busy ledger", write, lambda: None)

    def busy_map(self) -> Mapping[str, float]:
        return self._redis("read of the busy ledger", lambda r: _floats(r.hgetall(self._busy_key)), super().busy_map)

    def idle_map(self) -> Mapping[str, float]:
        return self._redis("read of the idle clock", lambda r: _floats(r.hgetall(self._idle_key)), super().idle_map)

    def turn(self, team: str) -> int:
        local = super().turn  # counts on, so a Redis outage still rotates
        return self._redis("rotation", lambda r: int(r.incr(self._turn_key + team)) - 1, lambda: local(team))


def _floats(raw: Mapping[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in raw.items()}


class Moment:
    """What a plan reads at one instant `ts` (wall clock, seconds): who can take a call, who is busy."""

    __slots__ = ("availability", "ledger", "ts", "_busy", "_idle")

    def __init__(self, availability: Availability, ledger: MemoryLedger, ts: float):
        self.availability = availability
        self.ledger = ledger
        self.ts = ts
        self._busy = ledger.busy_map()  # one read per plan (one Redis round trip when shared)
        self._idle: Mapping[str, float] | None = None

    def unavailable(self, number: str, team: str | None) -> Unavailable | None:
        return self.availability.check(number, team, self.ts)

    def busy_since(self, number: str) -> float | None:
        """When `number` went busy, if it still is (a busy older than `busy_ttl_s` has lapsed)."""
        since = self._busy.get(number) if self._busy else None
        return since if since is not None and self.ts - since < self.ledger.ttl else None

    def turn(self, team: str) -> int:
        return self.ledger.turn(team)

    def idle_since(self, number: str) -> float:
        """When `number`'s last call ended; never seen: minus infinity (first in line)."""
        if self._idle is None:
            self._idle = self.ledger.idle_map()
        return self._idle.get(number, float("-inf"))

    def clock_time(self, ts: float) -> str:
        return self.availability.clock_time(ts)
