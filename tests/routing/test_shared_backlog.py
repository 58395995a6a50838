"""Issue 12, break 5: what was decided while Redis was away is written when it returns, so
every instance agrees again (a real Redis on 127.0.0.1:6379, a unique key prefix)."""

from __future__ import annotations

import sample
import socket
import time

from dialwhom.routing.config import from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService
from dialwhom.routing.shared import RedisState
from tests.routing.test_shared import CONFIG, REDIS_URL, prefix, pytestmark  # noqa: F401 - the fixture and the skip
from tests.routing.test_shared import FakeConnector as Crm


def _refusing_url() -> str:
    with socket.socket() as s:  # a port with nothing listening: Redis "away"
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def _instance(email: str | None, prefix: str, url: str) -> tuple[RoutingService, Crm]:
    crm = Crm(email)
    return RoutingService(from_mapping(CONFIG), [crm], shared=RedisState(url, prefix=prefix, timeout_s=0.2)), crm


def _wait_for(predicate, seconds: float = 3.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_plans_and_last_agents_decided_while_redis_was_away_reach_the_other_instances(prefix):
    import redis

    a, _ = _instance("asha@example.com", prefix, _refusing_url())
    b, crm_b = _instance("vikram@example.com", prefix, REDIS_URL)  # the CRM changed in between
    c, _ = _instance(None, prefix, REDIS_URL)
    try:
        firsts = {f"CB{i}": a.decide(parse_request({"CallSid": f"CB{i}", "CallFrom": "09876543210"}), Deadline(2.0)).plan.numbers for i in range(40)}
        assert a.record_outcome(parse_request({"CallFrom": "09123456780", "DialWhomNumber": "09800000002", "DialCallStatus": "completed"}))
        assert a.shared.backlog() == 41

        old = a.shared.client
        a.shared.client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.2)  # Redis is back
        old.close()
        assert a.shared.ping()  # the first answer from Redis starts the replay
        # the replay runs in the background: an entry leaves the backlog before its write
        # is counted, so wait for the count, not for the empty backlog
        assert _wait_for(lambda: a.shared.replayed == 41)
        assert a.shared.backlog() == 0

        for sid, numbers in firsts.items():
            repeat = b.decide(parse_request({"CallSid": sid, "CallFrom": "09876543210", "DialCallStatus": "busy"}), Deadline(2.0))
            assert repeat.trace.path == "repeat" and repeat.plan.numbers == numbers
        assert crm_b.calls == 0
        unknown = c.decide(parse_request({"CallSid": "CZ", "CallFrom": "09123456780"}), Deadline(2.0))
        assert unknown.plan.steps[0].number == sample.VIKRAM and unknown.plan.steps[0].why == "last-agent"
    finally:
        for s in (a, b, c):
            s.close()
            s.shared.client.close()


def test_replay_keeps_a_plan_another_instance_stored_first_and_stops_at_a_failure(prefix):
    import redis

    a, _ = _instance("asha@example.com", prefix, _refusing_url())
    b, _ = _instance("vikram@example.com", prefix, REDIS_URL)
    try:
        a.decide(parse_request({"CallSid": "CC1", "CallFrom": "09876543210"}), Deadline(2.0))
        a.decide(parse_request({"CallSid": "CC2", "CallFrom": "09876543210"}), Deadline(2.0))
        assert a.shared.replay() == 0 and a.shared.backlog() == 2  # still away: nothing lost
        stored_by_b = b.decide(parse_request({"CallSid": "CC1", "CallFrom": "09876543210"}), Deadline(2.0)).plan
        a.shared.client.close()
        a.shared.client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.2)
        assert a.shared.replay() == 2
        assert a.shared.get_plan("CC1").numbers == stored_by_b.numbers  # SET NX: the first plan stays
        assert a.shared.get_plan("CC2").numbers[0] == sample.ASHA
    finally:
        for s in (a, b):
            s.close()
            s.shared.client.close()
