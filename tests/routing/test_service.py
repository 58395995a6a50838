"""The routing service with fake in-memory connectors: order, priority, caches, per-call plans, breaker."""

from __future__ import annotations

import sample
import threading
import time

import pytest
from dialwhom.routing.config import from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import AuthError, ConnectorUnavailable
from dialwhom.routing.model import Match, Owner, Query
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService
from sample import ASHA, NORTH3, VIKRAM  # noqa: E402

MEERA, RAHUL, SOUTH3 = sample.MEERA, sample.RAHUL, sample.SOUTH3
FALLBACK = sample.FALLBACK
CALLER = "+919876543210"

BASE = {
    "reps": [
        {"owner": "asha@example.com", "phone": ASHA, "team": "north"},
        {"owner": "meera@example.com", "phone": MEERA, "team": "south"},
    ],
    "teams": {"north": {"backup": [VIKRAM, NORTH3]}, "south": {"backup": [RAHUL, SOUTH3]}},
    "fallback": [FALLBACK],
    "lines": {sample.LINE_NORTH: "north"},
}

ASHA_PLAN = [ASHA, VIKRAM, NORTH3, FALLBACK]
MEERA_PLAN = [MEERA, RAHUL, SOUTH3, FALLBACK]


def owned_by(email: str) -> Match:
    return Match(owner=Owner(email=email), notes=(f"fake owner {email.split('@')[0]}",))


class Fake:
    """An in-memory connector: answers from `data` (cache key -> Match), records every call."""

    def __init__(self, id: str, data: dict[str, Match] | None = None, *, delay: float = 0.0, error: BaseException | None = None, supports=("phone", "account")):
        self.id = id
        self.data = dict(data or {})
        self.delay = delay
        self.error = error
        self.supports = supports
        self.calls: list[Query] = []
        self._lock = threading.Lock()

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        with self._lock:
            self.calls.append(query)
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.data.get(query.cache_key())


@pytest.fixture
def make(clock):
    services: list[RoutingService] = []

    def build(*connectors, **config) -> RoutingService:
        svc = RoutingService(from_mapping({**BASE, **config}, environ={}), list(connectors), clock=clock)
        services.append(svc)
        return svc

    yield build
    for svc in services:
        svc.close()


def ask(svc: RoutingService, budget_s: float = 2.0, **params):
    return svc.decide(parse_request(params, "IN"), Deadline(budget_s))


def test_found_by_caller(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    d = ask(make(fake), CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == ASHA_PLAN
    assert (d.trace.path, d.trace.key, d.trace.connector) == ("fresh", "caller", "crm")
    assert "fake owner asha" in d.trace.notes
    assert fake.calls == [Query("phone", CALLER, "caller")]


def test_keys_are_tried_in_lookup_order_until_one_is_found(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    d = ask(make(fake), CallSid="c1", CallFrom="09876543210", CustomField="A-9", digits='"42"')
    assert [q.source for q in fake.calls] == ["custom_field", "digits", "caller"]
    assert d.trace.key == "caller" and d.plan.numbers == ASHA_PLAN
    assert [(s.key, s.outcome) for s in d.trace.steps] == [("custom_field", "not-found"), ("digits", "not-found"), ("caller", "found")]


def test_lookup_stops_at_the_first_key_found(make):
    fake = Fake("crm", {"account:A-9": owned_by("meera@example.com"), f"phone:{CALLER}": owned_by("asha@example.com")})
    d = ask(make(fake), CallSid="c1", CallFrom="09876543210", CustomField="A-9")
    assert d.plan.numbers == MEERA_PLAN and d.trace.key == "custom_field"
    assert [q.source for q in fake.calls] == ["custom_field"]


def test_lookup_order_from_config(make):
    fake = Fake("crm", {"account:A-9": owned_by("meera@example.com"), f"phone:{CALLER}": owned_by("asha@example.com")})
    d = ask(make(fake, lookup_order=["caller", "custom_field"]), CallSid="c1", CallFrom="09876543210", CustomField="A-9", digits='"42"')
    assert d.plan.numbers == ASHA_PLAN and d.trace.key == "caller"
    assert [q.source for q in fake.calls] == ["caller"]


def test_connector_that_cannot_answer_a_kind_is_not_asked(make):
    phones_only = Fake("phones", supports=("phone",))
    ask(make(phones_only), CallSid="c1", CustomField="A-9", CallFrom="09876543210")
    assert [q.kind for q in phones_only.calls] == ["phone"]


def test_first_connector_by_priority_wins_even_when_slower(make):
    first = Fake("first", {f"phone:{CALLER}": owned_by("asha@example.com")}, delay=0.05)
    second = Fake("second", {f"phone:{CALLER}": owned_by("meera@example.com")})
    d = ask(make(first, second), CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == ASHA_PLAN
    assert d.trace.connector == "first"
    assert len(first.calls) == 1 and len(second.calls) == 1  # asked concurrently


def test_second_connector_answers_when_the_first_does_not_know(make):
    first = Fake("first")
    second = Fake("second", {f"phone:{CALLER}": owned_by("meera@example.com")})
    d = ask(make(first, second), CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == MEERA_PLAN and d.trace.connector == "second"


def test_second_connector_answers_when_the_first_fails(make):
    first = Fake("first", error=ConnectorUnavailable("first: HTTP 503"))
    second = Fake("second", {f"phone:{CALLER}": owned_by("meera@example.com")})
    d = ask(make(first, second), CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == MEERA_PLAN and d.trace.connector == "second"
    assert d.trace.steps[0].outcome == "unavailable"


def test_unknown_caller_gets_the_line_team(make):
    d = ask(make(Fake("crm")), CallSid="c1", CallFrom="07777777777", CallTo="08039513882")
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert d.trace.path == "not-found"


def test_no_identity_at_all_gets_fallback_without_asking(make):
    fake = Fake("crm")
    d = ask(make(fake), CallSid="c1")
    assert d.plan.numbers == [FALLBACK]
    assert d.trace.path == "no-key" and fake.calls == []


def test_plan_is_remembered_per_call(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    svc = make(fake)
    first = ask(svc, CallSid="call-1", CallFrom="09876543210", CallTo="08039513882")
    fake.data = {f"phone:{CALLER}": owned_by("meera@example.com")}  # the CRM changed meanwhile
    svc.cache.clear()  # and no cache would hide it
    for status, whom in [("busy", "09800000001"), ("no-answer", "09800000002"), ("failed", "sip:agent")]:
        again = ask(svc, CallSid="call-1", CallFrom="09876543210", CallTo="08039513882", DialCallStatus=status, DialWhomNumber=whom)
        assert again.plan.numbers == first.plan.numbers == ASHA_PLAN
        assert again.trace.path == "repeat"
    assert len(fake.calls) == 1
    # another call from the same caller sees the CRM's new owner
    assert ask(svc, CallSid="call-2", CallFrom="09876543210").plan.numbers == MEERA_PLAN


def test_repeat_does_not_depend_on_the_crm_answering_again(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    svc = make(fake)
    ask(svc, CallSid="call-1", CallFrom="09876543210")
    fake.error = ConnectorUnavailable("down now")
    d = ask(svc, CallSid="call-1", CallFrom="09876543210", DialCallStatus="busy", DialWhomNumber=ASHA)
    assert d.plan.numbers == ASHA_PLAN and d.trace.path == "repeat"


def test_requests_without_call_sid_are_not_remembered(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")}, )
    svc = make(fake, cache={"positive_ttl_s": 0})
    ask(svc, CallFrom="09876543210")
    ask(svc, CallFrom="09876543210")
    assert len(fake.calls) == 2
    assert len(svc.calls) == 0


def test_concurrent_first_requests_of_one_call_share_one_plan_and_one_lookup(make):
    answers = iter([owned_by("asha@example.com"), owned_by("meera@example.com")] * 20)

    class Flaky(Fake):
        def lookup(self, query, *, deadline):
            super().lookup(query, deadline=deadline)
            return next(answers)  # a different owner on every call

    fake = Flaky("crm", delay=0.15)
    svc = make(fake)
    n = 8
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        params = {"CallSid": "same-call", "CallFrom": "09876543210"}
        if i % 2:
            params |= {"DialCallStatus": "busy", "DialWhomNumber": ASHA}
        results[i] = svc.decide(parse_request(params, "IN"), Deadline(3.0))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    plans = {tuple(r.plan.numbers) for r in results}
    assert len(plans) == 1
    assert len(fake.calls) == 1
    assert sum(r.trace.path == "repeat" for r in results) == n - 1


def test_concurrent_lookups_of_one_caller_in_different_calls_share_one_connector_call(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")}, delay=0.15)
    svc = make(fake)
    n = 6
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = ask(svc, 3.0, CallSid=f"call-{i}", CallFrom="09876543210")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert all(r.plan.numbers == ASHA_PLAN for r in results)
    assert len(fake.calls) == 1


def test_positive_answers_are_cached(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    svc = make(fake)
    ask(svc, CallSid="c1", CallFrom="09876543210")
    d = ask(svc, CallSid="c2", CallFrom="+919876543210")
    assert d.trace.path == "cache" and d.plan.numbers == ASHA_PLAN
    assert len(fake.calls) == 1


def test_negative_answers_are_cached(make):
    fake = Fake("crm")
    svc = make(fake)
    ask(svc, CallSid="c1", CallFrom="09876543210")
    d = ask(svc, CallSid="c2", CallFrom="09876543210")
    assert len(fake.calls) == 1
    assert [s.outcome for s in d.trace.steps] == ["cache-negative"]
    assert d.trace.path == "not-found" and d.plan.numbers == [FALLBACK]


def test_negative_cache_can_be_turned_off(make):
    fake = Fake("crm")
    svc = make(fake, cache={"negative_ttl_s": 0})
    ask(svc, CallSid="c1", CallFrom="09876543210")
    ask(svc, CallSid="c2", CallFrom="09876543210")
    assert len(fake.calls) == 2


def test_failures_are_not_cached_and_stale_owner_answers_while_failing(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    svc = make(fake, cache={"positive_ttl_s": 0})
    ask(svc, CallSid="c1", CallFrom="09876543210")
    fake.error = ConnectorUnavailable("crm: HTTP 503")
    d = ask(svc, CallSid="c2", CallFrom="09876543210")
    assert len(fake.calls) == 2
    assert d.trace.path == "stale" and d.plan.numbers == ASHA_PLAN
    assert d.trace.steps[0].outcome == "unavailable+stale"


def test_a_connector_bug_still_yields_a_plan_and_the_trace_says_so(make):
    fake = Fake("crm", error=RuntimeError("oops"))
    svc = make(fake)
    d = ask(svc, CallSid="c1", CallFrom="09876543210", CallTo="08039513882")
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert d.trace.path == "error"
    [step] = d.trace.steps
    assert step.outcome == "error"
    assert "internal error RuntimeError" in step.detail
    assert svc.breakers["crm"].snapshot()["consecutive_failures"] == 1
    assert b'outcome="bug"' in svc.metrics.render()


def test_a_connector_returning_the_wrong_type_is_a_bad_response(make):
    fake = Fake("crm", {f"phone:{CALLER}": {"owner": "asha"}})  # type: ignore[dict-item]
    d = ask(make(fake), CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == [FALLBACK]
    assert d.trace.steps[0].outcome == "bad_response"


def test_breaker_opens_after_n_failures_and_skips_the_connector(make):
    fake = Fake("crm", error=AuthError("crm: credentials refused"))
    svc = make(fake, breaker={"failures": 3, "cooldown_s": 3600})
    for i in range(3):
        d = ask(svc, CallSid=f"c{i}", CallFrom="09876543210")
        assert d.trace.steps[0].outcome == "auth"
    assert svc.breakers["crm"].state == "open"
    d = ask(svc, CallSid="c-next", CallFrom="09876543210", CallTo="08039513882")
    assert len(fake.calls) == 3
    assert d.trace.path == "breaker-open"
    assert d.trace.steps[0].outcome == "breaker-open"
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert {c["id"]: c["breaker"] for c in svc.readiness()["connectors"]}["crm"]["state"] == "open"


def test_breaker_lets_one_probe_through_after_the_cooldown(make, clock):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")}, error=ConnectorUnavailable("down"))
    svc = make(fake, breaker={"failures": 1, "cooldown_s": 0.1})
    ask(svc, CallSid="c1", CallFrom="09876543210")
    assert ask(svc, CallSid="c2", CallFrom="09876543210").trace.path == "breaker-open"
    clock.advance(0.15)
    fake.error = None
    d = ask(svc, CallSid="c3", CallFrom="09876543210")
    assert d.plan.numbers == ASHA_PLAN
    assert svc.breakers["crm"].state == "closed"
    assert len(fake.calls) == 2


def test_breaker_of_one_connector_does_not_skip_another(make):
    bad = Fake("bad", error=ConnectorUnavailable("down"))
    good = Fake("good", {f"phone:{CALLER}": owned_by("meera@example.com")}, )
    svc = make(bad, good, breaker={"failures": 1, "cooldown_s": 3600}, cache={"positive_ttl_s": 0})
    ask(svc, CallSid="c1", CallFrom="09876543210")
    d = ask(svc, CallSid="c2", CallFrom="09876543210")
    assert d.plan.numbers == MEERA_PLAN and d.trace.connector == "good"
    assert len(bad.calls) == 1 and len(good.calls) == 2


def test_a_slow_connector_times_out_within_the_budget(make):
    slow = Fake("slow", {f"phone:{CALLER}": owned_by("asha@example.com")}, delay=0.5)
    svc = make(slow)
    t0 = time.monotonic()
    d = ask(svc, 0.1, CallSid="c1", CallFrom="09876543210", CallTo="08039513882")
    assert time.monotonic() - t0 < 0.3
    assert d.trace.path == "timeout"
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]


def test_fallback_never_asks_a_connector(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    d = make(fake).fallback(parse_request({"CallSid": "c1", "CallFrom": "09876543210", "CallTo": "08039513882"}), Deadline(1.0))
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert d.trace.path == "fallback" and fake.calls == []


def test_trace_header_and_log_line_mask_the_caller(make):
    fake = Fake("crm", {f"phone:{CALLER}": owned_by("asha@example.com")})
    d = ask(make(fake), CallSid="c1", CallFrom="09876543210")
    header, line = d.trace.header(), d.trace.log_line(CALLER)
    assert "path=fresh" in header and "plan=owner,team:north,team:north,fallback" in header
    for text in (header, line):
        assert "9876543210" not in text
    assert "+91*******210" in line


def test_a_cached_match_of_the_first_connector_asks_no_connector_after_it(make):
    first = Fake("first")
    second = Fake("second", {f"phone:{CALLER}": owned_by("meera@example.com")})
    svc = make(first, second)
    svc.cache.put(f"first|phone:{CALLER}", owned_by("asha@example.com"))  # only the first is cached
    d = ask(svc, CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == ASHA_PLAN and d.trace.path == "cache"
    svc._executor.shutdown(wait=True)  # a call submitted for the second would have run by now
    assert first.calls == [] and second.calls == []


def test_a_cached_miss_of_the_first_connector_still_asks_the_next(make):
    first = Fake("first")
    second = Fake("second", {f"phone:{CALLER}": owned_by("meera@example.com")})
    svc = make(first, second)
    svc.cache.put(f"first|phone:{CALLER}", None)
    d = ask(svc, CallSid="c1", CallFrom="09876543210")
    assert d.plan.numbers == MEERA_PLAN and [s.outcome for s in d.trace.steps] == ["cache-negative", "found"]
    assert len(first.calls) == 0 and len(second.calls) == 1
