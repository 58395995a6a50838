"""One deadline per request, from a monotonic clock.

The caller waits in silence while we decide, and Exotel gives up after 10 s, so every timeout
and every wait below the request is clipped to what is left of one budget::

    >>> d = Deadline(2.0)
    >>> 0 < d.remaining() <= 2.0
    True
    >>> d.clip(30.0) <= 2.0
    True
"""

from __future__ import annotations

import time
from typing import Callable


class Deadline:
    """A point in monotonic time by which an answer must be ready."""

    __slots__ = ("_clock", "started", "expires_at")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic, started: float | None = None):
        """`seconds` from `started` (a reading of `clock`, e.g. when the request reached the
        server), or from now."""
        self._clock = clock
        self.started = clock() if started is None else started
        self.expires_at = self.started + max(0.0, seconds)

    @classmethod
    def from_ms(cls, ms: float, *, clock: Callable[[], float] = time.monotonic) -> "Deadline":
        return cls(ms / 1000.0, clock=clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - self._clock())

    def elapsed_ms(self) -> float:
        return (self._clock() - self.started) * 1000.0

    @property
    def expired(self) -> bool:
        return self._clock() >= self.expires_at

    def clip(self, seconds: float | None) -> float:
        """`seconds` or the time left, whichever is smaller (None means 'no limit of its own')."""
        left = self.remaining()
        return left if seconds is None else max(0.0, min(seconds, left))

    def child(self, seconds: float) -> "Deadline":
        """A deadline no later than this one and at most `seconds` from now."""
        d = Deadline.__new__(Deadline)
        d._clock = self._clock
        d.started = self._clock()
        d.expires_at = min(self.expires_at, d.started + max(0.0, seconds))
        return d

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"
