"""Shared pytest fixtures. Add yours in their own clearly marked section."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from faultserver import FaultServer

from dialwhom.app import create_app
from dialwhom.integrations.registry import registry_from_classes


# --- the one app factory and the one fake clock ------------------------------------------------


class FakeClock:
    """A `dialwhom.routing.ports.Clock` that moves only when told: `advance(seconds)`."""

    def __init__(self, start: float = 1000.0):
        self._mono = start
        self._wall = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self._mono - 1000.0)

    def time(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        self._mono += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app():
    """`make_app(config=None, classes=None, clock=None)` -> a Flask app from the factory (config:
    a mapping, a path, or None for the search order; classes: connector types, default the
    installed ones); every runtime is closed afterwards."""
    made = []

    def make(config=None, classes=None, clock=None):
        registry = registry_from_classes(classes) if classes is not None else None
        app = create_app(config, registry=registry, clock=clock)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["dialwhom"].close()


# --- fault server (issue #3: never keep the caller waiting) -----------------------------------


@pytest.fixture
def fault_server():
    """A fresh misbehaving CRM-shaped server per test (`tests/faultserver.py`); stopped afterwards.

    ``fault_server.template`` is the ``http`` connector's ``url``; ``fault_server.mode = "hang"``
    switches behaviour; ``fault_server.count(phone)`` tells how many requests reached it.
    """
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def fault_server_factory():
    """Start more fault servers (e.g. one per connector): ``make(owners=None, mode="ok")``."""
    started: list[FaultServer] = []

    def make(owners=None, **kw) -> FaultServer:
        srv = FaultServer(owners, **kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


# --- the real Redis on this machine (shared token and rate-limit tests) ------------------------


@pytest.fixture
def redis_client():
    """``(client, prefix)``: Redis at 127.0.0.1:6379 and a key prefix of this test's own, whose keys
    are deleted afterwards; the test is skipped when no Redis answers."""
    import secrets

    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        client.close()
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"dialwhom-test-{secrets.token_hex(4)}:"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
