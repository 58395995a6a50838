"""Issue 12, break 1 in process: a bulkhead per connector, lookups shed once their deadline has
gone, and a deadline that starts when the request reached the server."""

from __future__ import annotations

import sample
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dialwhom.routing.config import from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Owner, Query
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService

ASHA, FALLBACK = sample.ASHA, sample.FALLBACK
CONFIG = {
    "reps": [{"owner": "asha@example.com", "phone": ASHA}],
    "fallback": [FALLBACK],
    "connectors": [{"id": "crm", "type": "slow", "max_in_flight": 2}],
}


class SlowCrm:
    """Answers 'asha' for every caller once `release` is set (or after `hold_s`); counts calls
    in flight at once."""

    id = "crm"
    supports = ("phone",)

    def __init__(self, hold_s: float = 1.0):
        self.hold_s = hold_s
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = self.most_in_flight = self.calls = 0

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.release.wait(deadline.clip(self.hold_s))
            return Match(Owner(email="asha@example.com"))
        finally:
            with self._lock:
                self.in_flight -= 1


def _caller(i: int) -> dict:
    return {"CallSid": f"CA{i}", "CallFrom": f"0987650{i:04d}"}


def test_a_full_bulkhead_answers_at_once_without_the_connector():
    crm = SlowCrm(hold_s=3.0)  # holds its two places until the test releases it
    service = RoutingService(from_mapping(CONFIG), [crm])
    try:
        def ask(i: int):
            started = time.monotonic()
            decision = service.decide(parse_request(_caller(i)), Deadline(3.0))
            return decision, time.monotonic() - started

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(ask, i) for i in range(8)]
            end = time.monotonic() + 2.0
            while service.bulkheads["crm"].refused < 6 and time.monotonic() < end:
                time.sleep(0.005)
            crm.release.set()  # the six refused have their answers: let the two lookups finish
            results = [f.result() for f in futures]
        full = [(d, s) for d, s in results if d.trace.path == "bulkhead-full"]
        waited = [(d, s) for d, s in results if d.trace.path != "bulkhead-full"]
        assert crm.most_in_flight <= 2 and crm.calls == 2
        assert len(full) == 6 and len(waited) == 2
        for decision, seconds in full:
            assert seconds < 0.5, "a refused lookup must not wait for the CRM (3 s)"
            assert decision.plan.numbers == [FALLBACK]
            assert "crm[caller]=bulkhead-full" in decision.trace.header()
        assert service.readiness()["bulkheads"]["crm"]["refused"] == 6
    finally:
        crm.release.set()
        service.close()


def test_a_full_bulkhead_answers_from_stale_data_when_it_has_some():
    crm = SlowCrm(hold_s=0.3)
    crm.release.set()
    settings = from_mapping({**CONFIG, "cache": {"positive_ttl_s": 0}})  # every request asks the CRM
    service = RoutingService(settings, [crm])
    try:
        first = service.decide(parse_request(_caller(1)), Deadline(1.0))  # learns asha, kept as stale
        assert first.plan.numbers[0] == ASHA
        crm.release.clear()
        blockers = [threading.Thread(target=service.decide, args=(parse_request(_caller(i)), Deadline(0.3))) for i in (2, 3)]
        for t in blockers:
            t.start()
        time.sleep(0.05)  # both places taken
        again = service.decide(parse_request({"CallSid": "CA9", "CallFrom": _caller(1)["CallFrom"]}), Deadline(1.0))
        assert again.trace.path == "stale" and again.plan.numbers[0] == ASHA
        assert "bulkhead-full+stale" in again.trace.header()
        for t in blockers:
            t.join()
    finally:
        crm.release.set()
        service.close()


def test_the_deadline_counts_from_arrival_so_a_queued_request_answers_at_once():
    crm = SlowCrm()
    service = RoutingService(from_mapping(CONFIG), [crm])
    try:
        # The request waited 0.6 s for a server thread; its budget was 0.5 s.
        deadline = Deadline(0.5, started=time.monotonic() - 0.6)
        started = time.monotonic()
        decision = service.decide(parse_request(_caller(1)), deadline)
        assert time.monotonic() - started < 0.25  # not the CRM's time: answered without waiting
        assert crm.calls == 0
        assert decision.trace.path == "no-time-left" and decision.plan.numbers == [FALLBACK]
        assert decision.trace.elapsed_ms >= 600  # the trace tells the whole wait
    finally:
        service.close()


def test_a_lookup_whose_deadline_went_while_it_queued_is_shed_without_a_call():
    crm = SlowCrm()
    service = RoutingService(from_mapping(CONFIG), [crm])
    try:
        gone = Deadline(0.0)
        service.bulkheads["crm"].try_enter()  # as `_admit` does before submitting
        try:
            service._fetch_admitted(crm, Query("phone", "+919876500001", "caller"), "crm|x", gone)
        except Exception as exc:  # noqa: BLE001 - the kind is what matters
            assert getattr(exc, "kind", None) == "timeout"
        assert crm.calls == 0
        assert service.bulkheads["crm"].in_flight == 0  # the place is given back
    finally:
        service.close()


def test_max_in_flight_is_validated():
    import pytest

    from dialwhom.routing.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        from_mapping({**CONFIG, "connectors": [{"id": "crm", "type": "slow", "max_in_flight": 0}]})
    assert exc.value.key == "connectors[0].max_in_flight"
