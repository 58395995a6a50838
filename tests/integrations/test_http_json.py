"""The ``http`` connector: a team's own JSON endpoint (README, "Connectors")."""

from __future__ import annotations

import sample
import pytest
import responses
from responses import matchers

from dialwhom.integrations.base import ConnectorContext
from dialwhom.routing.errors import AuthError, BadResponse, ConfigError
from dialwhom.integrations.connectors.http_json import HttpJsonConnector
from dialwhom.testing import build_connector
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Owner, Query, Record

BASE = "https://owners.example.test"
CALLER = "+919876543210"
TOKEN = "tok-abcdefgh-12345678"


def build(url: str = BASE + "/owner?phone={phone}", **options) -> HttpJsonConnector:
    return build_connector(HttpJsonConnector, {"url": url, **options}, context=ConnectorContext(id="crm"))


def ask(conn, query: Query = Query("phone", CALLER)):
    return conn.lookup(query, deadline=Deadline(2.0))


@pytest.fixture
def http():
    with responses.RequestsMock() as mock:
        yield mock


# --- the URL template ------------------------------------------------------------------------------


@pytest.mark.parametrize("url, words", [
    ("ftp://owners.example.test/{phone}", "must start with http:// or https://"),
    ("owners.example.test/{phone}", "must start with http:// or https://"),
    ("https://owners.example.test/owner", "needs a {phone} or {key} placeholder"),
    ("https://owners.example.test/{caller}", "unknown placeholder {caller}"),
    ("https://owners.example.test/{0}", "unknown placeholder {0}"),
    ("https://owners.example.test/{phone", "bad placeholder syntax"),
    ("https://owners.example.test/}{phone}", "bad placeholder syntax"),
])
def test_url_template_is_checked_at_startup(url, words):
    with pytest.raises(ConfigError) as info:
        build(url)
    assert info.value.key == "connectors[0].url"
    assert words in info.value.message


@pytest.mark.parametrize("url, supports", [
    (BASE + "/owner?phone={phone}", ("phone",)),
    (BASE + "/owner/{kind}/{key}", ("phone", "account")),
    (BASE + "/owner?phone={phone}&account={key}", ("phone", "account")),
])
def test_supports_follows_the_placeholders(url, supports):
    assert build(url).supports == supports


def test_placeholders_are_url_encoded(http):
    conn = build(BASE + "/owners/{kind}/{key}?phone={phone}")
    http.get(f"{BASE}/owners/phone/%2B919876543210?phone=%2B919876543210", json={"owner": None})
    http.get(f"{BASE}/owners/account/A%201%2F2%26x%3Fy%23z?phone=", json={"owner": None})
    assert ask(conn) is None
    assert ask(conn, Query("account", "A 1/2&x?y#z", "custom_field")) is None
    assert [c.request.url for c in http.calls] == [
        f"{BASE}/owners/phone/%2B919876543210?phone=%2B919876543210",
        f"{BASE}/owners/account/A%201%2F2%26x%3Fy%23z?phone=",
    ]


# --- answers ---------------------------------------------------------------------------------------


def test_full_answer(http):
    http.get(f"{BASE}/owner", json={
        "owner": {"id": "u-17", "email": "asha@example.com", "name": "Asha", "phone": sample.ASHA, "team": "north"},
        "team": "north",
        "record": {"type": "account", "id": "A-1", "name": "Acme"},
    })
    match = ask(build())
    assert match.owner == Owner(id="u-17", email="asha@example.com", name="Asha", phone=sample.ASHA, team="north")
    assert match.team == "north"
    assert match.record == Record("account", "A-1", "Acme")


def test_partial_owner_is_enough(http):
    http.get(f"{BASE}/owner", json={"owner": {"email": " asha@example.com ", "id": 17, "name": True}})
    match = ask(build())
    assert match.owner == Owner(id="17", email="asha@example.com")
    assert match.team is None and match.record is None


@pytest.mark.parametrize("answer", [
    {"status": 404},
    {"json": {"owner": None}},
    {"status": 204},
], ids=["404", "owner-null", "204"])
def test_not_found(http, answer):
    http.get(f"{BASE}/owner", **answer)
    assert ask(build()) is None


@pytest.mark.parametrize("doc", [
    [{"owner": {"id": "u-17"}}],
    "asha@example.com",
    42,
    {"owner": "asha@example.com"},
    {"owner": ["u-17"]},
    {"owner": {}},
    {"owner": {"name": "Asha", "team": "north"}},
    {"owner": {"id": "  ", "email": ""}},
])
def test_wrong_shapes_are_bad_response(http, doc):
    http.get(f"{BASE}/owner", json=doc)
    with pytest.raises(BadResponse):
        ask(build())


def test_html_login_page_is_bad_response(http):
    http.get(f"{BASE}/owner", body="<!DOCTYPE html><html>Sign in</html>", content_type="text/html")
    with pytest.raises(BadResponse, match="HTML"):
        ask(build())


# --- headers and the bearer token ------------------------------------------------------------------


def test_bearer_token_and_headers_are_sent(http):
    http.get(f"{BASE}/owner", match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}", "X-Team": "sales", "X-Num": "7"})],
             json={"owner": {"id": "u-17"}})
    assert ask(build(bearer_token=TOKEN, headers={"X-Team": "sales", "X-Num": 7})).owner.id == "u-17"


def test_no_authorization_header_without_a_token(http):
    http.get(f"{BASE}/owner", json={"owner": {"id": "u-17"}})
    ask(build())
    assert "Authorization" not in http.calls[0].request.headers


def test_bearer_token_is_masked_in_repr():
    conn = build(bearer_token=TOKEN)
    assert TOKEN not in repr(conn)
    assert "'bearer_token': 'to***'" in repr(conn)


def test_refused_token_is_auth_error(http):
    http.get(f"{BASE}/owner", status=401)
    with pytest.raises(AuthError):
        ask(build(bearer_token=TOKEN))


@pytest.mark.parametrize("options, key", [
    ({"headers": "X-Team: sales"}, "headers"),
    ({"bearer_token": 12345678}, None),  # numbers are coerced to text
    ({"bearer_token": ["a"]}, "bearer_token"),
])
def test_option_types(options, key):
    if key is None:
        assert build(**options).options["bearer_token"] == "12345678"
        return
    with pytest.raises(ConfigError) as info:
        build(**options)
    assert info.value.key == f"connectors[0].{key}"
