"""A circuit breaker per connector.

After `failures` consecutive failures the breaker opens: the connector is skipped (answers come
from cache or fallback at once) for `cooldown_s`. Then one probe is let through (half-open);
its success closes the breaker, its failure opens it for another cool-down.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("dialwhom.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, name: str, failures: int = 5, cooldown_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe at a time."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == HALF_OPEN and not self._probing:
                self._probing = True
                log.info("breaker=%s half-open: letting one probe through", self.name)
                return True
            return False

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.warning("breaker=%s closed: probe succeeded", self.name)
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or (self._opened_at is None and self._failures >= self.threshold):
                log.warning("breaker=%s open for %.0fs after %d consecutive failures", self.name, self.cooldown_s, self._failures)
                self._opened_at = self._clock()
                self._probing = False

    def hold(self, seconds: float) -> None:
        """Open now for `seconds` (a Retry-After): asking again sooner only spends the quota."""
        with self._lock:
            log.warning("breaker=%s open for %.0fs: the remote asked us to retry after that", self.name, seconds)
            self._opened_at = self._clock() - self.cooldown_s + seconds
            self._probing = False

    def snapshot(self) -> dict:
        with self._lock:
            state = self._state()
            left = 0.0 if self._opened_at is None else max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
            return {"state": state, "consecutive_failures": self._failures, "reopens_in_s": round(left, 1)}
