"""Who last talked to a caller, learnt from Exotel's Passthru applet (docs/exotel.md §6).

Used when the CRM has no owner for a caller: "last-agent" stickiness, as Exotel's own sticky
agent feature does, for `last_agent_days`.
"""

from __future__ import annotations

import time

from dialwhom.routing.cache import TTLMap


class LastAgents:
    def __init__(self, days: float, maxsize: int = 100_000):
        self.enabled = days > 0
        self._agents = TTLMap(maxsize, max(days, 0.001) * 86400.0)

    def record(self, caller: str, agent: str) -> None:
        if self.enabled:
            self._agents[caller] = (agent, time.time())

    def get(self, caller: str | None) -> tuple[str, float] | None:
        """(agent number, age in seconds) or None."""
        if not self.enabled or not caller:
            return None
        hit = self._agents.get(caller)
        return None if hit is None else (hit[0], time.time() - hit[1])

    def forget(self, caller: str) -> bool:
        """Drop what we learnt about `caller`; True if there was something."""
        had = self._agents.get(caller) is not None
        self._agents.pop(caller)
        return had

    def drop(self, keep) -> int:
        """Forget the callers `keep` rejects (see `TTLMap.drop`)."""
        return len(self._agents.drop(keep))

    def __len__(self) -> int:
        return len(self._agents)
