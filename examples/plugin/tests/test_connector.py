"""The Example CRM connector: dialwhom's contract kit, then what is specific to this API."""

from __future__ import annotations

import pytest
import responses
from responses import matchers

from dialwhom_example_crm import ExampleCrmConnector
from dialwhom.sdk import ConnectorContext, Deadline, Owner, Query
from dialwhom.testing import ConnectorContract, build_connector

BASE = "https://crm.example.test"
CONTACTS = f"{BASE}/v1/contacts"
KEY = "ex-test-key-0123456789"
CALLER = "+919876543210"


def contact(id: str, phone: str, owner: str | None = "asha@example.com", updated: str = "2024-05-01T10:00:00Z") -> dict:
    return {"id": id, "phone": phone, "owner_email": owner, "updated_at": updated, "name": f"Contact {id}"}


def asked_for(phone: str) -> list:
    """responses matchers: the number asked about, and the API key header."""
    return [matchers.query_param_matcher({"phone": phone}), matchers.header_matcher({"X-Api-Key": KEY})]


class TestExampleCrmContract(ConnectorContract):
    """dialwhom's contract kit: not-found, found, faults, deadline, masking, config."""

    connector_class = ExampleCrmConnector
    options = {"base_url": BASE, "api_key": KEY}
    expected_owner = Owner(email="asha@example.com")
    bad_options = [({"base_url": "crm.example.test"}, "base_url")]
    wrong_shapes = [
        {"data": []},
        {"contacts": "none"},
        {"contacts": [42]},
        {"contacts": [{"phone": CALLER, "owner_email": "asha@example.com"}]},
    ]

    def answer_found(self, fake_http, query):
        fake_http.get(CONTACTS, match=asked_for(query.phone), json={"contacts": [contact("c-1", "098765 43210")]})

    def answer_not_found(self, fake_http, query):
        fake_http.get(CONTACTS, match=asked_for(query.phone), json={"contacts": []})


# --- this API's own rules ------------------------------------------------------------------------


@pytest.fixture
def crm():
    conn = build_connector(ExampleCrmConnector, {"base_url": BASE + "/", "api_key": KEY}, context=ConnectorContext(id="crm"))
    yield conn
    conn.close()


def lookup(conn, phone: str = CALLER):
    return conn.lookup(Query("phone", phone), deadline=Deadline(2.0))


@responses.activate
def test_most_recently_updated_contact_wins_and_the_trace_says_why(crm):
    responses.get(CONTACTS, match=asked_for(CALLER), json={"contacts": [
        contact("c-1", "+91 98765 43210", "old@example.com", "2023-01-01T00:00:00Z"),
        contact("c-2", "9876543210", "new@example.com", "2024-06-01T00:00:00Z"),
    ]})
    match = lookup(crm)
    assert match.owner.email == "new@example.com"
    assert match.record.id == "c-2"
    assert any("2 records share this number" in n for n in match.notes)


@responses.activate
def test_loose_api_matches_are_rechecked(crm):
    responses.get(CONTACTS, json={"contacts": [contact("c-9", "+919876543219")]})
    assert lookup(crm) is None


@responses.activate
def test_contact_without_owner_is_not_found(crm):
    responses.get(CONTACTS, json={"contacts": [contact("c-1", CALLER, owner=None)]})
    assert lookup(crm) is None


@responses.activate
def test_check_proves_the_key(crm):
    responses.get(CONTACTS, match=[matchers.header_matcher({"X-Api-Key": KEY})], json={"contacts": []})
    assert "accepted" in crm.check(deadline=Deadline(2.0))


def test_trailing_slash_in_base_url_is_ignored(crm):
    assert crm.contacts_url == CONTACTS
