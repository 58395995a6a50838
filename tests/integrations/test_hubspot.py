"""The `hubspot` connector: requests made, answers understood, failures translated.

Unit tests mock HubSpot with `responses` (payload shapes from HubSpot's docs, see
the vendor documentation cited in docs/crm/); the end-to-end tests run the Flask app
against `fake_hubspot`, a real local HTTP server.
"""

from __future__ import annotations

import sample
import json
import logging
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

import fake_hubspot
from fake_hubspot import PRIVATE_APP_TOKEN, SERVICE_KEY, FakeHubSpot, sample_data  # noqa: E402
from dialwhom.sdk import RateLimiter

from dialwhom.integrations.base import ConnectorContext  # noqa: E402
from dialwhom.routing.errors import (  # noqa: E402
    AuthError,
    BadResponse,
    ConfigError,
    ConnectorUnavailable,
    RateLimited,
)
from dialwhom.integrations.connectors.hubspot import HubSpotConnector  # noqa: E402
from dialwhom.integrations.registry import build_connectors, registry_from_classes  # noqa: E402
from dialwhom.routing.schema import validate_options  # noqa: E402
from dialwhom.routing.config import from_mapping  # noqa: E402
from dialwhom.routing.deadline import Deadline  # noqa: E402
from dialwhom.routing.model import Owner, Query, Record  # noqa: E402
from dialwhom.routing.phones import variants  # noqa: E402

BASE = "https://api.hubapi.com"
OBJECTS = f"{BASE}/crm/objects/2026-03"
OWNERS = f"{BASE}/crm/owners/2026-03"
PROPS = f"{BASE}/crm/properties/2026-03"
NOT_FOUND = {"status": "error", "message": "No owner", "category": "OBJECT_NOT_FOUND", "correlationId": "x"}
CONTACTS = f"{BASE}/crm/objects/2026-03/contacts/search"
COMPANIES = f"{BASE}/crm/objects/2026-03/companies/search"
TOKEN_URL = f"{BASE}/oauth/2026-03/token"
TOKEN = "pat-na1-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CALLER = "+919876543210"
NATIONAL = "9876543210"
OWNER_ID = "41629779"
OWNER = {
    "id": OWNER_ID, "email": "asha@example.com", "type": "PERSON", "firstName": "Asha", "lastName": "Rao",
    "userId": 9586504, "userIdIncludingInactive": 9586504, "archived": False,
    "createdAt": "2019-12-25T13:01:35.228Z", "updatedAt": "2024-01-01T00:00:00Z",
    "teams": [{"id": "368390", "name": "South", "primary": False}, {"id": "368389", "name": "North", "primary": True}],
}
RATE_HEADERS = {
    "X-HubSpot-RateLimit-Max": "190", "X-HubSpot-RateLimit-Remaining": "187",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    "X-HubSpot-RateLimit-Daily": "625000", "X-HubSpot-RateLimit-Daily-Remaining": "624100",
}
EMPTY = {"total": 0, "results": []}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def _fake_clock_limiter(c: HubSpotConnector, clock: Clock) -> None:
    """The connector's own limiter (same rate and burst) on a fake clock."""
    c.search_limiter = RateLimiter(c.search_limiter.name, c.search_rate, 1.0, burst=c.search_limiter.capacity,
                                   clock=clock, sleep=clock.sleep)


def make(*, redis=None, background=False, **opts) -> HubSpotConnector:
    """A connector; its background warm-up is not started unless `background` (tests warm it
    with `warm()` when they want a warm connector, so request counts stay exact), and its search
    limiter waits on a fake clock (no real sleeps) unless it is shared through `redis`."""
    if not any(opts.get(k) for k in ("service_key", "client_id", "client_secret", "refresh_token")):
        opts.setdefault("access_token", TOKEN)
    ctx = ConnectorContext(id="hs", region="IN", timeout_s=1.0, retries=opts.pop("retries", 1), redis=redis,
                           key_prefix=opts.pop("key_prefix", "dialwhom:"))
    c = HubSpotConnector(validate_options(HubSpotConnector.config_schema, opts, "connectors[0]"), ctx)
    if not background:
        c.spawn = lambda fn: None
    if redis is None:
        _fake_clock_limiter(c, Clock())
    return c


def oauth(**opts) -> HubSpotConnector:
    return make(access_token=None, client_id="cid-123", client_secret="csecret-456", refresh_token="rtok-789", **opts)


def contact(cid: str, modified: str = "2025-06-01T08:00:00Z", **props) -> dict:
    base = {"firstname": "Ana", "lastname": "Gupta", "hubspot_owner_id": OWNER_ID, "hs_object_id": cid,
            "createdate": "2024-02-01T10:00:00Z", "lastmodifieddate": modified}
    base.update(props)
    return {"id": cid, "properties": base, "createdAt": "2024-02-01T10:00:00Z", "updatedAt": modified, "archived": False}


def searchable(national: str = NATIONAL, e164: str = CALLER) -> dict:
    return {"hs_searchable_calculated_phone_number": national, "hs_calculated_phone_number": e164}


def found(*results: dict, total: int | None = None) -> dict:
    return {"total": len(results) if total is None else total, "results": list(results)}


def phone(value: str = CALLER) -> Query:
    return Query("phone", value)


def deadline(s: float = 3.0) -> Deadline:
    return Deadline(s)


def body_of(call) -> dict:
    return json.loads(call.request.body)


def path_of(call) -> str:
    return urlsplit(call.request.url).path


def query_of(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@pytest.fixture
def hub():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


# -- config -----------------------------------------------------------------------------------


def test_private_app_token_is_enough_and_defaults_are_documented_ones():
    c = make()
    assert c.base_url == BASE and c.api_version == "2026-03" and c.auth_mode == "private_app"
    assert c.objects == ("contacts", "companies")
    assert c.phone_properties["contacts"] == ("hs_searchable_calculated_phone_number", "hs_searchable_calculated_mobile_number", "phone", "mobilephone")
    assert c.phone_properties["companies"] == ("phone",)
    assert c.owner_preference == "contact" and c.account_property is None
    assert TOKEN not in repr(c)


@pytest.mark.parametrize(
    "opts, key",
    [
        ({"access_token": None}, "service_key"),
        ({"service_key": "sk-1", "access_token": TOKEN}, "access_token"),  # both static kinds
        ({"access_token": None, "service_key": "sk-1", "client_id": "x"}, "client_id"),
        ({"api_version": "v4"}, "api_version"),
        ({"portal_id": "acme"}, "portal_id"),
        ({"queue_teams": {"Inbound": ""}}, "queue_teams.Inbound"),
        ({"access_token": None, "client_id": "x"}, "client_secret"),
        ({"access_token": None, "client_id": "x", "client_secret": "y"}, "refresh_token"),
        ({"access_token": None, "client_secret": "y", "refresh_token": "z"}, "client_id"),
        ({"access_token": TOKEN, "client_id": "x", "client_secret": "y", "refresh_token": "z"}, "client_id"),  # both kinds
        ({"objects": ["contacts", "deals"]}, "objects[1]"),
        ({"objects": []}, "objects"),
        ({"phone_properties": ["a", "b", "c", "d", "e", "f"]}, "phone_properties"),
        ({"phone_properties": ["phone", "bad name"]}, "phone_properties[1]"),
        ({"company_phone_properties": ["phone", "phone"]}, "company_phone_properties"),
        ({"account_property": "x y"}, "account_property"),
        ({"base_url": "api.hubapi.com"}, "base_url"),
    ],
)
def test_config_errors_name_the_key(opts, key):
    with pytest.raises(ConfigError) as exc:
        make(**opts)
    assert exc.value.key.removeprefix("connectors[0].") == key


def test_config_error_through_the_registry_names_the_full_key():
    settings = from_mapping({"connectors": [{"id": "crm", "type": "hubspot", "client_id": "x"}]}, environ={})
    with pytest.raises(ConfigError) as exc:
        build_connectors(settings, registry_from_classes([HubSpotConnector]))
    assert exc.value.key == "connectors[0].client_secret"


def test_schema_choices_are_enforced():
    with pytest.raises(ConfigError) as exc:
        make(owner_preference="deal")
    assert exc.value.key == "connectors[0].owner_preference"


# -- found / not found ------------------------------------------------------------------------


def test_cold_connector_found_contact_makes_one_search_and_one_owner_call(hub):
    hub.post(CONTACTS, json=found(contact("51", phone="098765 43210", **searchable())))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER, headers=RATE_HEADERS)
    match = make().lookup(phone(), deadline=deadline())

    assert match.owner == Owner(id=OWNER_ID, email="asha@example.com", name="Asha Rao", phone=None, team="North", active=True)
    assert match.record == Record(type="contact", id="51", name="Ana Gupta")
    assert "matched contact/51 on hs_searchable_calculated_phone_number" in match.notes
    assert "owner source: contact owner" in match.notes
    assert "hubspot rate limit: 187/190 left per 10000 ms, daily 624100/625000 left" in match.notes
    assert not any(NATIONAL in n for n in match.notes)

    assert [(c.request.method, path_of(c)) for c in hub.calls] == [
        ("POST", "/crm/objects/2026-03/contacts/search"),
        ("GET", f"/crm/owners/2026-03/{OWNER_ID}"),
    ]
    for call in hub.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    search = hub.calls[0].request
    assert search.headers["Content-Type"] == "application/json"
    forms = variants(CALLER)
    assert body_of(hub.calls[0]) == {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": NATIONAL}]},
            {"filters": [{"propertyName": "hs_searchable_calculated_mobile_number", "operator": "EQ", "value": NATIONAL}]},
            {"filters": [{"propertyName": "phone", "operator": "IN", "values": forms}]},
            {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": forms}]},
            {"filters": [{"propertyName": "phone", "operator": "CONTAINS_TOKEN", "value": NATIONAL}]},
        ],
        "properties": [
            "hs_searchable_calculated_phone_number", "hs_calculated_phone_number",
            "hs_searchable_calculated_mobile_number", "hs_calculated_mobile_number",
            "phone", "mobilephone", "firstname", "lastname", "hubspot_owner_id", "lastmodifieddate",
            "associatedcompanyid",
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
        "limit": 10,
    }
    assert query_of(hub.calls[1]) == {"idProperty": "id", "archived": "false"}


def test_search_stays_within_hubspot_filter_limits(hub):
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    make(phone_properties=["a1", "a2", "a3", "a4", "a5"]).lookup(phone(), deadline=deadline())
    for call in hub.calls:
        groups = body_of(call)["filterGroups"]
        assert len(groups) <= 5
        assert all(len(g["filters"]) <= 6 for g in groups)
        assert sum(len(g["filters"]) for g in groups) <= 18


def test_not_found_searches_contacts_then_companies_and_returns_none(hub, caplog):
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    with caplog.at_level(logging.DEBUG):
        assert make().lookup(phone(), deadline=deadline()) is None
    assert [path_of(c) for c in hub.calls] == ["/crm/objects/2026-03/contacts/search", "/crm/objects/2026-03/companies/search"]
    company_body = body_of(hub.calls[1])
    assert company_body["filterGroups"] == [
        {"filters": [{"propertyName": "phone", "operator": "IN", "values": variants(CALLER)}]},
        {"filters": [{"propertyName": "phone", "operator": "CONTAINS_TOKEN", "value": NATIONAL}]},
    ]
    assert company_body["properties"] == ["phone", "name", "hubspot_owner_id", "hs_lastmodifieddate"]
    assert company_body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}]
    assert NATIONAL not in caplog.text  # numbers are masked in logs


def test_company_found_when_no_contact(hub):
    company = {"id": "9001", "properties": {"name": "Acme Traders", "phone": "+91 98765 43210", "hubspot_owner_id": OWNER_ID,
                                            "hs_lastmodifieddate": "2025-04-01T08:00:00Z", "hs_object_id": "9001"},
               "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2025-04-01T08:00:00Z", "archived": False}
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=found(company))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record == Record(type="company", id="9001", name="Acme Traders")
    assert "owner source: company owner" in match.notes
    assert len(hub.calls) == 3


def test_objects_priority_is_configurable(hub):
    hub.post(COMPANIES, json=EMPTY)
    assert make(objects=["companies"]).lookup(phone(), deadline=deadline()) is None
    assert [path_of(c) for c in hub.calls] == ["/crm/objects/2026-03/companies/search"]


def test_several_matches_tie_break_on_latest_change(hub):
    hub.post(CONTACTS, json=found(
        contact("60", "2024-01-01T00:00:00Z", phone="+919876543210"),
        contact("61", "2025-07-01T09:30:00.123Z", phone="+91 98765 43210"),
        contact("62", "2025-02-01T00:00:00Z", mobilephone="098765-43210"),
    ))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "61"
    tie = [n for n in match.notes if "share this number" in n]
    assert tie and "chose contacts/61" in tie[0] and "contacts/62" in tie[0] and "contacts/60" in tie[0]


def test_records_with_an_owner_win_over_unowned_ones(hub):
    hub.post(CONTACTS, json=found(
        contact("70", "2025-09-01T00:00:00Z", phone=CALLER, hubspot_owner_id=None),
        contact("71", "2025-01-01T00:00:00Z", phone=CALLER),
    ))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "71"
    assert "skipped 1 contacts record(s) without an owner" in match.notes


def test_stored_phone_differing_only_in_format_matches(hub):
    hub.post(CONTACTS, json=found(contact("80", mobilephone="+91 (98765) 43210")))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "80"
    assert "matched contact/80 on mobilephone" in match.notes


def test_search_hit_that_is_not_the_caller_is_discarded(hub):
    hub.post(CONTACTS, json=found(
        contact("90", "2025-09-01T00:00:00Z", phone="+91 98765 43211"),  # token over-match
        contact("91", "2025-08-01T00:00:00Z", **searchable(NATIONAL, "+19876543210")),  # same digits, other country
        contact("92", "2025-01-01T00:00:00Z", phone="9876543210"),
    ))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "92"
    assert "discarded 2 contacts search hit(s) whose stored numbers are not the caller's" in match.notes


def test_only_non_matching_hits_means_not_found(hub):
    hub.post(CONTACTS, json=found(contact("90", phone="+91 98765 43211")))
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None
    assert len(hub.calls) == 2  # no owner call for a discarded hit


def test_unowned_record_is_not_a_match_and_companies_are_searched_next(hub):
    hub.post(CONTACTS, json=found(contact("93", phone=CALLER, hubspot_owner_id=None)))
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None
    assert [path_of(c) for c in hub.calls] == ["/crm/objects/2026-03/contacts/search", "/crm/objects/2026-03/companies/search"]


# -- owner ------------------------------------------------------------------------------------


def test_owner_without_rep_entry_still_gives_email_name_and_primary_team(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, hubspot_owner_id="111")))
    hub.get(f"{BASE}/crm/owners/2026-03/111", json={**OWNER, "id": "111", "email": "new.rep@example.com",
                                               "teams": [{"id": "5", "name": "West Sales", "primary": True}]})
    owner = make().lookup(phone(), deadline=deadline()).owner
    assert owner == Owner(id="111", email="new.rep@example.com", name="Asha Rao", phone=None, team="West Sales", active=True)


def test_owner_is_cached_across_lookups(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    owner_call = hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    c = make()
    first = c.lookup(phone(), deadline=deadline())
    second = c.lookup(phone(), deadline=deadline())
    assert first.owner == second.owner
    assert owner_call.call_count == 1
    assert f"owner {OWNER_ID} from cache" in second.notes
    assert [path_of(x) for x in hub.calls].count("/crm/objects/2026-03/contacts/search") == 2


def test_company_owner_preference_uses_the_primary_company(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, associatedcompanyid="9001")))
    hub.get(f"{BASE}/crm/objects/2026-03/companies/9001",
            json={"id": "9001", "properties": {"name": "Acme", "hubspot_owner_id": "52740880", "hs_object_id": "9001"},
                  "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z", "archived": False})
    hub.get(f"{BASE}/crm/owners/2026-03/52740880", json={**OWNER, "id": "52740880", "email": "vikram@example.com"})
    match = make(owner_preference="company").lookup(phone(), deadline=deadline())
    assert match.owner.id == "52740880" and match.owner.email == "vikram@example.com"
    assert "owner source: owner of primary company/9001" in match.notes
    assert [(c.request.method, path_of(c)) for c in hub.calls] == [
        ("POST", "/crm/objects/2026-03/contacts/search"),
        ("GET", "/crm/objects/2026-03/companies/9001"),
        ("GET", "/crm/owners/2026-03/52740880"),
    ]
    assert query_of(hub.calls[1]) == {"properties": "hubspot_owner_id,name"}


def test_company_preference_falls_back_to_contact_owner(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, associatedcompanyid="9001")))
    hub.get(f"{BASE}/crm/objects/2026-03/companies/9001", json={"id": "9001", "properties": {"name": "Acme", "hubspot_owner_id": None}})
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make(owner_preference="company").lookup(phone(), deadline=deadline())
    assert match.owner.id == OWNER_ID
    assert "owner source: contact owner (primary company has none)" in match.notes


def test_contact_preference_makes_no_company_call(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, associatedcompanyid="9001")))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    make().lookup(phone(), deadline=deadline())
    assert len(hub.calls) == 2


# -- auth -------------------------------------------------------------------------------------


def test_oauth_fetches_a_token_with_form_body_then_bearer(hub):
    hub.post(TOKEN_URL, json={"token_type": "bearer", "access_token": "at-1", "refresh_token": "rtok-789", "expires_in": 1800})
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    c = oauth()
    c.lookup(phone(), deadline=deadline())
    c.lookup(phone(), deadline=deadline())
    token_calls = [x for x in hub.calls if x.request.url == TOKEN_URL]
    assert len(token_calls) == 1  # cached until shortly before expires_in
    req = token_calls[0].request
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in req.headers
    assert {k: v[0] for k, v in parse_qs(req.body).items()} == {
        "grant_type": "refresh_token", "client_id": "cid-123", "client_secret": "csecret-456", "refresh_token": "rtok-789"}
    assert urlsplit(req.url).query == ""  # v3: never in the query string
    assert all(x.request.headers["Authorization"] == "Bearer at-1" for x in hub.calls if x.request.url != TOKEN_URL)


def test_oauth_401_refreshes_exactly_once_then_succeeds(hub):
    hub.post(TOKEN_URL, json={"token_type": "bearer", "access_token": "at-1", "refresh_token": "rtok-789", "expires_in": 1800})
    hub.post(TOKEN_URL, json={"token_type": "bearer", "access_token": "at-2", "refresh_token": "rtok-789", "expires_in": 1800})
    hub.post(CONTACTS, status=401, json={"status": "error", "category": "EXPIRED_AUTHENTICATION",
                                         "message": "The OAuth token used to make this call expired 3 second(s) ago.", "correlationId": "c"})
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    c = oauth()
    match = c.lookup(phone(), deadline=deadline())
    assert match.owner.id == OWNER_ID
    seq = [(path_of(x), x.request.headers.get("Authorization")) for x in hub.calls]
    assert seq == [
        ("/oauth/2026-03/token", None),
        ("/crm/objects/2026-03/contacts/search", "Bearer at-1"),
        ("/oauth/2026-03/token", None),
        ("/crm/objects/2026-03/contacts/search", "Bearer at-2"),
        (f"/crm/owners/2026-03/{OWNER_ID}", "Bearer at-2"),
    ]
    assert c.token.fetches == 2


def test_oauth_second_401_is_an_auth_error_without_more_refreshes(hub):
    hub.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 1800})
    hub.post(TOKEN_URL, json={"access_token": "at-2", "expires_in": 1800})
    hub.post(CONTACTS, status=401, json={"status": "error", "category": "INVALID_AUTHENTICATION", "message": "bad token"})
    with pytest.raises(AuthError) as exc:
        oauth().lookup(phone(), deadline=deadline())
    assert "INVALID_AUTHENTICATION" in str(exc.value)
    assert [path_of(x) for x in hub.calls] == ["/oauth/2026-03/token", "/crm/objects/2026-03/contacts/search"] * 2


def test_oauth_401_naming_missing_scopes_gets_no_new_token(hub):
    hub.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 1800})
    hub.post(CONTACTS, status=401, json={
        "status": "error", "category": "MISSING_SCOPES", "message": "This app hasn't been granted all required scopes to make this call.",
        "context": {"requiredScopes": ["crm.objects.contacts.read"]}})
    c = oauth()
    with pytest.raises(AuthError) as exc:
        c.lookup(phone(), deadline=deadline())
    assert "crm.objects.contacts.read" in str(exc.value)
    assert [path_of(x) for x in hub.calls] == ["/oauth/2026-03/token", "/crm/objects/2026-03/contacts/search"]
    assert c.token.fetches == 1


def test_oauth_bad_refresh_token_is_an_auth_error(hub):
    hub.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "refresh token is invalid, expired or revoked",
                                          "status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"})
    with pytest.raises(AuthError) as exc:
        oauth().lookup(phone(), deadline=deadline())
    assert "invalid_grant" in str(exc.value)
    assert "rtok-789" not in str(exc.value) and "csecret-456" not in str(exc.value)
    assert len(hub.calls) == 1


def test_private_app_401_is_an_auth_error_at_once(hub):
    hub.post(CONTACTS, status=401, json={"status": "error", "category": "INVALID_AUTHENTICATION", "message": "Authentication credentials not found."})
    with pytest.raises(AuthError):
        make().lookup(phone(), deadline=deadline())
    assert len(hub.calls) == 1


def test_403_missing_scope_names_the_scope(hub):
    hub.post(CONTACTS, status=403, json={
        "status": "error", "category": "MISSING_SCOPES", "message": "This app hasn't been granted all required scopes to make this call.",
        "context": {"requiredScopes": ["crm.objects.contacts.read"]}})
    with pytest.raises(AuthError) as exc:
        make().lookup(phone(), deadline=deadline())
    assert "crm.objects.contacts.read" in str(exc.value)


# -- rate limits and transport ----------------------------------------------------------------


def test_429_with_retry_after_is_rate_limited(hub):
    hub.post(CONTACTS, status=429, headers={"Retry-After": "30", **RATE_HEADERS}, json={
        "status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
        "correlationId": "c", "policyName": "TEN_SECONDLY_ROLLING"})
    with pytest.raises(RateLimited) as exc:
        make().lookup(phone(), deadline=deadline())
    assert exc.value.retry_after == 30.0
    assert "TEN_SECONDLY_ROLLING" in str(exc.value) and "187/190 left" in str(exc.value)
    assert len(hub.calls) == 1  # 30 s does not fit the deadline: no retry


@pytest.mark.parametrize("body, wait", [
    ({"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "category": "RATE_LIMITS"}, 1.0),
    ({"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY", "message": "limit"}, 1.0),
    ({"status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
      "policyName": "TEN_SECONDLY_ROLLING"}, 10.0),
    ({"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY", "message": "You have reached your daily limit."}, 3600.0),
])
def test_429_without_retry_after_fails_fast_and_holds_by_policy(hub, body, wait):
    """Fails on the old code, which waited 1 s of the caller's 2 s and tried again."""
    hub.post(CONTACTS, status=429, json=body)
    hub.post(CONTACTS, json=EMPTY)
    d = deadline(2.0)
    with pytest.raises(RateLimited) as exc:
        make(retries=2).lookup(phone(), deadline=d)
    assert exc.value.retry_after == wait  # the framework holds the connector this long
    assert len(hub.calls) == 1  # no retry inside the caller's budget
    assert d.remaining() > 1.8  # and no wait


def test_429_then_ok_is_retried_when_time_allows(hub):
    hub.post(CONTACTS, status=429, headers={"Retry-After": "0"}, json={"status": "error", "policyName": "SECONDLY"})
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None
    assert [path_of(c) for c in hub.calls].count("/crm/objects/2026-03/contacts/search") == 2


def test_500_then_ok_is_retried(hub):
    hub.post(CONTACTS, status=500, json={"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"})
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "51"
    assert [path_of(c) for c in hub.calls] == ["/crm/objects/2026-03/contacts/search"] * 2 + [f"/crm/owners/2026-03/{OWNER_ID}"]


def test_persistent_503_is_unavailable(hub):
    hub.post(CONTACTS, status=503, body="<html>Service Unavailable</html>", content_type="text/html")
    with pytest.raises(ConnectorUnavailable):
        make(retries=1).lookup(phone(), deadline=deadline())


@pytest.mark.parametrize(
    "body, ctype",
    [
        ("<!DOCTYPE html><html><body>Login</body></html>", "text/html"),
        ('{"total": 1, "results": [', "application/json"),
        ('{"total": 1, "results": "nope"}', "application/json"),
        ("[1, 2]", "application/json"),
        ("", "application/json"),
    ],
)
def test_malformed_answers_are_bad_response(hub, body, ctype):
    hub.post(CONTACTS, body=body, content_type=ctype)
    with pytest.raises(BadResponse):
        make().lookup(phone(), deadline=deadline())


def test_400_validation_error_is_bad_response_without_the_number(hub):
    hub.post(CONTACTS, status=400, json={"status": "error", "category": "VALIDATION_ERROR",
                                         "message": "Property values were not valid: 9876543210"})
    with pytest.raises(BadResponse) as exc:
        make().lookup(phone(), deadline=deadline())
    assert "VALIDATION_ERROR" in str(exc.value) and NATIONAL not in str(exc.value)


def test_wrong_path_404_is_bad_response(hub):
    hub.post(CONTACTS, status=404, body="<html>Not Found</html>", content_type="text/html")
    with pytest.raises(BadResponse):
        make().lookup(phone(), deadline=deadline())


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_is_unavailable():
    c = make(base_url=f"http://127.0.0.1:{_closed_port()}", retries=0)
    with pytest.raises(ConnectorUnavailable):
        c.lookup(phone(), deadline=deadline())


def test_unresolvable_base_url_is_unavailable():
    c = make(base_url="http://api.hubapi.invalid", retries=0)
    with pytest.raises(ConnectorUnavailable):
        c.lookup(phone(), deadline=deadline())


# -- input hygiene ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ['+919876543210" OR "1"="1', "9876543210*", "98765}43210", "*", "+91 98765 43210 OR phone:*"])
def test_query_values_with_operators_never_reach_hubspot(hub, value):
    assert make().lookup(phone(value), deadline=deadline()) is None
    assert len(hub.calls) == 0


def test_only_digits_and_variant_forms_go_into_the_search(hub):
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    make().lookup(phone("(+91) 98765-43210"), deadline=deadline())
    allowed = set(variants(CALLER)) | {NATIONAL}
    for call in hub.calls:
        for group in body_of(call)["filterGroups"]:
            for f in group["filters"]:
                values = f.get("values") or [f["value"]]
                assert set(values) <= allowed
                assert all(set(v) <= set("0123456789+- ()") for v in values)
        raw = call.request.body.decode() if isinstance(call.request.body, bytes) else call.request.body
        assert '"query"' not in raw and "*" not in raw


def test_account_lookup_is_skipped_unless_configured(hub):
    assert make().lookup(Query("account", "ACC-1001", "custom_field"), deadline=deadline()) is None
    assert len(hub.calls) == 0


def test_account_lookup_by_configured_property(hub):
    company = {"id": "9001", "properties": {"name": "Acme", "account_number": "ACC-1001", "hubspot_owner_id": OWNER_ID,
                                            "hs_lastmodifieddate": "2025-01-01T00:00:00Z"}}
    hub.post(COMPANIES, json=found(company))
    hub.get(f"{BASE}/crm/owners/2026-03/{OWNER_ID}", json=OWNER)
    match = make(account_property="account_number").lookup(Query("account", "ACC-1001", "custom_field"), deadline=deadline())
    assert match.record == Record(type="company", id="9001", name="Acme")
    body = body_of(hub.calls[0])
    assert body["filterGroups"] == [{"filters": [{"propertyName": "account_number", "operator": "EQ", "value": "ACC-1001"}]}]
    assert "account_number" in body["properties"]


@pytest.mark.parametrize("value", ['ACC-1" OR "1"="1', "ACC*", "a b", "x" * 65])
def test_account_values_with_operators_never_reach_hubspot(hub, value):
    c = make(account_property="account_number")
    assert c.lookup(Query("account", value, "custom_field"), deadline=deadline()) is None
    assert len(hub.calls) == 0


def test_hostile_owner_id_never_goes_into_a_url(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, hubspot_owner_id="../../settings/v3/users")))
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None
    assert all(path_of(c).endswith("/search") for c in hub.calls)


# -- picking the record: owned first, tried until one resolves -------------------------------------


def test_newer_ownerless_contact_with_only_a_company_does_not_hide_an_older_owned_one(hub):
    """Fails on the old code: a company association counted as owned, the newer contact won,
    its company had no owner, and the caller was treated as unknown."""
    hub.post(CONTACTS, json=found(
        contact("70", "2025-09-01T00:00:00Z", phone=CALLER, hubspot_owner_id=None, associatedcompanyid="9001"),
        contact("71", "2025-01-01T00:00:00Z", phone=CALLER),
    ))
    hub.get(f"{OWNERS}/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "71" and match.owner.id == OWNER_ID
    assert [path_of(c) for c in hub.calls] == ["/crm/objects/2026-03/contacts/search", f"/crm/owners/2026-03/{OWNER_ID}"]
    assert any("chose contacts/71" in n and "contacts/70" in n for n in match.notes)


def test_company_only_contact_is_tried_after_owned_ones_and_resolves_through_its_company(hub):
    hub.post(CONTACTS, json=found(
        contact("72", "2025-09-01T00:00:00Z", phone=CALLER, hubspot_owner_id="111"),  # owner unknown to HubSpot
        contact("73", "2025-01-01T00:00:00Z", phone=CALLER, hubspot_owner_id=None, associatedcompanyid="9001"),
    ))
    hub.get(f"{OWNERS}/111", status=404, json=NOT_FOUND)
    hub.get(f"{OBJECTS}/companies/9001", json={"id": "9001", "properties": {"name": "Acme", "hubspot_owner_id": OWNER_ID}})
    hub.get(f"{OWNERS}/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "73" and match.owner.email == "asha@example.com"
    assert "owner source: owner of primary company/9001 (contact has none)" in match.notes
    assert "contact/72 has no owner the owners API knows; trying the next record" in match.notes
    assert [path_of(c) for c in hub.calls] == [
        "/crm/objects/2026-03/contacts/search", "/crm/owners/2026-03/111", "/crm/owners/2026-03/111",
        "/crm/objects/2026-03/companies/9001", f"/crm/owners/2026-03/{OWNER_ID}"]
    assert [query_of(c).get("archived") for c in hub.calls[1:3]] == ["false", "true"]


def test_contact_whose_company_has_no_owner_is_not_owned(hub):
    hub.post(CONTACTS, json=found(contact("74", phone=CALLER, hubspot_owner_id=None, associatedcompanyid="9001")))
    hub.get(f"{OBJECTS}/companies/9001", json={"id": "9001", "properties": {"name": "Acme", "hubspot_owner_id": None}})
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None


# -- deactivated owners and queues -------------------------------------------------------------


def test_deactivated_owner_is_read_as_archived_and_reported_inactive(hub):
    """Fails on the old code, which answered a 404 with the bare id (so a reps entry keyed by
    the departed rep's id still rang them)."""
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    hub.get(f"{OWNERS}/{OWNER_ID}", status=404, json=NOT_FOUND)
    hub.get(f"{OWNERS}/{OWNER_ID}", json={**OWNER, "archived": True, "userId": None})
    match = make().lookup(phone(), deadline=deadline())
    assert match.owner == Owner(id=OWNER_ID, email="asha@example.com", name="Asha Rao", team="North", active=False)
    assert f"owner {OWNER_ID} is deactivated in HubSpot (archived)" in match.notes
    assert [query_of(c) for c in hub.calls[1:]] == [{"idProperty": "id", "archived": "false"}, {"idProperty": "id", "archived": "true"}]


def test_owner_unknown_even_as_archived_is_cached_as_unknown(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, hubspot_owner_id="111")))
    hub.post(COMPANIES, json=EMPTY)
    hub.get(f"{OWNERS}/111", status=404, json=NOT_FOUND)
    c = make()
    assert c.lookup(phone(), deadline=deadline()) is None
    assert c.lookup(phone(), deadline=deadline()) is None
    assert [path_of(x) for x in hub.calls].count("/crm/owners/2026-03/111") == 2  # once active, once archived: not again


@pytest.mark.parametrize("queue_teams, team", [(None, "Inbound Queue"), ({"Inbound queue": "north"}, "north"), ({"70000001": "south"}, "south")])
def test_queue_owner_routes_to_a_team(hub, queue_teams, team):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, hubspot_owner_id="70000001")))
    hub.get(f"{OWNERS}/70000001", json={"id": "70000001", "type": "QUEUE", "firstName": "Inbound Queue", "lastName": "",
                                        "archived": False, "teams": []})
    match = make(**({"queue_teams": queue_teams} if queue_teams else {})).lookup(phone(), deadline=deadline())
    assert match.team == team
    assert match.owner.id == "70000001" and match.owner.email is None and match.owner.active is None
    assert f"owner 70000001 is a HubSpot queue; routed to team {team!r}" in match.notes


# -- credentials and API versions --------------------------------------------------------------


def test_service_key_is_sent_as_a_bearer_token(hub):
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    c = make(service_key="sk-na1-abc-123")
    assert c.auth_mode == "service_key" and "sk-na1-abc-123" not in repr(c)
    c.lookup(phone(), deadline=deadline())
    assert {x.request.headers["Authorization"] for x in hub.calls} == {"Bearer sk-na1-abc-123"}


def test_v3_paths_are_selectable(hub):
    hub.post(f"{BASE}/crm/v3/objects/contacts/search", json=found(contact("51", phone=CALLER)))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    c = make(api_version="v3")
    assert c.lookup(phone(), deadline=deadline()).owner.id == OWNER_ID
    assert [path_of(x) for x in hub.calls] == ["/crm/v3/objects/contacts/search", f"/crm/v3/owners/{OWNER_ID}"]
    assert oauth(api_version="v3")._token_url == f"{BASE}/oauth/v3/token"
    assert oauth()._token_url == TOKEN_URL


def test_searchable_property_gets_the_national_significant_number(hub):
    """Fails on the old code, which sent `national_number` and lost Italy's leading zero."""
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    make().lookup(phone("+390612345678"), deadline=deadline())
    group = body_of(hub.calls[0])["filterGroups"][0]["filters"][0]
    assert group == {"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": "0612345678"}


def test_missing_scopes_403_in_hubspots_shape_names_the_scope(hub):
    """Fails on the old code, which read only a top-level context and named no scope."""
    hub.post(CONTACTS, status=403, json=fake_hubspot._missing_scopes("crm.objects.contacts.read"))
    with pytest.raises(AuthError) as exc:
        make().lookup(phone(), deadline=deadline())
    assert "MISSING_SCOPES" in str(exc.value) and "required scopes: crm.objects.contacts.read" in str(exc.value)


# -- local rate limit for search ---------------------------------------------------------------


def test_searches_past_the_local_rate_wait_when_it_fits_and_are_refused_when_it_does_not(hub):
    """Fails on the old code, which had no local limit and met HubSpot's 429 instead."""
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    c, clock = make(objects=["contacts"]), Clock()
    assert c.search_rate == 3.0 and c.search_limiter.capacity == 2.0  # at most 2 + 3 = 5 in any second
    _fake_clock_limiter(c, clock)
    for _ in range(2):
        c.lookup(phone(), deadline=Deadline(2.0, clock=clock))
    assert clock.now == 100.0
    for _ in range(3):
        c.lookup(phone(), deadline=Deadline(2.0, clock=clock))  # each waits 1/3 s: fits
    assert clock.now == pytest.approx(101.0)
    with pytest.raises(RateLimited) as exc:
        c.lookup(phone(), deadline=Deadline(0.1, clock=clock))  # a 1/3 s wait does not fit 0.1 s
    assert exc.value.retry_after == pytest.approx(1 / 3, abs=0.01) and exc.value.connector == "hs"
    assert len(hub.calls) == 5  # the refused search was never sent


def test_an_idle_bucket_lets_a_lookups_contact_and_company_searches_go_back_to_back(hub):
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    c, clock = make(), Clock()
    _fake_clock_limiter(c, clock)
    c.lookup(phone(), deadline=Deadline(2.0, clock=clock))
    assert clock.now == 100.0 and len(hub.calls) == 2


def test_search_limit_is_shared_by_instances_through_redis(hub, redis_client):
    client, prefix = redis_client
    hub.post(CONTACTS, json=EMPTY)
    first = make(objects=["contacts"], redis=client, key_prefix=prefix, portal_id="123456", search_rate_per_s=3)
    second = make(objects=["contacts"], redis=client, key_prefix=prefix, portal_id="123456", search_rate_per_s=3,
                  service_key="sk-other-credential-same-portal")  # burst 2, then 1 every 0.33 s
    assert first.search_limiter.name == second.search_limiter.name == "hubspot-search:portal-123456"
    first.lookup(phone(), deadline=deadline())
    first.lookup(phone(), deadline=deadline())
    with pytest.raises(RateLimited):
        second.lookup(phone(), deadline=deadline(0.2))  # the shared bucket is empty for ~0.33 s
    assert len(hub.calls) == 2


def test_instances_with_one_credential_share_a_bucket_and_others_do_not():
    assert make().search_limiter.name == make().search_limiter.name
    assert make().search_limiter.name != make(service_key="sk-2").search_limiter.name
    assert TOKEN not in make().search_limiter.name


# -- the owners directory: a warm connector makes one search per uncached lookup ------------------


def _portal(**kw) -> FakeHubSpot:
    return FakeHubSpot(**sample_data(), **kw)


def test_warm_connector_request_counts():
    """Requests per uncached lookup once the directory is loaded (the module docstring's table)."""
    clock = Clock()  # one clock for our limiter and the fake's: its waits are not slept for real
    with _portal(clock=clock) as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN)
        _fake_clock_limiter(c, clock)
        note = c.warm(deadline())
        assert "owners directory: 3 active, 1 archived (2 requests)" in note
        assert [r.path for r in hs.requests] == ["/crm/properties/2026-03/companies", "/crm/owners/2026-03", "/crm/owners/2026-03"]
        counts = {}
        for name, number in [("contact", "+919876543210"), ("company", "+918040001000"), ("none", "+919111111111"),
                             ("departed owner", "+919900011111"), ("queue", "+919900022222")]:
            hs.reset_requests()
            c.lookup(phone(number), deadline=Deadline(2.0, clock=clock))
            counts[name] = [r.path.rsplit("/", 2)[-2] + "/" + r.path.rsplit("/", 1)[-1] for r in hs.requests]
        assert counts == {
            "contact": ["contacts/search"],
            "company": ["contacts/search", "companies/search"],
            "none": ["contacts/search", "companies/search"],
            "departed owner": ["contacts/search"],
            "queue": ["contacts/search"],
        }
        c.close()


def test_directory_gives_archived_and_queue_owners_without_owner_calls():
    with _portal() as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN, queue_teams={"Inbound Queue": "north"})
        c.warm(deadline())
        departed = c.lookup(phone("+919900011111"), deadline=deadline())
        assert departed.owner == Owner(id="60000001", email="departed@example.com", name="Dev Left", team="North", active=False)
        queue = c.lookup(phone("+919900022222"), deadline=deadline())
        assert queue.team == "north"
        assert "owner 70000001 from the owners directory" in queue.notes
        c.close()


def test_directory_loads_in_the_background_on_first_use_and_reloads_when_due():
    with _portal() as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN, background=True)
        clock = Clock()
        c.directory.clock = clock
        first = c.lookup(phone(), deadline=deadline())  # cold: the owner is fetched by id meanwhile
        assert first.owner.email == "asha@example.com"
        for t in c._threads:
            t.join(2.0)
        assert c.directory.loads == 1 and len(c.directory) == 4
        hs.reset_requests()
        assert c.lookup(phone("+919988776655"), deadline=deadline()).owner.id == "52740880"
        assert [r.path for r in hs.requests] == ["/crm/objects/2026-03/contacts/search"]
        clock.now += c.directory.refresh_s  # due: the next lookup starts a reload in the background
        c.lookup(phone(), deadline=deadline())
        for t in c._threads:
            t.join(2.0)
        assert c.directory.loads == 2
        c.close()


def test_a_failed_background_load_is_logged_and_retried_later(caplog):
    with _portal(scopes={PRIVATE_APP_TOKEN: {"crm.objects.contacts.read", "crm.objects.companies.read"}}) as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN)
        runs = []
        c.spawn = lambda fn: (runs.append(fn), fn())
        with caplog.at_level(logging.WARNING):
            c.lookup(phone("+919111111111"), deadline=deadline())
            c.lookup(phone("+919111111111"), deadline=deadline())
        assert len(runs) == 1  # not again within WARM_RETRY_S
        assert "crm.objects.owners.read" in caplog.text and "owners directory not loaded" in caplog.text
        c.close()


@pytest.mark.parametrize("calculated", [True, False])
def test_companies_are_searched_on_the_calculated_phone_when_the_portal_has_it(calculated):
    with _portal(company_calculated_phone=calculated) as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN)
        c.warm(deadline())
        match = c.lookup(phone("+918040001000"), deadline=deadline())
        assert match.record.id == "9001"
        body = hs.requests_to("POST", "/crm/objects/2026-03/companies/search")[0].json
        names = [f["propertyName"] for g in body["filterGroups"] for f in g["filters"]]
        assert ("hs_searchable_calculated_phone_number" in names) is calculated
        c.close()


def test_configured_company_properties_are_kept_as_given():
    with _portal(company_calculated_phone=True) as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN, company_phone_properties=["phone"])
        c.warm(deadline())
        assert c.phone_properties["companies"] == ("phone",)
        assert hs.calls("GET", "/crm/properties/2026-03/companies") == 0
        c.close()


def test_a_field_holding_two_numbers_is_found_by_token_and_rechecked_per_number():
    with _portal() as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN)
        match = c.lookup(phone("+919845067890"), deadline=deadline())  # the second number of "9845012345, 9845067890"
        assert match.record.id == "55" and "matched contact/55 on phone" in match.notes
        c.close()


# -- check -------------------------------------------------------------------------------------


def test_check_runs_the_real_search_checks_properties_and_loads_the_directory():
    with _portal() as hs:
        c = make(base_url=hs.url, service_key=SERVICE_KEY)
        note = c.check(deadline=deadline())
        assert note.startswith("service key accepted") and "API 2026-03" in note
        assert "contacts search ran (0 hits for a number no one has)" in note
        assert "owners directory: 3 active, 1 archived" in note and "search limited to 3/s (this process only)" in note
        searches = hs.requests_to("POST", "/crm/objects/2026-03/*/search")
        assert len(searches) == 2
        assert searches[0].json["filterGroups"][0]["filters"][0]["value"] == "2025550143"
        assert hs.calls("GET", "/crm/properties/2026-03/contacts") == 1
        assert hs.calls("GET", "/crm/properties/2026-03/companies") == 1  # read once, for check and warm-up
        c.close()


def test_check_names_a_missing_property():
    with _portal() as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN, phone_properties=["phone", "work_phone"])
        with pytest.raises(BadResponse) as exc:
            c.check(deadline=deadline())
        assert "contacts have no property work_phone (properties API)" in str(exc.value)
        c.close()


def test_check_names_the_missing_scope():
    with _portal(scopes={PRIVATE_APP_TOKEN: {"crm.objects.companies.read", "crm.objects.owners.read"}}) as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN)
        with pytest.raises(AuthError) as exc:
            c.check(deadline=deadline())
        text = str(exc.value)
        assert "MISSING_SCOPES" in text and "required scopes: crm.objects.contacts.read" in text
        assert "passed: companies properties present" in text and "owners directory" in text
        c.close()


def test_check_reports_bad_credentials(hub):
    hub.get(f"{PROPS}/contacts", status=401, json={"status": "error", "category": "INVALID_AUTHENTICATION", "message": "nope"})
    with pytest.raises(AuthError):
        make(objects=["contacts"]).check(deadline=deadline())


# -- the fake follows HubSpot's documents ------------------------------------------------------


def test_fake_search_answers_429_past_five_requests_a_second():
    clock = Clock()
    with _portal(clock=clock) as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN, objects=["contacts"], search_rate_per_s=5, retries=0)
        c.search_limiter = RateLimiter("unlimited", 1000, 1.0)  # let the fake's limit, not ours, answer
        for _ in range(5):
            c.lookup(phone("+919111111111"), deadline=deadline())
        with pytest.raises(RateLimited) as exc:
            c.lookup(phone("+919111111111"), deadline=deadline())
        assert exc.value.retry_after == 1.0 and exc.value.retryable is False
        clock.now += 1.0
        assert c.lookup(phone("+919111111111"), deadline=deadline()) is None
        c.close()
    raw = hs.requests_to("POST", "/crm/objects/2026-03/contacts/search")
    assert len(raw) == 7


def test_fake_archived_owner_is_404_unless_archived_true_and_paths_are_versioned():
    with _portal() as hs:
        c = make(base_url=hs.url, access_token=PRIVATE_APP_TOKEN)
        for path in ("/crm/owners/2026-03/60000001", "/crm/v3/owners/60000001"):
            assert c.http.request("GET", hs.url + path, deadline=deadline(), params={"archived": "false"}).status == 404
            assert c.http.request("GET", hs.url + path, deadline=deadline(), params={"archived": "true"}).json()["email"] == "departed@example.com"
        assert c.http.request("GET", hs.url + "/crm/owners/2099-01/60000001", deadline=deadline()).status == 404
        c.close()


# -- end to end: the Flask app against the fake HubSpot ----------------------------------------


@pytest.fixture
def fake():
    with FakeHubSpot(**sample_data()) as hs:
        yield hs


def _app_config(base_url: str) -> dict:
    return {
        "default_region": "IN",
        "budget_ms": 3000,
        "connectors": [{"id": "crm", "type": "hubspot", "base_url": base_url, "access_token": "${HUBSPOT_TOKEN}", "timeout_ms": 2000}],
        "reps": [
            {"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
            {"owner": "52740880", "phone": sample.MEERA, "team": "south"},
        ],
        "teams": {"north": {"backup": [sample.VIKRAM, sample.NORTH3]}, "south": {"backup": [sample.RAHUL]}},
        "fallback": [sample.FALLBACK],
    }


def _app(config: dict):
    app_module = pytest.importorskip("dialwhom.app")
    app = app_module.create_app(config, registry=registry_from_classes([HubSpotConnector]))
    return app


def test_e2e_known_caller_rings_owner_then_team_backups(fake, monkeypatch, caplog):
    caplog.set_level("INFO", logger="dialwhom.decision")
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    app = _app(_app_config(fake.url))
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c1", "From": "09876543210", "To": "08039513882"})
        assert resp.status_code == 200
        assert resp.mimetype == "text/plain"
        numbers = resp.get_data(as_text=True).strip().split(",")
        assert numbers[:3] == [sample.ASHA, sample.VIKRAM, sample.NORTH3]
        assert "X-Dialwhom-Trace" in resp.headers
        searches = fake.requests_to("POST", "/crm/objects/2026-03/contacts/search")
        assert len(searches) == 1
        assert searches[0].headers["Authorization"] == f"Bearer {PRIVATE_APP_TOKEN}"
        # The first lookup starts the owners directory loading in the background; whichever
        # finishes first names the owner, so the owner costs one GET or none, never more.
        from_directory = "from the owners directory" in caplog.text  # the decision line's notes
        assert fake.calls("GET", "/crm/owners/2026-03/41629779") == (0 if from_directory else 1)
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_owner_matched_by_id_and_company_caller(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    app = _app(_app_config(fake.url))
    try:
        client = app.test_client()
        mobile = client.get("/exotel/dial-whom", query_string={"CallSid": "c2", "From": "09988776655", "To": "08039513882"})
        assert mobile.get_data(as_text=True).split(",")[:2] == [sample.MEERA, sample.RAHUL]
        company = client.get("/exotel/dial-whom", query_string={"CallSid": "c3", "From": "08040001000", "To": "08039513882"})
        assert company.get_data(as_text=True).split(",")[:2] == [sample.MEERA, sample.RAHUL]
        assert fake.calls("POST", "/crm/objects/2026-03/companies/search") == 1
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_owner_without_rep_entry_rings_the_hubspot_team_backups(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    config = _app_config(fake.url)
    config["reps"] = [r for r in config["reps"] if r["owner"] != "asha@example.com"]
    app = _app(config)
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c5", "From": "09876543210", "To": "08039513882"})
        # HubSpot says Asha's primary team is "North": config team "north" matches it
        assert resp.get_data(as_text=True).split(",")[:2] == [sample.VIKRAM, sample.NORTH3]
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_unknown_caller_gets_fallback(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    app = _app(_app_config(fake.url))
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c4", "From": "09111111111", "To": "08039513882"})
        assert resp.status_code == 200
        assert resp.get_data(as_text=True).strip() == sample.FALLBACK
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_oauth_refresh_against_the_fake(monkeypatch):
    with FakeHubSpot(**sample_data(), tokens=(), oauth_client=("cid", "csecret", "rtok")) as hs:
        c = make(access_token=None, client_id="cid", client_secret="csecret", refresh_token="rtok", base_url=hs.url)
        assert c.lookup(phone(), deadline=deadline()).owner.email == "asha@example.com"
        hs.expire_tokens()
        c._owners.clear()
        assert c.lookup(phone(), deadline=deadline()).owner.email == "asha@example.com"
        assert hs.calls("POST", "/oauth/2026-03/token") == 2
        token_req = hs.requests_to("POST", "/oauth/2026-03/token")[0]
        assert token_req.form["grant_type"] == ["refresh_token"] and not token_req.query


def test_e2e_fake_rejects_more_filter_groups_than_hubspot(fake):
    c = make(access_token=PRIVATE_APP_TOKEN, base_url=fake.url)
    c.phone_properties["contacts"] = tuple(f"phone{i}" for i in range(6))  # bypass config validation
    with pytest.raises(BadResponse) as exc:
        c.lookup(phone(), deadline=deadline())
    assert "VALIDATION_ERROR" in str(exc.value)


def test_e2e_injected_html_and_429(fake):
    c = make(access_token=PRIVATE_APP_TOKEN, base_url=fake.url, retries=0)
    fake.inject(200, "<!DOCTYPE html><html>maintenance</html>", path="/crm/objects/2026-03/contacts/search")
    with pytest.raises(BadResponse):
        c.lookup(phone(), deadline=deadline())
    fake.inject(429, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY", "message": "limit"},
                headers={"Retry-After": "2"}, path="/crm/objects/2026-03/contacts/search")
    with pytest.raises(RateLimited) as exc:
        c.lookup(phone(), deadline=deadline())
    assert exc.value.retry_after == 2.0


def test_e2e_queue_owned_caller_rings_the_queues_team(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    config = _app_config(fake.url)
    config["connectors"][0]["queue_teams"] = {"Inbound Queue": "north"}
    app = _app(config)
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c6", "From": "09900022222", "To": "08039513882"})
        assert resp.get_data(as_text=True).split(",")[:2] == [sample.VIKRAM, sample.NORTH3]
    finally:
        app.extensions["dialwhom"].close()
