"""Prometheus metrics, one registry per service (no global state)."""

from __future__ import annotations

import bisect
import os
import threading
from collections import deque
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

#: updates queued before the request that queues the next one applies them
DRAIN_AT = 256
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class Metrics:
    """The service's metrics.

    Answers and connector lookups are counted on the answer path of every request. A
    prometheus_client Counter or Histogram takes a lock per update and `labels()` validates
    its arguments each time; with many requests in flight on one worker that costs more than
    the count. So a request only appends to a deque (atomic under the GIL); the queue is
    tallied in batches into plain numbers, and always before a scrape, and a collector turns
    the tallies into the usual counter and histogram series when Prometheus asks.
    """

    def __init__(self, *, multiprocess: bool | None = None):
        #: several gunicorn workers: prometheus_client's multiprocess mode (files in
        #: $PROMETHEUS_MULTIPROC_DIR, set up by `dialwhom serve`), summed over workers at a scrape
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")) if multiprocess is None else multiprocess
        self.registry = CollectorRegistry()
        self._pending: deque[tuple[str, str, str, float | None]] = deque()
        self._drain_lock = threading.Lock()
        #: (kind, name, outcome) -> count; kind "answer": (endpoint, path), "lookup": (connector, outcome)
        self._counts: dict[tuple[str, str, str], int] = {}
        #: (kind, name) -> [bucket counts..., count in +Inf, sum]
        self._times: dict[tuple[str, str], list[float]] = {}
        if self.multiprocess:
            self._shared = {kind: (Counter(c[0], c[1], c[2], registry=None),
                                   Histogram(h[0], h[1], h[2], buckets=_BUCKETS, registry=None) if h else None)
                            for kind, (c, h) in _Collector.SERIES.items()}
        else:
            self.registry.register(_Collector(self))
        gauge_registry = None if self.multiprocess else self.registry
        self.breaker_open = Gauge("dialwhom_breaker_open", "1 while a connector's breaker is open or half-open", ["connector"],
                                  registry=gauge_registry, multiprocess_mode="max")
        self.rate_limit_remaining = Gauge("dialwhom_rate_limit_remaining", "Last rate-limit remaining value a CRM reported", ["connector"],
                                          registry=gauge_registry, multiprocess_mode="min")

    # Each of these runs on the answer path (a cached answer calls all three): one append, and
    # the length check written out, not a shared helper (a call costs as much as the append).

    def decided(self, endpoint: str, path: str, seconds: float) -> None:
        """Count one answer and its time."""
        pending = self._pending
        pending.append(("answer", endpoint, path, seconds))
        if len(pending) >= DRAIN_AT:
            self._drain(wait=False)

    def looked_up(self, connector: str, outcome: str, seconds: float | None = None) -> None:
        """Count one connector lookup (a cache hit too); `seconds` when the connector was called."""
        pending = self._pending
        pending.append(("lookup", connector, outcome, seconds))
        if len(pending) >= DRAIN_AT:
            self._drain(wait=False)

    def owner_routed(self, result: str) -> None:
        """Count one new call with a known owner: rung first, or skipped and why (away, busy, ...)."""
        pending = self._pending
        pending.append(("owner", "rung-first" if result == "first" else "skipped", result, None))
        if len(pending) >= DRAIN_AT:
            self._drain(wait=False)

    def _drain(self, *, wait: bool) -> None:
        if not self._drain_lock.acquire(blocking=wait):
            return  # another request is tallying them
        try:
            self._tally()
        finally:
            self._drain_lock.release()

    def flush(self) -> None:
        """Apply everything queued now (a scrape, or the watcher's tick in multiprocess mode)."""
        self._drain(wait=True)

    def _tally(self) -> None:
        """Apply the queue to the counts (the caller holds `_drain_lock`)."""
        counts, times, pending = self._counts, self._times, self._pending
        shared = self._shared if self.multiprocess else None
        pop, bucket = pending.popleft, bisect.bisect_left
        while pending:
            kind, name, outcome, seconds = pop()
            if shared is not None:  # written to this worker's files, read by every worker's scrape
                counter, histogram = shared[kind]
                counter.labels(name, outcome).inc()
                if seconds is not None and histogram is not None:
                    histogram.labels(name).observe(seconds)
            key = (kind, name, outcome)
            counts[key] = counts.get(key, 0) + 1
            if seconds is not None:
                slots = times.get((kind, name))
                if slots is None:
                    slots = times[(kind, name)] = [0] * (len(_BUCKETS) + 1) + [0.0]
                slots[bucket(_BUCKETS, seconds)] += 1  # bounds are inclusive (le)
                slots[-1] += seconds

    def tallies(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], list[float]]]:
        """Copies of the counts and times, everything queued included."""
        with self._drain_lock:
            self._tally()
            return dict(self._counts), {k: list(v) for k, v in self._times.items()}

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        self.flush()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


class _Collector:
    """The tallies of `Metrics` as Prometheus series."""

    SERIES = {
        "answer": (("dialwhom_decisions", "Answers given, by path", ["endpoint", "path"]),
                   ("dialwhom_decision_seconds", "Time to answer", ["endpoint"])),
        "lookup": (("dialwhom_connector_lookups", "Connector lookups by outcome", ["connector", "outcome"]),
                   ("dialwhom_connector_seconds", "Connector lookup time", ["connector"])),
        "owner": (("dialwhom_owner_routing", "New calls with a known owner: rung first, or skipped by reason", ["result", "reason"]),
                  None),
    }

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # series appear with their first count; nothing to check names against at register time

    def collect(self) -> Iterator[Metric]:
        counts, times = self._metrics.tallies()
        for kind, ((cname, chelp, clabels), timed) in self.SERIES.items():
            counter = CounterMetricFamily(cname, chelp, labels=clabels)
            for (k, name, outcome), n in sorted(counts.items()):
                if k == kind:
                    counter.add_metric([name, outcome], n)
            if timed is None:
                yield counter
                continue
            hname, hhelp, hlabels = timed
            histogram = HistogramMetricFamily(hname, hhelp, labels=hlabels)
            for (k, name), slots in sorted(times.items()):
                if k == kind:
                    cumulative, buckets = 0, []
                    for bound, n in zip((*map(str, _BUCKETS), "+Inf"), slots[:-1], strict=True):
                        cumulative += n
                        buckets.append((bound, cumulative))
                    histogram.add_metric([name], buckets, slots[-1])
            yield counter
            yield histogram
