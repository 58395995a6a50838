"""The routing service: from an Exotel request to a dial plan, inside one deadline.

For each customer key (in ``lookup_order``) the configured connectors are asked concurrently;
the highest-priority connector that finds the customer in time wins. Answers are cached
(fresh, negative, and stale-if-error), concurrent lookups of one key share one call, a
circuit breaker skips a failing connector, and the first plan of each call is returned on
every repeat request for that call. Every answer carries a `Trace`.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Sequence

from dialwhom.routing.availability import Availability, team_policy
from dialwhom.routing.breaker import CircuitBreaker
from dialwhom.routing.bulkhead import DEFAULT_MAX_IN_FLIGHT, Bulkhead
from dialwhom.routing.cache import CallPlans, LookupCache, SingleFlight
from dialwhom.routing.config import Settings
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import BadResponse, ConnectorError, ConnectorTimeout
from dialwhom.routing.history import LastAgents
from dialwhom.routing.ledger import MemoryLedger, Moment, RedisLedger
from dialwhom.routing.metrics import Metrics
from dialwhom.routing.model import Match, Query
from dialwhom.routing.phones import parse_config_number
from dialwhom.routing.ports import Clock, LookupSource, SharedState, SystemClock
from dialwhom.routing.plan import Plan, arrange, build_plan, candidates, pack_plan, unpack_plan
from dialwhom.routing.recent import RecentDecisions
from dialwhom.routing.redact import mask
from dialwhom.routing.request import ExotelRequest
from dialwhom.routing.trace import Trace

log = logging.getLogger("dialwhom.decision")

#: plans remembered by `_plan_for` before the memo starts afresh
PLAN_MEMO_SIZE = 4096
#: the longest a Retry-After may keep a connector's breaker open
MAX_HOLD_S = 300.0
#: a lookup is not started with less time than this left
MIN_LOOKUP_S = 0.02
#: trace outcomes of a connector not asked (see `_admit`)
BULKHEAD_FULL = "bulkhead-full"
NO_TIME = "no-time-left"
_NOT_ASKED = {
    "breaker-open": "skipped while the connector recovers",
    BULKHEAD_FULL: "too many lookups in flight to this connector; answered without it",
    NO_TIME: "the budget was spent before a lookup could start (server queue)",
}


@dataclass(slots=True)
class Decision:
    plan: Plan
    trace: Trace


@dataclass(frozen=True)
class _Found:
    match: Match | None
    ms: float


class RoutingService:
    def __init__(self, settings: Settings, connectors: Sequence[LookupSource], *, max_workers: int = 32, metrics: Metrics | None = None, shared: SharedState | None = None, clock: Clock | None = None):
        self.settings = settings
        self.connectors = list(connectors)
        #: the one clock the service reads (tests inject a fake one)
        self.clock: Clock = clock or SystemClock()
        self.cache = LookupCache(settings.cache, timer=self.clock.monotonic)
        self.calls: CallPlans[Plan] = CallPlans(settings.cache.call_max_entries, settings.cache.call_ttl_s, timer=self.clock.monotonic, pack=pack_plan, unpack=unpack_plan)
        self.flight: SingleFlight = SingleFlight()
        self.breakers = {c.id: CircuitBreaker(c.id, settings.breaker.failures, settings.breaker.cooldown_s, clock=self.clock.monotonic) for c in self.connectors}
        self._supports = {c.id: tuple(getattr(c, "supports", ("phone", "account"))) for c in self.connectors}
        self.metrics = metrics or Metrics()
        self._plan_memo: dict[tuple[int, str | None], tuple[Match, Plan]] = {}
        self.last_agents = LastAgents(settings.last_agent_days, settings.cache.max_entries)
        #: optional `dialwhom.routing.shared.RedisState` when several instances serve one Exotel account
        self.shared = shared
        max_workers = self._init_bulkheads(settings, max_workers)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dialwhom-lookup")
        #: the console's recent decisions and charts (routing/recent.py), shared through Redis when set
        self.recent = RecentDecisions(redis=getattr(shared, "client", None), prefix=getattr(shared, "prefix", "dialwhom:"), clock=self.clock)
        self.availability = Availability(settings)
        # the ledger shares RedisState's client; another SharedState keeps it in memory
        redis_state = getattr(shared, "client", None) is not None
        self.ledger = RedisLedger(settings.busy_ttl_s, shared) if redis_state else MemoryLedger(settings.busy_ttl_s)
        self._arranged: dict[tuple[int, int, int], tuple[Plan, Plan]] = {}
        #: teams whose plan changes with every call (rotation): never remembered
        self._rotating = frozenset(t for t, team in settings.teams.items() if team_policy(team, "order") == "round-robin")

    def close_pool(self) -> None:
        """Stop the lookup threads once idle (a reload retires this service, not its connectors)."""
        self._executor.shutdown(wait=False)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.recent.close()
        for c in self.connectors:
            close = getattr(c, "close", None)
            if close:
                close()

    def scrape(self) -> bytes:
        """The Prometheus text for /metrics, with the gauges read at scrape time."""
        self.set_gauges()
        return self.metrics.render()

    def set_gauges(self) -> None:
        """Breaker and rate-limit gauges from the connectors' current state."""
        for cid, breaker in self.breakers.items():
            self.metrics.breaker_open.labels(cid).set(0 if breaker.state == "closed" else 1)
        for c in self.connectors:
            remaining = getattr(c, "rate_limit_remaining", None)
            if remaining is not None:
                self.metrics.rate_limit_remaining.labels(c.id).set(remaining)

    # -- answers -------------------------------------------------------------------------------

    def decide(self, req: ExotelRequest, deadline: Deadline) -> Decision:
        """The plan for this request; the same plan on every repeat request of one call."""
        trace = Trace(req.call_sid)  # positional: keyword binding costs more, on every answer
        sid = req.call_sid
        claimed = False
        if sid:
            plan, waiting, claimed = self.calls.claim(sid)
            if plan is None and waiting is not None:
                # Another request of this call is deciding right now: share its answer.
                waiting.wait(deadline.remaining())
                plan = self.calls.get(sid)
            if plan is None and claimed and self.shared is not None:
                plan = self.shared.get_plan(sid)  # the call's first request reached another instance
                if plan is not None:
                    self.calls.publish(sid, plan)
                    claimed = False
            if plan is not None:
                trace.path = "repeat"
                trace.notes.append("plan remembered from this call's first request")
                return self._finish(plan, trace, deadline)
        plan = None
        try:
            plan = self._available(self._compute(req, deadline, trace))
            if claimed and self.shared is not None:
                first = self.shared.first_plan(sid, plan)
                if first is not plan:
                    trace.notes.append("another instance answered this call first; using its plan")
                    plan = first
        finally:
            if claimed:
                self.calls.publish(sid, plan)
        return self._finish(plan, trace, deadline)

    def answer(self, endpoint: str, req: ExotelRequest, deadline: Deadline) -> Decision:
        """The decision one endpoint answers with, never an exception, counted in metrics.

        `endpoint` "fallback" answers from config alone; a bug while deciding is logged and
        answered from config too (path ``error-fallback``): the caller is waiting.
        """
        try:
            decision = self.fallback(req, deadline) if endpoint == "fallback" else self.decide(req, deadline)
        except Exception:
            log.exception("decision failed; answering from config")
            decision = self.fallback(req, deadline)
            decision.trace.path = "error-fallback"
        self.metrics.decided(endpoint, decision.trace.path, decision.trace.elapsed_ms / 1000.0)
        self.recent.record(endpoint, req, decision)
        return decision

    def record_outcome(self, req: ExotelRequest) -> bool:
        """Remember who talked to the caller (Passthru after Connect); True if recorded."""
        if req.dial_call_status != "completed" or not req.caller or not req.dial_whom_number:
            return False
        agent = parse_config_number(req.dial_whom_number, self.settings.default_region)
        if agent is None or not self._we_offered(req.call_sid, agent):
            return False
        self.ledger.mark_free(agent, self.clock.time())  # the call ended: free, idle from now
        self.last_agents.record(req.caller, agent)
        if self.shared is not None:
            self.shared.record_agent(req.caller, agent)
        return True

    def record_agent_event(self, call_sid: str | None, number: str | None, status: str | None) -> str:
        """The popup URL's event (exotel.md §9): ``busy`` or ``free`` for the agent dialled.

        Returns what was recorded: ``busy``, ``free``, ``nobody`` (a number we never offered:
        it cannot steer routing) or ``ignored`` (no usable status).
        """
        status = (status or "").strip().lower()
        if status not in ("busy", "free"):
            return "ignored"
        agent = parse_config_number(number, self.settings.default_region) if number else None
        if agent is None or not self._we_offered(call_sid, agent):
            return "nobody"
        ts = self.clock.time()
        if status == "busy":
            self.ledger.mark_busy(agent, ts)
        else:
            self.ledger.mark_free(agent, ts)
        return status

    def _available(self, base: Plan) -> Plan:
        """`arrange` the plan for now: who can take the call, busy agents last, the team's order.

        Remembered per base plan, minute and ledger version (availability changes only at whole
        minutes, the ledger only when an event arrives), except where each call changes it: a
        round-robin team's rotation, and a ledger in Redis that another instance may change.
        """
        ts = self.clock.time()
        ledger = self.ledger
        if ledger.shared or base.team in self._rotating:
            plan = arrange(self.settings, base, Moment(self.availability, ledger, ts))
        else:
            key = (id(base), int(ts // 60), ledger.version)
            hit = self._arranged.get(key)
            if hit is not None and hit[0] is base:
                plan = hit[1]
            else:
                plan = arrange(self.settings, base, Moment(self.availability, ledger, ts))
                if len(self._arranged) >= PLAN_MEMO_SIZE:
                    self._arranged.clear()
                self._arranged[key] = (base, plan)
        if plan.owner:
            self.metrics.owner_routed(plan.owner)
        return plan

    def _we_offered(self, call_sid: str | None, agent: str) -> bool:
        """Only numbers we gave for this call (or that config knows) become a last agent or
        busy, so a forged request cannot choose whom a caller reaches next."""
        plan = self.calls.get(call_sid) if call_sid else None
        if plan is None and call_sid and self.shared is not None:
            plan = self.shared.get_plan(call_sid)  # the call was answered by another instance
        if plan is not None:
            return agent in plan.numbers
        return agent in self.settings.known_numbers

    def fallback(self, req: ExotelRequest, deadline: Deadline) -> Decision:
        """The answer from config alone (Exotel's Fallback URL): never calls a connector."""
        trace = Trace(call_sid=req.call_sid, path="fallback")
        return self._finish(build_plan(self.settings, None, req.line), trace, deadline)  # config alone

    def _finish(self, plan: Plan, trace: Trace, deadline: Deadline) -> Decision:
        trace.plan = plan.reasons
        trace.skips = plan.skips
        if plan.notes:
            trace.notes.extend(plan.notes)
        trace.elapsed_ms = deadline.elapsed_ms()
        trace.config = self.settings.version
        return Decision(plan, trace)

    def _compute(self, req: ExotelRequest, deadline: Deadline, trace: Trace) -> Plan:
        queries = req.queries(self.settings.lookup_order, self.settings.default_region)
        if not queries:
            trace.path = "no-key"
            return candidates(self.settings, None, req.line)
        for query in queries:
            match, path, connector = self.find(query, deadline, trace)
            if match is not None:
                trace.path, trace.key, trace.connector = path, query.source, connector
                trace.notes.extend(match.notes)
                return self._plan_for(match, req.line)
        trace.path = _worst(trace)
        last = self.last_agents.get(req.caller)
        if last is None and self.shared is not None and self.settings.last_agent_days > 0 and req.caller:
            last = self.shared.last_agent(req.caller)
        if last is not None:
            trace.notes.append(f"no owner found; the last agent to talk to this caller was {mask(last[0])}, {last[1] / 86400:.1f} days ago")
            return candidates(self.settings, None, req.line, last_agent=last[0])
        return candidates(self.settings, None, req.line)

    def _plan_for(self, match: Match, line: str | None) -> Plan:
        """`candidates`, remembered per cached match and line: a cache hit returns the same
        Match object, and settings never change, so the plan is the same too."""
        key = (id(match), line)
        hit = self._plan_memo.get(key)
        if hit is not None and hit[0] is match:  # `is`: an id can be reused after a match is freed
            return hit[1]
        plan = candidates(self.settings, match, line)
        if len(self._plan_memo) >= PLAN_MEMO_SIZE:
            self._plan_memo.clear()
        self._plan_memo[key] = (match, plan)
        return plan

    # -- connector lookups ---------------------------------------------------------------------

    def find(self, query: Query, deadline: Deadline, trace: Trace) -> tuple[Match | None, str, str | None]:
        """(match, path, connector id) for one key, asking every connector concurrently."""
        started = time.monotonic()
        qkey = query.cache_key()
        pending: list[tuple[Any, str, Any]] = []
        for c in self.connectors:
            if query.kind not in self._supports[c.id]:
                continue
            key = f"{c.id}|{qkey}"
            hit = self.cache.fresh(key)
            if hit is not None:
                if not pending and hit.match is not None:  # the common case: the first connector's cached owner
                    self.metrics.looked_up(c.id, "cache-hit")
                    trace.add(c.id, query.source, "cache-hit", (time.monotonic() - started) * 1000.0)
                    return hit.match, "cache", c.id
                pending.append((c, key, hit))
                if hit.match is not None:
                    break  # connectors after this one cannot win over its answer: not worth a call
                continue
            running = self.flight.running(key)
            if running is not None:  # join a call already made (e.g. the breaker's probe)
                pending.append((c, key, running))
                continue
            refused = self._admit(c.id, deadline)
            if refused:
                pending.append((c, key, refused))
                continue
            fut, started_here = self.flight.start(key, lambda c=c, key=key: self._executor.submit(self._fetch_admitted, c, query, key, deadline))
            if not started_here:  # another request started it meanwhile: ours was not needed
                self.bulkheads[c.id].leave()
            pending.append((c, key, fut))

        def ms() -> float:
            return (time.monotonic() - started) * 1000.0

        for c, key, item in pending:
            if isinstance(item, str):  # not asked: breaker open, bulkhead full, no time left
                outcome, detail = item, _NOT_ASKED[item]
            elif not isinstance(item, Future):
                outcome = "cache-hit" if item.match else "cache-negative"
                self.metrics.looked_up(c.id, outcome)
                trace.add(c.id, query.source, outcome, ms())
                if item.match is not None:
                    return item.match, "cache", c.id
                continue
            else:
                try:
                    found: _Found = item.result(timeout=deadline.remaining())
                except FutureTimeout:
                    outcome, detail = "timeout", "no answer within the budget"
                except Exception as exc:  # ConnectorError, or a bug wrapped by _fetch
                    outcome, detail = getattr(exc, "kind", "error"), str(exc)[:200]
                else:
                    trace.add(c.id, query.source, "found" if found.match else "not-found", ms())
                    if found.match is not None:
                        return found.match, "fresh", c.id
                    continue
            stale = self.cache.stale(key)
            if stale is not None and stale.match is not None:
                age = time.time() - stale.stored_at
                trace.add(c.id, query.source, f"{outcome}+stale", ms(), f"{detail}; answered with the owner known {age / 60:.0f} min ago")
                self.metrics.looked_up(c.id, "stale")
                return stale.match, "stale", c.id
            trace.add(c.id, query.source, outcome, ms(), detail)
        return None, "not-found", None

    def _fetch(self, connector: LookupSource, query: Query, key: str, deadline: Deadline) -> _Found:
        """One connector call (runs on the pool); updates breaker, cache and metrics."""
        breaker = self.breakers[connector.id]
        t0 = time.monotonic()
        outcome = "error"
        try:
            match = connector.lookup(query, deadline=deadline)
            if match is not None and not isinstance(match, Match):
                raise BadResponse(f"{connector.id}: lookup returned {type(match).__name__}, not a Match or None")
            outcome = "found" if match else "not-found"
        except ConnectorError as exc:
            outcome = exc.kind
            breaker.failure()
            retry_after = getattr(exc, "retry_after", None)
            if retry_after and retry_after > 0:
                breaker.hold(min(retry_after, MAX_HOLD_S))
            raise
        except Exception as exc:
            outcome = "bug"
            breaker.failure()
            # not log.exception: the message may hold the caller's number (KeyError('+9198…'))
            log.error("connector=%s raised %s at %s (a connector must raise only connector errors)", connector.id, type(exc).__name__, _where(exc))
            raise ConnectorError(f"{connector.id}: internal error {type(exc).__name__}", connector=connector.id) from None
        finally:
            elapsed = time.monotonic() - t0
            self.metrics.looked_up(connector.id, outcome, elapsed)
        breaker.success()
        self.cache.put(key, match)
        return _Found(match, elapsed * 1000.0)

    # -- bulkheads: a bound on each connector's lookups in flight (issue 12) -------------------

    def _init_bulkheads(self, settings: Settings, max_workers: int) -> int:
        """One `Bulkhead` per connector; the pool size that lets every admitted lookup run at once."""
        limits = {cs.id: cs.max_in_flight for cs in settings.connectors}
        self.bulkheads = {c.id: Bulkhead(c.id, limits.get(c.id, DEFAULT_MAX_IN_FLIGHT)) for c in self.connectors}
        # a lookup let in never queues in the pool behind another, so the bulkhead is the only bound
        return max(max_workers, sum(b.limit for b in self.bulkheads.values()))

    def _admit(self, cid: str, deadline: Deadline) -> str | None:
        """None with a bulkhead place taken (give it back in `_fetch_admitted`), or why the
        connector is not asked: answering at once beats queueing behind a slow CRM."""
        if deadline.remaining() < MIN_LOOKUP_S:
            return NO_TIME  # e.g. the request waited for a server thread until its budget was gone
        bulkhead = self.bulkheads[cid]
        if not bulkhead.try_enter():
            self.metrics.looked_up(cid, BULKHEAD_FULL)
            return BULKHEAD_FULL
        if not self.breakers[cid].allow():  # after the bulkhead: a half-open probe is never lost
            bulkhead.leave()
            return "breaker-open"
        return None

    def _fetch_admitted(self, connector: LookupSource, query: Query, key: str, deadline: Deadline) -> _Found:
        """`_fetch` in the bulkhead place `_admit` took; shed without a call if the deadline went
        while it waited for a pool thread."""
        try:
            if deadline.remaining() < MIN_LOOKUP_S:
                self.metrics.looked_up(connector.id, "shed")
                raise ConnectorTimeout(f"{connector.id}: shed, the request's deadline passed before the call started", connector=connector.id)
            return self._fetch(connector, query, key, deadline)
        finally:
            self.bulkheads[connector.id].leave()

    def readiness(self) -> dict[str, Any]:
        """The detail behind /readyz: each connector's breaker, cache sizes, shared state."""
        return {
            "status": "ready",
            "config": self.settings.source,
            "connectors": [
                {"id": c.id, "type": getattr(c, "type_name", "?"), "breaker": self.breakers[c.id].snapshot()}
                for c in self.connectors
            ],
            "cached_lookups": len(self.cache),
            "remembered_calls": len(self.calls),
            "last_agents": len(self.last_agents),
            "shared_state": None if self.shared is None else {"redis": "up" if self.shared.ping() else "DOWN", "errors": self.shared.errors, "backlog": self.shared.backlog()},
            "lookups_in_flight": len(self.flight),
            "bulkheads": {cid: b.snapshot() for cid, b in self.bulkheads.items()},
        }


def _where(exc: BaseException) -> str:
    """file:line in function of the deepest frame: enough to find a bug, no values."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"


def _worst(trace: Trace) -> str:
    outcomes = {s.outcome for s in trace.steps}
    for path in ("timeout", "breaker-open", BULKHEAD_FULL, NO_TIME):
        if path in outcomes:
            return path
    if outcomes - {"not-found", "cache-negative"}:
        return "error"
    return "not-found"
