"""Prometheus metrics, one registry per service (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str], tuple] = {}
        self.decisions = Counter("dialwhom_decisions", "Answers given, by path", ["endpoint", "path"], registry=self.registry)
        self.decision_seconds = Histogram("dialwhom_decision_seconds", "Time to answer", ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.lookups = Counter("dialwhom_connector_lookups", "Connector lookups by outcome", ["connector", "outcome"], registry=self.registry)
        self.lookup_seconds = Histogram("dialwhom_connector_seconds", "Connector lookup time", ["connector"], buckets=_BUCKETS, registry=self.registry)
        self.breaker_open = Gauge("dialwhom_breaker_open", "1 while a connector's breaker is open or half-open", ["connector"], registry=self.registry)
        self.rate_limit_remaining = Gauge("dialwhom_rate_limit_remaining", "Last rate-limit remaining value a CRM reported", ["connector"], registry=self.registry)

    def decided(self, endpoint: str, path: str, seconds: float) -> None:
        """Count one answer. The labelled children are kept: `labels()` costs ~2 us a call."""
        key = (endpoint, path)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.decisions.labels(endpoint, path), self.decision_seconds.labels(endpoint))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
