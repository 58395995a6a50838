"""Metrics: queued counts come out exact, in the usual Prometheus series."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from dialwhom.routing.metrics import DRAIN_AT, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_answers_are_counted_by_path_with_their_times_in_buckets():
    m = Metrics()
    for seconds in (0.0004, 0.001, 0.002, 0.3, 9.0):
        m.decided("dial-whom", "cache", seconds)
    m.decided("fallback", "fallback", 0.0001)
    s = samples(m)
    assert s[("dialwhom_decisions_total", (("endpoint", "dial-whom"), ("path", "cache")))] == 5
    assert s[("dialwhom_decisions_total", (("endpoint", "fallback"), ("path", "fallback")))] == 1

    def bucket(le: str) -> float:
        return s[("dialwhom_decision_seconds_bucket", (("endpoint", "dial-whom"), ("le", le)))]

    assert bucket("0.001") == 2  # 'le' is inclusive: 0.001 itself is in it
    assert bucket("0.0025") == 3
    assert bucket("0.25") == 3
    assert bucket("0.5") == 4
    assert bucket("8.0") == 4  # 9 s is only in +Inf
    assert bucket("+Inf") == 5
    assert s[("dialwhom_decision_seconds_count", (("endpoint", "dial-whom"),))] == 5
    assert abs(s[("dialwhom_decision_seconds_sum", (("endpoint", "dial-whom"),))] - 9.3034) < 1e-9


def test_lookups_are_counted_and_only_connector_calls_are_timed():
    m = Metrics()
    m.looked_up("crm", "cache-hit")
    m.looked_up("crm", "found", 0.02)
    m.looked_up("crm", "timeout", 1.5)
    s = samples(m)
    assert s[("dialwhom_connector_lookups_total", (("connector", "crm"), ("outcome", "cache-hit")))] == 1
    assert s[("dialwhom_connector_lookups_total", (("connector", "crm"), ("outcome", "found")))] == 1
    assert s[("dialwhom_connector_seconds_count", (("connector", "crm"),))] == 2
    assert s[("dialwhom_connector_seconds_bucket", (("connector", "crm"), ("le", "0.025")))] == 1


def test_counts_from_many_threads_are_exact_across_batches():
    m = Metrics()
    per_thread, threads = 3 * DRAIN_AT + 7, 8
    start = threading.Barrier(threads)

    def work():
        start.wait()
        for _ in range(per_thread):
            m.decided("dial-whom", "cache", 0.001)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    s = samples(m)
    assert s[("dialwhom_decisions_total", (("endpoint", "dial-whom"), ("path", "cache")))] == per_thread * threads
    assert s[("dialwhom_decision_seconds_count", (("endpoint", "dial-whom"),))] == per_thread * threads


def test_a_scrape_shows_answers_still_queued():
    m = Metrics()
    m.decided("dial-whom", "cache", 0.001)  # far below DRAIN_AT: still queued
    assert samples(m)[("dialwhom_decisions_total", (("endpoint", "dial-whom"), ("path", "cache")))] == 1
    assert samples(m)[("dialwhom_decisions_total", (("endpoint", "dial-whom"), ("path", "cache")))] == 1  # not twice
