"""A bulkhead per connector: at most N of its lookups in flight at once.

A CRM that is slow but answers (so the breaker never opens) would otherwise take one server
thread per waiting caller until every thread waits on it, and cached callers queue behind
them. With the bulkhead full, a new lookup is refused at once (`try_enter` is False) and the
caller is answered from stale data or the plan without the CRM, while the lookups already
in flight finish. It never blocks.

    >>> b = Bulkhead("crm", 1)
    >>> b.try_enter(), b.try_enter()
    (True, False)
    >>> b.leave(); b.try_enter()
    True
"""

from __future__ import annotations

import threading

#: lookups in flight per connector unless its config says `max_in_flight`
DEFAULT_MAX_IN_FLIGHT = 8


class Bulkhead:
    """A non-blocking counting limit, with counts for /readyz and /metrics."""

    __slots__ = ("name", "limit", "_lock", "in_flight", "refused")

    def __init__(self, name: str, limit: int = DEFAULT_MAX_IN_FLIGHT):
        self.name = name
        self.limit = max(1, int(limit))
        self._lock = threading.Lock()
        self.in_flight = 0
        self.refused = 0

    def try_enter(self) -> bool:
        """Take a place if one is free; False (counted) when the bulkhead is full."""
        with self._lock:
            if self.in_flight >= self.limit:
                self.refused += 1
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        """Give the place back (once per successful `try_enter`)."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def snapshot(self) -> dict:
        with self._lock:
            return {"in_flight": self.in_flight, "limit": self.limit, "refused": self.refused}
