"""Prometheus metrics, one registry per service (no global state)."""

from __future__ import annotations

import queue
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: answers queued before the request that queues the next one applies them
DRAIN_AT = 256
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str], tuple] = {}
        # Answers are counted through a queue: every prometheus_client update takes a lock,
        # and with many requests in flight on one worker those hand-offs cost more than the
        # count. The queue is applied in batches, and always before a scrape.
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self._drain_lock = threading.Lock()
        self.decisions = Counter("dialwhom_decisions", "Answers given, by path", ["endpoint", "path"], registry=self.registry)
        self.decision_seconds = Histogram("dialwhom_decision_seconds", "Time to answer", ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.lookups = Counter("dialwhom_connector_lookups", "Connector lookups by outcome", ["connector", "outcome"], registry=self.registry)
        self.lookup_seconds = Histogram("dialwhom_connector_seconds", "Connector lookup time", ["connector"], buckets=_BUCKETS, registry=self.registry)
        self.breaker_open = Gauge("dialwhom_breaker_open", "1 while a connector's breaker is open or half-open", ["connector"], registry=self.registry)
        self.rate_limit_remaining = Gauge("dialwhom_rate_limit_remaining", "Last rate-limit remaining value a CRM reported", ["connector"], registry=self.registry)

    def decided(self, endpoint: str, path: str, seconds: float) -> None:
        """Count one answer (applied in batches; see `_drain`)."""
        self._answers.put((endpoint, path, seconds))
        if self._answers.qsize() >= DRAIN_AT:
            self._drain(wait=False)

    def _drain(self, *, wait: bool) -> None:
        if not self._drain_lock.acquire(blocking=wait):
            return  # another request is applying them
        try:
            while True:
                try:
                    endpoint, path, seconds = self._answers.get_nowait()
                except queue.Empty:
                    return
                children = self._children.get((endpoint, path))
                if children is None:
                    children = self._children[(endpoint, path)] = (
                        self.decisions.labels(endpoint, path), self.decision_seconds.labels(endpoint))
                children[0].inc()
                children[1].observe(seconds)
        finally:
            self._drain_lock.release()

    def render(self) -> bytes:
        self._drain(wait=True)
        return generate_latest(self.registry)
