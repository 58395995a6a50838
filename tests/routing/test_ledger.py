"""The busy ledger, the rotation and the idle clock shared by two instances through a real Redis."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from avail_config import ASHA, FALLBACK, LINE_NORTH, NORTH3, VIKRAM, OwnerSource, config, ist
from dialwhom.routing.availability import FixedClock
from dialwhom.routing.config import from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.ledger import MemoryLedger
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService
from dialwhom.routing.shared import RedisState

REDIS_URL = os.environ.get("DIALWHOM_TEST_REDIS", "redis://127.0.0.1:6379/15")
C5 = "+919800000005"


def _redis_up() -> bool:
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up() and not os.environ.get("CI"), reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
def instances():
    """instances(order, n=2, url=...) -> n services on one Redis prefix, one clock; cleaned up after."""
    prefix = f"dialwhom-test:{uuid.uuid4().hex}:"
    made: list[RoutingService] = []
    clock = FixedClock(ist("2026-12-01 11:00"))

    def build(order: str, n: int = 2, url: str = REDIS_URL, owner: str | None = None):
        teams = config()["teams"]
        teams["north"] = {"backup": [VIKRAM, NORTH3, C5], "order": order}
        settings = from_mapping(config(teams=teams), environ={})
        for _ in range(n):
            made.append(RoutingService(settings, [OwnerSource(owner)], shared=RedisState(url, prefix=prefix, timeout_s=0.2), clock=clock))
        return made[-n:]

    build.clock = clock
    yield build
    if _redis_up():
        import redis

        with redis.Redis.from_url(REDIS_URL) as client:
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
    for svc in made:
        svc.close()
        svc.shared.client.close()


_sid = iter(range(10**6))


def call(svc, **params):
    params.setdefault("CallFrom", "09876543210")
    params.setdefault("CallSid", f"shared-{next(_sid)}")
    return svc.decide(parse_request(params), Deadline(2.0))


@needs_redis
def test_two_instances_share_the_rotation(instances):
    a, b = instances("round-robin")
    leads = [call(svc, To=LINE_NORTH).plan.numbers[0] for svc in (a, b, a, b)]
    assert leads == [VIKRAM, NORTH3, C5, VIKRAM]


@needs_redis
def test_two_instances_share_the_busy_ledger(instances):
    a, b = instances("in-order", owner="asha@example.com")
    first = call(a)
    assert first.plan.numbers[0] == ASHA
    assert a.record_agent_event(first.trace.call_sid, ASHA, "busy") == "busy"
    assert b.record_agent_event(first.trace.call_sid, VIKRAM, "busy") == "busy"  # b learns a's plan from Redis
    instances.clock.advance(30)
    d = call(b)
    assert d.plan.numbers == [NORTH3, C5, ASHA, VIKRAM, FALLBACK]
    assert d.trace.skips[0] == "owner busy since 11:00; moved behind the available agents"
    b.record_agent_event(None, ASHA, "free")
    assert call(a).plan.numbers == [ASHA, NORTH3, C5, VIKRAM, FALLBACK]


@needs_redis
def test_two_instances_share_the_idle_clock(instances):
    a, b = instances("longest-idle", owner=None)
    for svc, agent in ((a, VIKRAM), (b, NORTH3), (a, C5)):
        svc.record_agent_event(None, agent, "free")
        instances.clock.advance(60)
    assert call(b, To=LINE_NORTH).plan.numbers == [VIKRAM, NORTH3, C5, FALLBACK]
    a.record_agent_event(None, VIKRAM, "free")
    assert call(b, To=LINE_NORTH).plan.numbers == [NORTH3, C5, VIKRAM, FALLBACK]


def test_redis_down_answers_from_memory_within_budget(instances):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    (svc,) = instances("round-robin", n=1, url=dead, owner="asha@example.com")
    svc.record_agent_event(None, ASHA, "busy")
    deadline = Deadline(2.0)
    d = svc.decide(parse_request({"CallSid": "down-1", "CallFrom": "09876543210"}), deadline)
    assert d.plan.numbers[-2:] == [ASHA, FALLBACK]  # the busy owner, from this instance's memory
    assert deadline.elapsed_ms() < 1000
    leads = [call(svc).plan.numbers[0] for _ in range(3)]
    assert len(set(leads)) == 3  # the rotation goes on in memory
    assert svc.shared.errors >= 1


def test_memory_ledger_keeps_the_first_busy_of_a_stretch():
    ledger = MemoryLedger(busy_ttl_s=600)
    ledger.mark_busy(ASHA, 100.0)
    v = ledger.version
    ledger.mark_busy(ASHA, 160.0)  # Answered after Dial: the same stretch
    assert ledger.busy_map() == {ASHA: 100.0} and ledger.version == v
    ledger.mark_busy(ASHA, 800.0)  # the first one lapsed: a new stretch
    assert ledger.busy_map() == {ASHA: 800.0}
    ledger.mark_free(ASHA, 900.0)
    assert ledger.busy_map() == {} and ledger.idle_map() == {ASHA: 900.0}
    assert [ledger.turn("north") for _ in range(3)] == [0, 1, 2] and ledger.turn("south") == 0
