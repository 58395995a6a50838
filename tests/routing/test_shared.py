"""Shared state through a real Redis on 127.0.0.1:6379 (CI starts it)."""

from __future__ import annotations

import sample
import os
import socket
import uuid

import pytest

from dialwhom.routing.config import from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Owner
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService
from dialwhom.routing.shared import RedisState, plan_from_json, plan_to_json

REDIS_URL = os.environ.get("DIALWHOM_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _redis_up() and not os.environ.get("CI"),
    reason="no Redis on 127.0.0.1:6379 (CI starts one; here run `redis-server --daemonize yes`)",
)

CONFIG = {
    "reps": [
        {"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
        {"owner": "vikram@example.com", "phone": sample.VIKRAM, "team": "north"},
    ],
    "teams": {"north": {"backup": [sample.NORTH3]}},
    "fallback": [sample.FALLBACK],
    "connectors": [{"id": "fake", "type": "fake"}],
}


class FakeConnector:
    id = "fake"
    supports = ("phone", "account")

    def __init__(self, owner_email: str | None):
        self.owner_email = owner_email
        self.calls = 0

    def lookup(self, query, *, deadline):
        self.calls += 1
        return Match(Owner(email=self.owner_email)) if self.owner_email else None


@pytest.fixture
def prefix():
    p = f"dialwhom-test:{uuid.uuid4().hex}:"
    yield p
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{p}*"):
        client.delete(key)


def _service(owner: str | None, prefix: str, url: str = REDIS_URL) -> tuple[RoutingService, FakeConnector]:
    settings = from_mapping(CONFIG)
    fake = FakeConnector(owner)
    shared = RedisState(url, prefix=prefix, timeout_s=0.2)
    return RoutingService(settings, [fake], shared=shared), fake


def _ask(service: RoutingService, **params):
    req = parse_request({"CallSid": "CA1", "CallFrom": "09876543210", **params})
    return service.decide(req, Deadline(2.0))


def test_plan_round_trips_through_json():
    settings = from_mapping(CONFIG)
    from dialwhom.routing.plan import build_plan

    plan = build_plan(settings, Match(Owner(email="asha@example.com")))
    assert plan_from_json(plan_to_json(plan)) == plan


def test_second_instance_returns_the_first_instances_plan_for_a_call(prefix):
    a, fake_a = _service("asha@example.com", prefix)
    b, fake_b = _service("vikram@example.com", prefix)  # the CRM changed in between
    first = _ask(a)
    repeat = _ask(b, DialWhomNumber=sample.ASHA, DialCallStatus="busy")
    assert first.plan.numbers[0] == sample.ASHA
    assert repeat.plan.numbers == first.plan.numbers
    assert repeat.trace.path == "repeat"
    assert fake_b.calls == 0  # the repeat request did not ask the CRM


def test_concurrent_first_requests_on_two_instances_agree(prefix):
    a, _ = _service("asha@example.com", prefix)
    b, _ = _service("vikram@example.com", prefix)
    # Both decide before either has stored: the second store loses and adopts the first plan.
    plan_a = _ask(a).plan
    b.shared.client.delete(f"{prefix}call:CA2")
    req = parse_request({"CallSid": "CA2", "CallFrom": "09876543210"})
    first = a.decide(req, Deadline(2.0)).plan
    second = b.decide(req, Deadline(2.0))
    assert second.plan.numbers == first.numbers
    assert plan_a.numbers[0] == sample.ASHA


def test_last_agent_is_shared_between_instances(prefix):
    a, _ = _service(None, prefix)
    b, _ = _service(None, prefix)
    learnt = a.record_outcome(parse_request({"CallFrom": "09876543210", "DialWhomNumber": "09800000002", "DialCallStatus": "completed"}))
    assert learnt
    decision = b.decide(parse_request({"CallSid": "CA3", "CallFrom": "09876543210"}), Deadline(2.0))
    assert decision.plan.steps[0].number == sample.VIKRAM
    assert decision.plan.steps[0].why == "last-agent"


def test_redis_down_still_answers_quickly(prefix):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    service, _ = _service("asha@example.com", prefix, url=dead)
    deadline = Deadline(2.0)
    decision = service.decide(parse_request({"CallSid": "CA4", "CallFrom": "09876543210"}), deadline)
    assert decision.plan.numbers[0] == sample.ASHA
    assert deadline.elapsed_ms() < 1000
    assert service.shared.errors >= 1
    assert service.readiness()["shared_state"]["redis"] == "DOWN"
