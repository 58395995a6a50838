"""State shared by several dialwhom instances through Redis (optional).

With one instance, per-call plans and last agents live in memory. Behind a load balancer,
the repeat requests of one call may reach another instance; `RedisState` makes the first
plan of a call the plan of every instance (``SET NX``), and shares who last talked to whom.
Redis is never on the critical path: every call is bounded by a short timeout, and a Redis
failure is logged and answered from local state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from dialwhom.routing.plan import Plan, Step

log = logging.getLogger("dialwhom.shared")

_WARN_EVERY_S = 30.0


def plan_to_json(plan: Plan) -> str:
    return json.dumps({
        "steps": [[s.number, s.why] for s in plan.steps],
        "owner_known": plan.owner_known,
        "team": plan.team,
        "notes": list(plan.notes),
        "skips": list(plan.skips),
        "owner": plan.owner,
    })


def plan_from_json(text: str | bytes) -> Plan:
    data = json.loads(text)
    return Plan(
        tuple(Step(n, why) for n, why in data["steps"]),
        bool(data.get("owner_known")),
        data.get("team"),
        tuple(data.get("notes") or ()),
        tuple(data.get("skips") or ()),
        data.get("owner") or "",
    )


class RedisState:
    """Call plans and last agents in Redis, keys under `prefix`."""

    def __init__(self, url: str, *, prefix: str = "dialwhom:", timeout_s: float = 0.1, call_ttl_s: float = 3600, agent_ttl_s: float = 30 * 86400, client: Any = None):
        if client is None:
            import redis  # imported only when configured

            client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30)
        self.client = client
        self.prefix = prefix
        self.call_ttl = max(1, int(call_ttl_s))
        self.agent_ttl = max(1, int(agent_ttl_s))
        self._last_warning = 0.0
        self._lock = threading.Lock()
        self.errors = 0

    def _warn(self, what: str, exc: Exception) -> None:
        with self._lock:
            self.errors += 1
            now = time.monotonic()
            if now - self._last_warning < _WARN_EVERY_S:
                return
            self._last_warning = now
        log.warning("redis %s failed (%s: %s); answering from this instance's memory", what, type(exc).__name__, exc)

    def get_plan(self, call_sid: str) -> Plan | None:
        try:
            raw = self.client.get(f"{self.prefix}call:{call_sid}")
            return plan_from_json(raw) if raw else None
        except Exception as exc:
            self._warn("read of a call plan", exc)
            return None

    def first_plan(self, call_sid: str, plan: Plan) -> Plan:
        """Store `plan` unless another instance stored one first; return the one stored."""
        key = f"{self.prefix}call:{call_sid}"
        try:
            if self.client.set(key, plan_to_json(plan), nx=True, ex=self.call_ttl):
                return plan
            raw = self.client.get(key)
            return plan_from_json(raw) if raw else plan
        except Exception as exc:
            self._warn("write of a call plan", exc)
            return plan

    def record_agent(self, caller: str, agent: str) -> None:
        try:
            self.client.set(f"{self.prefix}agent:{caller}", json.dumps([agent, time.time()]), ex=self.agent_ttl)
        except Exception as exc:
            self._warn("write of a last agent", exc)

    def last_agent(self, caller: str) -> tuple[str, float] | None:
        try:
            raw = self.client.get(f"{self.prefix}agent:{caller}")
        except Exception as exc:
            self._warn("read of a last agent", exc)
            return None
        if not raw:
            return None
        agent, when = json.loads(raw)
        return agent, time.time() - when

    def forget_caller(self, caller: str) -> int:
        """Delete what Redis holds about one caller (the last agent); raises if Redis fails."""
        return int(self.client.delete(f"{self.prefix}agent:{caller}"))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False
