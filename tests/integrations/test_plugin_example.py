"""The worked plugin example (examples/plugin), installed as a third party would install it:
found through the entry point, built from config by the app, and routing a real call."""

from __future__ import annotations

import sample
import importlib.util
import json

import pytest

from dialwhom.integrations.registry import discover

INSTALLED = importlib.util.find_spec("dialwhom_example_crm") is not None and "examplecrm" in discover()
pytestmark = pytest.mark.skipif(
    not INSTALLED,
    reason="the example plugin is not installed in this environment: pip install -e examples/plugin",
)

KEY = "demo-key-0123456789"
OWNER, BACKUP, SPARE, FALLBACK = sample.ASHA, sample.VIKRAM, sample.NORTH3, sample.FALLBACK


@pytest.fixture
def crm():
    from dialwhom_example_crm.demo_server import DemoCrm

    with DemoCrm(api_key=KEY) as server:
        yield server


@pytest.fixture
def config(crm, monkeypatch):
    monkeypatch.setenv("EXAMPLECRM_API_KEY", KEY)
    return {
        "default_region": "IN",
        "budget_ms": 2000,
        "connectors": [{"id": "crm", "type": "examplecrm", "base_url": crm.url, "api_key": "${EXAMPLECRM_API_KEY}", "timeout_ms": 1000}],
        "reps": [{"owner": "asha@example.com", "phone": OWNER, "team": "north"}],
        "teams": {"north": {"backup": [BACKUP, SPARE]}},
        "fallback": [FALLBACK],
        "lines": {sample.LINE_NORTH: "north"},
    }


@pytest.fixture
def client(config):
    from dialwhom.app import create_app

    app = create_app(config)  # no registry: connector types come from the installed entry points
    yield app.test_client()
    app.extensions["dialwhom"].close()


def test_discovered_through_the_entry_point():
    from dialwhom_example_crm import ExampleCrmConnector

    (found,) = discover()["examplecrm"]
    assert found.value == "dialwhom_example_crm:ExampleCrmConnector"
    assert (found.package, found.version) == ("dialwhom-example-crm", "0.1.0")
    assert found.load() is ExampleCrmConnector


def test_listed_by_dialwhom_connectors(capsys):
    from dialwhom.cli import main

    main(["connectors"])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("examplecrm"))
    assert "dialwhom-example-crm 0.1.0" in line and "[ok]" in line


def test_app_builds_it_from_config_and_routes_a_call_through_it(client, crm):
    resp = client.get("/exotel/dial-whom", query_string={"CallSid": "c-plugin-1", "From": "09876543210", "To": "08039513882"})
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert resp.get_data(as_text=True).strip() == f"{OWNER},{BACKUP},{SPARE},{FALLBACK}"
    trace = resp.headers["X-Dialwhom-Trace"]
    assert "path=fresh" in trace and "via=crm" in trace
    assert "9876543210" not in trace
    (path, params, headers), = crm.requests
    assert path == "/v1/contacts" and params == {"phone": "+919876543210"}
    assert headers["X-Api-Key"] == KEY


def test_caller_the_crm_does_not_know_gets_the_lines_team(client, crm):
    resp = client.get("/exotel/dial-whom", query_string={"CallSid": "c-plugin-2", "From": "09811122233", "To": "08039513882"})
    assert resp.status_code == 200
    assert resp.get_data(as_text=True).strip() == f"{BACKUP},{SPARE},{FALLBACK}"
    assert "crm[caller]=not-found" in resp.headers["X-Dialwhom-Trace"]


def test_a_refused_key_still_answers_from_config(config, crm, monkeypatch):
    from dialwhom.app import create_app

    monkeypatch.setenv("EXAMPLECRM_API_KEY", "wrong-key-0123456789")
    app = create_app(config)
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c-plugin-3", "From": "09876543210", "To": "08039513882"})
    finally:
        app.extensions["dialwhom"].close()
    assert resp.status_code == 200
    assert resp.get_data(as_text=True).strip() == f"{BACKUP},{SPARE},{FALLBACK}"
    assert "crm[caller]=auth" in resp.headers["X-Dialwhom-Trace"]
    assert "wrong-key" not in resp.headers["X-Dialwhom-Trace"]


def test_the_app_runs_the_plugin_connector_and_readyz_shows_it(client):
    from dialwhom_example_crm import ExampleCrmConnector

    (conn,) = client.application.extensions["dialwhom"].connectors
    assert isinstance(conn, ExampleCrmConnector) and conn.id == "crm"
    assert KEY not in repr(conn)
    doc = client.get("/readyz").get_json()
    assert "crm" in json.dumps(doc["connectors"])  # its shape is tests/test_app.py's business
