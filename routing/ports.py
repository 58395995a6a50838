"""What the routing service needs from the outside, declared here so the core depends on
nothing outward: the composition root (`dialwhom.integrations.runtime`) plugs real
connectors, Redis and the system clock into these."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Query

if TYPE_CHECKING:
    from dialwhom.routing.plan import Plan


class LookupSource(Protocol):
    """A connector as the service sees it (`dialwhom.integrations.base.Connector` is one).

    `lookup` makes one attempt within `deadline`, returns None for "not found", and raises
    only `dialwhom.routing.errors.ConnectorError` and its subclasses.
    """

    id: str
    supports: tuple[str, ...]

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None: ...


class SharedState(Protocol):
    """State several instances share (`dialwhom.routing.shared.RedisState`); every method
    answers quickly and never raises: an unreachable store behaves as an empty one."""

    errors: int

    def get_plan(self, call_sid: str) -> "Plan | None": ...

    def first_plan(self, call_sid: str, plan: "Plan") -> "Plan": ...

    def record_agent(self, caller: str, agent: str) -> None: ...

    def last_agent(self, caller: str) -> tuple[str, float] | None: ...

    def backlog(self) -> int:
        """Writes waiting for the store to come back (0 for a store that keeps none)."""
        ...

    def ping(self) -> bool: ...


class Clock(Protocol):
    """Where the service reads time: wall time for people and schedules, monotonic for ages."""

    def now(self) -> datetime: ...

    def time(self) -> float:
        """`now()` as seconds since the epoch (read on every answer: no datetime built)."""
        ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    # The C functions themselves, not methods wrapping them: read several times per answer,
    # and a Python-level call costs more than the clock read.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)
