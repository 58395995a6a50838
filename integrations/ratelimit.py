"""A vendor's request limit, kept on our side so a lookup never meets the vendor's 429.

`RateLimiter` is a token bucket: `rate` requests per `per_s` seconds, bursts up to `burst`.
`acquire(deadline)` takes a slot now, or waits for one only when the wait still leaves time
for the request itself; otherwise it raises `RateLimited` at once, and the framework answers
from its cache or the plan without the CRM. A wait the budget cannot afford is never spent.

With `redis` (the client a connector finds in `context.redis` when `shared_state` is set) the
bucket lives in Redis and every instance draws from it, because vendors count per account,
not per process. The bucket there is one hash updated by a Lua script, atomically, on Redis's
clock. If Redis fails the limiter falls back to its own bucket, which keeps this process
within the limit but not the fleet; it says so once in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from dialwhom.integrations.http import MIN_ATTEMPT_S
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import RateLimited

log = logging.getLogger("dialwhom.ratelimit")

# KEYS[1] bucket hash; ARGV: capacity, refill per ms, ttl ms, max wait ms.
# Takes one token (possibly into debt, for a caller that will wait) and answers the wait in ms;
# -1 when the wait would exceed ARGV[4], in which case nothing is taken.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cap = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or cap)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(cap, tokens + (now - at) * per_ms)
local wait = 0
if tokens < 1 then wait = math.ceil((1 - tokens) / per_ms) end
if wait > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {-1, math.ceil((1 - tokens) / per_ms)}
end
redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {wait, 0}
"""


class RateLimiter:
    """Token bucket of `rate` requests per `per_s` seconds (see the module docstring)."""

    def __init__(
        self,
        name: str,
        rate: float,
        per_s: float,
        *,
        burst: float | None = None,
        redis: Any = None,
        key_prefix: str = "dialwhom:",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0 or per_s <= 0:
            raise ValueError("rate and per_s must be positive")
        self.name = name
        self.capacity = float(burst if burst is not None else rate)
        self._per_s = rate / per_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._at = clock()
        self._redis = redis
        self._key = f"{key_prefix}ratelimit:{name}"
        #: how long an idle bucket stays in Redis (long enough to refill twice)
        self._ttl_ms = int(max(60.0, 2 * self.capacity / self._per_s) * 1000)
        self._script = None if redis is None else redis.register_script(_TAKE)
        self._redis_failed_at: float | None = None
        #: requests refused because the wait would not fit (for metrics and the console)
        self.refused = 0

    def acquire(self, deadline: Deadline, *, reserve_s: float = MIN_ATTEMPT_S) -> float:
        """Take a slot, waiting only if the request still fits afterwards; the seconds waited.

        Raises `RateLimited` (with `retry_after`) when the wait would leave less than
        `reserve_s` of the deadline for the request itself.
        """
        max_wait = max(0.0, deadline.remaining() - reserve_s)
        wait = self._take_shared(max_wait) if self._script is not None else None
        if wait is None:
            wait = self._take_local(max_wait)
        if wait < 0:
            self.refused += 1
            raise RateLimited(f"{self.name}: local rate limit reached; no slot within the time left", retry_after=-wait)
        if wait > 0:
            self._sleep(wait)
        return wait

    @property
    def headroom(self) -> float:
        """Requests that could start now without waiting (this process's view)."""
        with self._lock:
            return self._refill(self._clock())

    def _refill(self, now: float) -> float:
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self._per_s)
        self._at = now
        return self._tokens

    def _take_local(self, max_wait: float) -> float:
        """Seconds to wait for the slot taken, or minus the seconds needed when refused."""
        with self._lock:
            tokens = self._refill(self._clock())
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self._per_s
            if wait > max_wait:
                return -max(wait, 1e-3)
            self._tokens = tokens - 1  # into debt when waiting: the next caller queues behind
            return wait

    def _take_shared(self, max_wait: float) -> float | None:
        """As `_take_local`, on the Redis bucket; None when Redis cannot be used right now."""
        if self._redis_failed_at is not None and self._clock() - self._redis_failed_at < 5.0:
            return None
        try:
            wait_ms, need_ms = self._script(
                keys=[self._key],
                args=[self.capacity, self._per_s / 1000.0, self._ttl_ms, int(max_wait * 1000)],
            )
        except Exception as exc:  # any Redis failure: keep limiting, locally
            if self._redis_failed_at is None:
                log.warning("rate limit %s: Redis unavailable (%s); limiting this process only", self.name, type(exc).__name__)
            self._redis_failed_at = self._clock()
            return None
        if self._redis_failed_at is not None:
            log.info("rate limit %s: Redis back; the limit is shared again", self.name)
            self._redis_failed_at = None
        if int(wait_ms) < 0:
            return -max(int(need_ms) / 1000.0, 1e-3)
        return int(wait_ms) / 1000.0
