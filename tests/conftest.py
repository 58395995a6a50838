"""Shared pytest fixtures. Add yours in their own clearly marked section."""

from __future__ import annotations


import pytest


from faultserver import FaultServer  # noqa: E402


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
