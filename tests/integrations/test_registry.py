"""Connector discovery and building: duplicates, broken plugins, metrics from the HTTP layer."""

from __future__ import annotations

import sample
import logging

import pytest
import responses

from dialwhom.app import create_app
from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.integrations.connectors.http_json import HttpJsonConnector
from dialwhom.integrations.registry import ConnectorType, build_connectors, registry_from_classes
from dialwhom.routing.config import ConfigError, from_mapping
from dialwhom.sdk import Connector, Match, Owner

BASE = {"fallback": [sample.FALLBACK], "reps": [{"owner": "asha@example.com", "phone": sample.ASHA}]}


class _BrokenEntryPoint:
    value = "broken_plugin:Connector"

    def load(self):
        raise ImportError("No module named 'broken_plugin'")


def _broken(name: str) -> ConnectorType:
    return ConnectorType(name, "broken_plugin:Connector", "broken-plugin", "0.1", entry_point=_BrokenEntryPoint())


def test_unused_broken_plugin_is_logged_and_skipped(caplog):
    registry = {**registry_from_classes([HttpJsonConnector]), "broken": [_broken("broken")]}
    settings = from_mapping({**BASE, "connectors": [{"id": "crm", "type": "http", "url": "http://127.0.0.1:9/o?p={phone}"}]})
    with caplog.at_level(logging.WARNING, logger="dialwhom.registry"):
        built = build_connectors(settings, registry)
    assert [c.id for c in built] == ["crm"]
    assert "'broken'" in caplog.text and "fails to load" in caplog.text and "broken-plugin" in caplog.text


def test_used_broken_plugin_stops_startup_naming_the_key():
    registry = {"broken": [_broken("broken")]}
    settings = from_mapping({**BASE, "connectors": [{"id": "x", "type": "broken"}]})
    with pytest.raises(ConfigError) as err:
        build_connectors(settings, registry)
    assert err.value.key == "connectors[0].type"
    assert "failed to load" in str(err.value)


def test_duplicate_type_used_in_config_stops_startup():
    registry = {"directory": registry_from_classes([DirectoryConnector])["directory"] * 2}
    settings = from_mapping({**BASE, "connectors": [{"id": "a", "type": "directory", "path": "x.csv"}]})
    with pytest.raises(ConfigError, match="registered more than once"):
        build_connectors(settings, registry)


@responses.activate
def test_rate_limit_remaining_reaches_metrics():
    responses.get("http://crm.test/owner", json={"owner": {"email": "asha@example.com"}},
                  headers={"X-RateLimit-Remaining": "42"})
    app = create_app({**BASE, "connectors": [{"id": "crm", "type": "http", "url": "http://crm.test/owner?phone={phone}"}]},
                     registry=registry_from_classes([HttpJsonConnector]))
    client = app.test_client()
    assert client.get("/exotel/dial-whom?From=09876543210").data == b"+919800000001,+918000000000"
    metrics = client.get("/metrics").data.decode()
    assert 'dialwhom_rate_limit_remaining{connector="crm"} 42.0' in metrics


def test_a_connector_saying_its_data_changed_drops_its_cached_answers():
    from dialwhom.integrations.runtime import build_runtime
    from dialwhom.routing.deadline import Deadline
    from dialwhom.routing.request import parse_request

    class Flippy(Connector):
        """Answers one owner, then (after `flip`) another, like a re-read file."""

        type_name = "flippy"
        owner = "asha@example.com"

        def lookup(self, query, *, deadline):
            return Match(Owner(email=type(self).owner))

    config = {
        "connectors": [{"id": "flip", "type": "flippy"}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA}, {"owner": "ravi@example.com", "phone": sample.VIKRAM}],
        "fallback": [sample.FALLBACK],
    }
    rt = build_runtime(config, registry=registry_from_classes([Flippy]))
    try:
        def first() -> str:
            req = parse_request({"From": "09876543210"}, "IN")
            return rt.service.decide(req, Deadline(2.0)).plan.numbers[0]

        assert first() == sample.ASHA
        Flippy.owner = "ravi@example.com"
        assert first() == sample.ASHA  # cached
        rt.connectors[0].context.data_changed()
        assert first() == sample.VIKRAM
    finally:
        rt.close()
