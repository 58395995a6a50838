"""Breaker hold on Retry-After, and the stale cache forgetting customers the CRM dropped."""

from __future__ import annotations

import sample
from dialwhom.routing.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from dialwhom.routing.cache import LookupCache
from dialwhom.routing.config import CacheSettings, from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Owner
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_hold_opens_the_breaker_for_the_given_seconds_then_probes():
    clock = Clock()
    b = CircuitBreaker("crm", failures=5, cooldown_s=30, clock=clock)
    b.hold(120)
    assert b.state == OPEN and not b.allow()
    clock.t += 119
    assert b.state == OPEN
    clock.t += 2
    assert b.state == HALF_OPEN and b.allow()
    b.success()
    assert b.state == CLOSED


def test_not_found_drops_the_stale_owner():
    cache = LookupCache(CacheSettings(positive_ttl_s=0.001))
    cache.put("crm|phone:+919876543210", Match(Owner(email="asha@example.com")))
    assert cache.stale("crm|phone:+919876543210") is not None
    cache.put("crm|phone:+919876543210", None)
    assert cache.stale("crm|phone:+919876543210") is None


class RateLimitedConnector:
    id = "crm"
    supports = ("phone", "account")

    def __init__(self):
        self.calls = 0

    def lookup(self, query, *, deadline):
        from dialwhom.routing.errors import RateLimited

        self.calls += 1
        raise RateLimited("slow down", retry_after=120)


def test_a_retry_after_keeps_the_crm_unasked_until_it_passes():
    settings = from_mapping({"fallback": [sample.FALLBACK], "breaker": {"failures": 5, "cooldown_s": 1}})
    crm = RateLimitedConnector()
    service = RoutingService(settings, [crm])
    for n in range(3):
        decision = service.decide(parse_request({"From": f"0987654321{n}"}), Deadline(1.0))
        assert decision.plan.numbers == [sample.FALLBACK]
    assert crm.calls == 1  # one 429 with Retry-After: 120 held the breaker open
    assert service.breakers["crm"].state == OPEN


def test_call_plans_expire_and_stay_bounded():
    from dialwhom.routing.cache import CallPlans

    clock = Clock()
    plans = CallPlans(maxsize=10, ttl_s=60, timer=clock)
    sids = [f"sid{i}" for i in range(12)]
    for sid in sids:
        _, _, claimed = plans.claim(sid)
        assert claimed
        plans.publish(sid, f"plan-{sid}")
    # a tenth over the size, the oldest go
    assert plans.get("sid0") is None and plans.get("sid1") is None
    assert plans.get("sid11") == "plan-sid11" and len(plans) == 10
    clock.t += 61
    assert plans.get("sid11") is None and len(plans) == 0  # expired


def test_concurrent_first_requests_of_one_call_share_one_plan():
    import threading

    from dialwhom.routing.cache import CallPlans

    for _ in range(50):
        plans = CallPlans(maxsize=100, ttl_s=60)
        results, barrier = [], threading.Barrier(8)

        def request():
            barrier.wait()
            plan, event, claimed = plans.claim("sid")
            if claimed:
                plans.publish("sid", f"plan-{threading.get_ident()}")
                plan = plans.get("sid")
            elif plan is None and event is not None:
                event.wait(2)
                plan = plans.get("sid")
            results.append((claimed, plan))

        threads = [threading.Thread(target=request) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sum(claimed for claimed, _ in results) == 1
        assert len({plan for _, plan in results}) == 1 and results[0][1] is not None
        assert plans._pending == {}


def test_a_second_request_waits_for_the_first_requests_plan():
    import threading

    from dialwhom.routing.cache import CallPlans

    plans = CallPlans(maxsize=10, ttl_s=60)
    assert plans.claim("sid")[2] is True
    plan, event, claimed = plans.claim("sid")
    assert plan is None and not claimed and isinstance(event, threading.Event)
    plans.publish("sid", "the plan")
    assert event.is_set() and plans.get("sid") == "the plan"


def test_ttl_map_keeps_the_newest_and_expires_by_age():
    from dialwhom.routing.cache import TTLMap

    clock = Clock()
    m = TTLMap(maxsize=10, ttl_s=60, timer=clock)
    for i in range(10):
        m[f"k{i}"] = i
    m["k0"] = "again"  # a re-put is the newest now
    m["k10"] = 10
    m["k11"] = 11  # a tenth over the size: the oldest go
    assert m.get("k0") == "again"
    assert m.get("k1") is None and m.get("k2") is None
    assert len(m) == 10
    clock.t += 60
    assert m.get("k0") is None and len(m) == 0


def test_ttl_map_under_concurrent_writers_stays_bounded_and_consistent():
    import threading

    from dialwhom.routing.cache import TTLMap

    m = TTLMap(maxsize=100, ttl_s=60)
    errors = []

    def hammer(n):
        try:
            for i in range(5000):
                key = f"{n}-{i % 300}"
                m[key] = i
                got = m.get(key)
                assert got is None or isinstance(got, int)
                if i % 7 == 0:
                    m.pop(key)
        except Exception as exc:  # any RuntimeError from a dict changing under iteration
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert len(m._data) <= 110


def test_cached_customers_of_one_owner_share_one_owner_object():
    cache = LookupCache(CacheSettings(max_entries=100))
    for k in range(3):  # as decoded from three CRM answers: equal owners, distinct objects
        owner = Owner(id="".join(["7", "7"]), email="asha@example.com".upper().lower(), name="Asha")
        cache.put(f"crm|phone:+9198000000{k}", Match(owner=owner, team="north"))
    hits = [cache.fresh(f"crm|phone:+9198000000{k}").match for k in range(3)]
    assert hits[0].owner is hits[1].owner is hits[2].owner
    assert hits[0] == Match(owner=Owner(id="77", email="asha@example.com", name="Asha"), team="north")
    assert cache.stale("crm|phone:+91980000002").match.owner is hits[0].owner


def test_owner_sharing_is_bounded():
    cache = LookupCache(CacheSettings(max_entries=10))
    for k in range(25):
        cache.put(f"crm|phone:{k}", Match(owner=Owner(id=str(k))))
    assert len(cache._owners) <= 10
    assert cache.fresh("crm|phone:24").match.owner == Owner(id="24")


# -- dropping answers when a store's data changes, or for one caller ---------------------------


def test_forget_connector_drops_only_that_connectors_answers():
    cache = LookupCache(CacheSettings())
    m = Match(Owner(email="a@x"))
    cache.put("accounts|phone:+911", m)
    cache.put("accounts|phone:+912", None)
    cache.put("crm|phone:+911", m)
    assert cache.forget_connector("accounts") == 3  # positive, stale and negative
    assert cache.fresh("accounts|phone:+911") is None and cache.stale("accounts|phone:+911") is None
    assert cache.fresh("accounts|phone:+912") is None
    assert cache.fresh("crm|phone:+911") is not None


def test_forget_key_drops_one_caller_from_every_connector():
    cache = LookupCache(CacheSettings())
    m = Match(Owner(email="a@x"))
    for c in ("accounts", "crm"):
        cache.put(f"{c}|phone:+911", m)
        cache.put(f"{c}|phone:+9111", m)
    cache.forget_key("phone:+911")
    assert cache.fresh("accounts|phone:+911") is None and cache.fresh("crm|phone:+911") is None
    assert cache.fresh("accounts|phone:+9111") is not None
