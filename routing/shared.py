"""State shared by several dialwhom instances through Redis (optional).

With one instance, per-call plans and last agents live in memory. Behind a load balancer,
the repeat requests of one call may reach another instance; `RedisState` makes the first
plan of a call the plan of every instance (``SET NX``), and shares who last talked to whom.
Redis is never on the critical path: every call is bounded by a short timeout, and a Redis
failure is logged and answered from local state.

What this instance decides while Redis is away (call plans, last agents) waits in a bounded
backlog and is written, within its TTL, once Redis answers again (`replay`), so the
instances agree again: a plan goes in with ``SET NX`` (a plan another instance stored first
stays), a last agent only over an older one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from dialwhom.routing.plan import Plan, Step

log = logging.getLogger("dialwhom.shared")

_WARN_EVERY_S = 30.0
#: writes kept while Redis is away; the oldest go first beyond this
BACKLOG_MAX = 10_000


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
        # key -> (kind, value, expires at, wall clock); the newest write of a key wins
        self._backlog: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self._replaying = False
        self.replayed = 0

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
            self._caught_up()
            return plan_from_json(raw) if raw else None
        except Exception as exc:
            self._warn("read of a call plan", exc)
            return None

    def first_plan(self, call_sid: str, plan: Plan) -> Plan:
        """Store `plan` unless another instance stored one first; return the one stored."""
        key = f"{self.prefix}call:{call_sid}"
        try:
            if self.client.set(key, plan_to_json(plan), nx=True, ex=self.call_ttl):
                self._caught_up()
                return plan
            raw = self.client.get(key)
            self._caught_up()
            return plan_from_json(raw) if raw else plan
        except Exception as exc:
            self._warn("write of a call plan", exc)
            self._keep(key, "plan", plan_to_json(plan), self.call_ttl)
            return plan

    def record_agent(self, caller: str, agent: str) -> None:
        key, value = f"{self.prefix}agent:{caller}", json.dumps([agent, time.time()])
        try:
            self.client.set(key, value, ex=self.agent_ttl)
            self._caught_up()
        except Exception as exc:
            self._warn("write of a last agent", exc)
            self._keep(key, "agent", value, self.agent_ttl)

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
            up = bool(self.client.ping())
        except Exception:
            return False
        if up:
            self._caught_up()
        return up

    # -- the backlog of writes made while Redis was away -----------------------------------

    def _keep(self, key: str, kind: str, value: str, ttl_s: float) -> None:
        with self._lock:
            self._backlog.pop(key, None)
            self._backlog[key] = (kind, value, time.time() + ttl_s)
            while len(self._backlog) > BACKLOG_MAX:
                self._backlog.popitem(last=False)

    def backlog(self) -> int:
        """Writes waiting for Redis to come back."""
        return len(self._backlog)

    def _caught_up(self) -> None:
        """Redis answered: replay the backlog, once, off the answer path (a daemon thread)."""
        if not self._backlog or self._replaying:
            return
        with self._lock:
            if self._replaying:
                return
            self._replaying = True
        threading.Thread(target=self._replay_then_release, name="dialwhom-redis-replay", daemon=True).start()

    def _replay_then_release(self) -> None:
        try:
            self.replay()
        finally:
            self._replaying = False

    def replay(self) -> int:
        """Write the backlog, oldest first, each with what is left of its TTL; stops at the first
        failure (the rest waits for the next time Redis answers). Returns how many were written."""
        written = 0
        while True:
            with self._lock:
                if not self._backlog:
                    break
                key, (kind, value, expires) = self._backlog.popitem(last=False)
            ttl_ms = int((expires - time.time()) * 1000)
            if ttl_ms <= 0:
                continue  # expired while Redis was away: nobody may ask for it any more
            try:
                if kind == "plan":
                    self.client.set(key, value, nx=True, px=ttl_ms)  # a plan stored first stays
                else:
                    current = self.client.get(key)
                    if current is None or json.loads(current)[1] < json.loads(value)[1]:
                        self.client.set(key, value, px=ttl_ms)
            except Exception as exc:
                with self._lock:  # back at the front, unless a newer write of the key came meanwhile
                    if key not in self._backlog:
                        self._backlog[key] = (kind, value, expires)
                        self._backlog.move_to_end(key, last=False)
                self._warn("replay of the backlog", exc)
                break
            written += 1
        with self._lock:
            self.replayed += written
        if written:
            log.warning("redis is back: wrote %d plan(s)/last agent(s) decided while it was away", written)
        return written
