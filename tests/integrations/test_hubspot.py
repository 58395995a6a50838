"""The `hubspot` connector: requests made, answers understood, failures translated.

Unit tests mock HubSpot with `responses` (payload shapes from HubSpot's docs, see
the vendor documentation cited in docs/crm/); the end-to-end tests run the Flask app
against `fake_hubspot`, a real local HTTP server.
"""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from fake_hubspot import PRIVATE_APP_TOKEN, FakeHubSpot, sample_data  # noqa: E402

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
CONTACTS = f"{BASE}/crm/v3/objects/contacts/search"
COMPANIES = f"{BASE}/crm/v3/objects/companies/search"
TOKEN_URL = f"{BASE}/oauth/v3/token"
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


def make(**opts) -> HubSpotConnector:
    opts.setdefault("access_token", TOKEN)
    ctx = ConnectorContext(id="hs", region="IN", timeout_s=1.0, retries=opts.pop("retries", 1))
    return HubSpotConnector(validate_options(HubSpotConnector.config_schema, opts, "connectors[0]"), ctx)


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
    assert c.base_url == BASE
    assert c.objects == ("contacts", "companies")
    assert c.phone_properties["contacts"] == ("hs_searchable_calculated_phone_number", "hs_searchable_calculated_mobile_number", "phone", "mobilephone")
    assert c.phone_properties["companies"] == ("phone",)
    assert c.owner_preference == "contact" and c.account_property is None
    assert TOKEN not in repr(c)


@pytest.mark.parametrize(
    "opts, key",
    [
        ({"access_token": None}, "access_token"),
        ({"access_token": None, "client_id": "x"}, "client_secret"),
        ({"access_token": None, "client_id": "x", "client_secret": "y"}, "refresh_token"),
        ({"access_token": None, "client_secret": "y", "refresh_token": "z"}, "client_id"),
        ({"client_id": "x", "client_secret": "y", "refresh_token": "z"}, "client_id"),  # both kinds
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
    assert exc.value.key == key


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


def test_found_contact_makes_exactly_one_search_and_one_owner_call(hub):
    hub.post(CONTACTS, json=found(contact("51", phone="098765 43210", **searchable())))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER, headers=RATE_HEADERS)
    match = make().lookup(phone(), deadline=deadline())

    assert match.owner == Owner(id=OWNER_ID, email="asha@example.com", name="Asha Rao", phone=None, team="North")
    assert match.record == Record(type="contact", id="51", name="Ana Gupta")
    assert "matched contact/51 on hs_searchable_calculated_phone_number" in match.notes
    assert "owner source: contact owner" in match.notes
    assert "hubspot rate limit: 187/190 left per 10000 ms, daily 624100/625000 left" in match.notes
    assert not any(NATIONAL in n for n in match.notes)

    assert [(c.request.method, path_of(c)) for c in hub.calls] == [
        ("POST", "/crm/v3/objects/contacts/search"),
        ("GET", f"/crm/v3/owners/{OWNER_ID}"),
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
    assert [path_of(c) for c in hub.calls] == ["/crm/v3/objects/contacts/search", "/crm/v3/objects/companies/search"]
    company_body = body_of(hub.calls[1])
    assert company_body["filterGroups"] == [{"filters": [{"propertyName": "phone", "operator": "IN", "values": variants(CALLER)}]}]
    assert company_body["properties"] == ["phone", "name", "hubspot_owner_id", "hs_lastmodifieddate"]
    assert company_body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}]
    assert NATIONAL not in caplog.text  # numbers are masked in logs


def test_company_found_when_no_contact(hub):
    company = {"id": "9001", "properties": {"name": "Acme Traders", "phone": "+91 98765 43210", "hubspot_owner_id": OWNER_ID,
                                            "hs_lastmodifieddate": "2025-04-01T08:00:00Z", "hs_object_id": "9001"},
               "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2025-04-01T08:00:00Z", "archived": False}
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=found(company))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record == Record(type="company", id="9001", name="Acme Traders")
    assert "owner source: company owner" in match.notes
    assert len(hub.calls) == 3


def test_objects_priority_is_configurable(hub):
    hub.post(COMPANIES, json=EMPTY)
    assert make(objects=["companies"]).lookup(phone(), deadline=deadline()) is None
    assert [path_of(c) for c in hub.calls] == ["/crm/v3/objects/companies/search"]


def test_several_matches_tie_break_on_latest_change(hub):
    hub.post(CONTACTS, json=found(
        contact("60", "2024-01-01T00:00:00Z", phone="+919876543210"),
        contact("61", "2025-07-01T09:30:00.123Z", phone="+91 98765 43210"),
        contact("62", "2025-02-01T00:00:00Z", mobilephone="098765-43210"),
    ))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "61"
    tie = [n for n in match.notes if "share this number" in n]
    assert tie and "chose contacts/61" in tie[0] and "contacts/62" in tie[0] and "contacts/60" in tie[0]


def test_records_with_an_owner_win_over_unowned_ones(hub):
    hub.post(CONTACTS, json=found(
        contact("70", "2025-09-01T00:00:00Z", phone=CALLER, hubspot_owner_id=None),
        contact("71", "2025-01-01T00:00:00Z", phone=CALLER),
    ))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "71"
    assert "skipped 1 contacts record(s) without an owner" in match.notes


def test_stored_phone_differing_only_in_format_matches(hub):
    hub.post(CONTACTS, json=found(contact("80", mobilephone="+91 (98765) 43210")))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "80"
    assert "matched contact/80 on mobilephone" in match.notes


def test_search_hit_that_is_not_the_caller_is_discarded(hub):
    hub.post(CONTACTS, json=found(
        contact("90", "2025-09-01T00:00:00Z", phone="+91 98765 43211"),  # token over-match
        contact("91", "2025-08-01T00:00:00Z", **searchable(NATIONAL, "+19876543210")),  # same digits, other country
        contact("92", "2025-01-01T00:00:00Z", phone="9876543210"),
    ))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "92"
    assert "discarded 2 contacts search hit(s) whose stored numbers are not the caller's" in match.notes


def test_only_non_matching_hits_means_not_found(hub):
    hub.post(CONTACTS, json=found(contact("90", phone="+91 98765 43211")))
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None
    assert len(hub.calls) == 2  # no owner call for a discarded hit


def test_unowned_record_is_not_a_match(hub):
    hub.post(CONTACTS, json=found(contact("93", phone=CALLER, hubspot_owner_id=None)))
    assert make().lookup(phone(), deadline=deadline()) is None
    assert len(hub.calls) == 1


# -- owner ------------------------------------------------------------------------------------


def test_owner_without_rep_entry_still_gives_email_name_and_primary_team(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, hubspot_owner_id="111")))
    hub.get(f"{BASE}/crm/v3/owners/111", json={**OWNER, "id": "111", "email": "new.rep@example.com",
                                               "teams": [{"id": "5", "name": "West Sales", "primary": True}]})
    owner = make().lookup(phone(), deadline=deadline()).owner
    assert owner == Owner(id="111", email="new.rep@example.com", name="Asha Rao", phone=None, team="West Sales")


def test_owner_is_cached_across_lookups(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    owner_call = hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    c = make()
    first = c.lookup(phone(), deadline=deadline())
    second = c.lookup(phone(), deadline=deadline())
    assert first.owner == second.owner
    assert owner_call.call_count == 1
    assert f"owner {OWNER_ID} from cache" in second.notes
    assert [path_of(x) for x in hub.calls].count("/crm/v3/objects/contacts/search") == 2


def test_archived_owner_404_gives_the_owner_id_only(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", status=404,
            json={"status": "error", "message": "No owner", "category": "OBJECT_NOT_FOUND", "correlationId": "x"})
    match = make().lookup(phone(), deadline=deadline())
    assert match.owner == Owner(id=OWNER_ID)
    assert any("not in the owners API" in n for n in match.notes)


def test_company_owner_preference_uses_the_primary_company(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, associatedcompanyid="9001")))
    hub.get(f"{BASE}/crm/v3/objects/companies/9001",
            json={"id": "9001", "properties": {"name": "Acme", "hubspot_owner_id": "52740880", "hs_object_id": "9001"},
                  "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z", "archived": False})
    hub.get(f"{BASE}/crm/v3/owners/52740880", json={**OWNER, "id": "52740880", "email": "vikram@example.com"})
    match = make(owner_preference="company").lookup(phone(), deadline=deadline())
    assert match.owner.id == "52740880" and match.owner.email == "vikram@example.com"
    assert "owner source: owner of primary company/9001" in match.notes
    assert [(c.request.method, path_of(c)) for c in hub.calls] == [
        ("POST", "/crm/v3/objects/contacts/search"),
        ("GET", "/crm/v3/objects/companies/9001"),
        ("GET", "/crm/v3/owners/52740880"),
    ]
    assert query_of(hub.calls[1]) == {"properties": "hubspot_owner_id,name"}


def test_company_preference_falls_back_to_contact_owner(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, associatedcompanyid="9001")))
    hub.get(f"{BASE}/crm/v3/objects/companies/9001", json={"id": "9001", "properties": {"name": "Acme", "hubspot_owner_id": None}})
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make(owner_preference="company").lookup(phone(), deadline=deadline())
    assert match.owner.id == OWNER_ID
    assert "owner source: contact owner (primary company has none)" in match.notes


def test_contact_preference_makes_no_company_call(hub):
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER, associatedcompanyid="9001")))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
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
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    c = oauth()
    match = c.lookup(phone(), deadline=deadline())
    assert match.owner.id == OWNER_ID
    seq = [(path_of(x), x.request.headers.get("Authorization")) for x in hub.calls]
    assert seq == [
        ("/oauth/v3/token", None),
        ("/crm/v3/objects/contacts/search", "Bearer at-1"),
        ("/oauth/v3/token", None),
        ("/crm/v3/objects/contacts/search", "Bearer at-2"),
        (f"/crm/v3/owners/{OWNER_ID}", "Bearer at-2"),
    ]
    assert c.token.fetches == 2


def test_oauth_second_401_is_an_auth_error_without_more_refreshes(hub):
    hub.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 1800})
    hub.post(TOKEN_URL, json={"access_token": "at-2", "expires_in": 1800})
    hub.post(CONTACTS, status=401, json={"status": "error", "category": "INVALID_AUTHENTICATION", "message": "bad token"})
    with pytest.raises(AuthError) as exc:
        oauth().lookup(phone(), deadline=deadline())
    assert "INVALID_AUTHENTICATION" in str(exc.value)
    assert [path_of(x) for x in hub.calls] == ["/oauth/v3/token", "/crm/v3/objects/contacts/search"] * 2


def test_oauth_401_naming_missing_scopes_gets_no_new_token(hub):
    hub.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 1800})
    hub.post(CONTACTS, status=401, json={
        "status": "error", "category": "MISSING_SCOPES", "message": "This app hasn't been granted all required scopes to make this call.",
        "context": {"requiredScopes": ["crm.objects.contacts.read"]}})
    c = oauth()
    with pytest.raises(AuthError) as exc:
        c.lookup(phone(), deadline=deadline())
    assert "crm.objects.contacts.read" in str(exc.value)
    assert [path_of(x) for x in hub.calls] == ["/oauth/v3/token", "/crm/v3/objects/contacts/search"]
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


@pytest.mark.parametrize("policy, wait", [("SECONDLY", 1.0), ("TEN_SECONDLY_ROLLING", 1.0), ("DAILY", 3600.0)])
def test_429_without_retry_after_waits_by_policy(hub, policy, wait):
    hub.post(CONTACTS, status=429, json={"status": "error", "errorType": "RATE_LIMIT", "policyName": policy, "message": "limit"})
    with pytest.raises(RateLimited) as exc:
        make(retries=0).lookup(phone(), deadline=deadline())
    assert exc.value.retry_after == wait


def test_429_then_ok_is_retried_when_time_allows(hub):
    hub.post(CONTACTS, status=429, headers={"Retry-After": "0"}, json={"status": "error", "policyName": "SECONDLY"})
    hub.post(CONTACTS, json=EMPTY)
    hub.post(COMPANIES, json=EMPTY)
    assert make().lookup(phone(), deadline=deadline()) is None
    assert [path_of(c) for c in hub.calls].count("/crm/v3/objects/contacts/search") == 2


def test_500_then_ok_is_retried(hub):
    hub.post(CONTACTS, status=500, json={"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"})
    hub.post(CONTACTS, json=found(contact("51", phone=CALLER)))
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
    match = make().lookup(phone(), deadline=deadline())
    assert match.record.id == "51"
    assert [path_of(c) for c in hub.calls] == ["/crm/v3/objects/contacts/search"] * 2 + [f"/crm/v3/owners/{OWNER_ID}"]


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
    hub.get(f"{BASE}/crm/v3/owners/{OWNER_ID}", json=OWNER)
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
    assert make().lookup(phone(), deadline=deadline()) is None
    assert len(hub.calls) == 1


# -- check ------------------------------------------------------------------------------------


def test_check_makes_one_cheap_call(hub):
    hub.get(f"{BASE}/crm/v3/owners", json={"results": [OWNER]}, headers=RATE_HEADERS)
    note = make().check(deadline=deadline())
    assert "private app token accepted" in note and "624100/625000" in note
    assert len(hub.calls) == 1 and query_of(hub.calls[0]) == {"limit": "1"}
    assert hub.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_check_reports_bad_credentials(hub):
    hub.get(f"{BASE}/crm/v3/owners", status=401, json={"status": "error", "category": "INVALID_AUTHENTICATION", "message": "nope"})
    with pytest.raises(AuthError):
        make().check(deadline=deadline())


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
            {"owner": "asha@example.com", "phone": "+919800000001", "team": "north"},
            {"owner": "52740880", "phone": "+919800000011", "team": "south"},
        ],
        "teams": {"north": {"backup": ["+919800000002", "+919800000003"]}, "south": {"backup": ["+919800000012"]}},
        "fallback": ["+918000000000"],
    }


def _app(config: dict):
    app_module = pytest.importorskip("dialwhom.app")
    app = app_module.create_app(config, registry=registry_from_classes([HubSpotConnector]))
    return app


def test_e2e_known_caller_rings_owner_then_team_backups(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    app = _app(_app_config(fake.url))
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c1", "From": "09876543210", "To": "08039513882"})
        assert resp.status_code == 200
        assert resp.mimetype == "text/plain"
        numbers = resp.get_data(as_text=True).strip().split(",")
        assert numbers[:3] == ["+919800000001", "+919800000002", "+919800000003"]
        assert "X-Dialwhom-Trace" in resp.headers
        searches = fake.requests_to("POST", "/crm/v3/objects/contacts/search")
        assert len(searches) == 1
        assert searches[0].headers["Authorization"] == f"Bearer {PRIVATE_APP_TOKEN}"
        assert fake.calls("GET", "/crm/v3/owners/41629779") == 1
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_owner_matched_by_id_and_company_caller(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    app = _app(_app_config(fake.url))
    try:
        client = app.test_client()
        mobile = client.get("/exotel/dial-whom", query_string={"CallSid": "c2", "From": "09988776655", "To": "08039513882"})
        assert mobile.get_data(as_text=True).split(",")[:2] == ["+919800000011", "+919800000012"]
        company = client.get("/exotel/dial-whom", query_string={"CallSid": "c3", "From": "08040001000", "To": "08039513882"})
        assert company.get_data(as_text=True).split(",")[:2] == ["+919800000011", "+919800000012"]
        assert fake.calls("POST", "/crm/v3/objects/companies/search") == 1
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
        assert resp.get_data(as_text=True).split(",")[:2] == ["+919800000002", "+919800000003"]
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_unknown_caller_gets_fallback(fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", PRIVATE_APP_TOKEN)
    app = _app(_app_config(fake.url))
    try:
        resp = app.test_client().get("/exotel/dial-whom", query_string={"CallSid": "c4", "From": "09111111111", "To": "08039513882"})
        assert resp.status_code == 200
        assert resp.get_data(as_text=True).strip() == "+918000000000"
    finally:
        app.extensions["dialwhom"].close()


def test_e2e_oauth_refresh_against_the_fake(monkeypatch):
    with FakeHubSpot(**sample_data(), tokens=(), oauth_client=("cid", "csecret", "rtok")) as hs:
        c = make(access_token=None, client_id="cid", client_secret="csecret", refresh_token="rtok", base_url=hs.url)
        assert c.lookup(phone(), deadline=deadline()).owner.email == "asha@example.com"
        hs.expire_tokens()
        c._owners.clear()
        assert c.lookup(phone(), deadline=deadline()).owner.email == "asha@example.com"
        assert hs.calls("POST", "/oauth/v3/token") == 2
        token_req = hs.requests_to("POST", "/oauth/v3/token")[0]
        assert token_req.form["grant_type"] == ["refresh_token"] and not token_req.query


def test_e2e_fake_rejects_more_filter_groups_than_hubspot(fake):
    c = make(access_token=PRIVATE_APP_TOKEN, base_url=fake.url)
    c.phone_properties["contacts"] = tuple(f"phone{i}" for i in range(6))  # bypass config validation
    with pytest.raises(BadResponse) as exc:
        c.lookup(phone(), deadline=deadline())
    assert "VALIDATION_ERROR" in str(exc.value)


def test_e2e_injected_html_and_429(fake):
    c = make(access_token=PRIVATE_APP_TOKEN, base_url=fake.url, retries=0)
    fake.inject(200, "<!DOCTYPE html><html>maintenance</html>", path="/crm/v3/objects/contacts/search")
    with pytest.raises(BadResponse):
        c.lookup(phone(), deadline=deadline())
    fake.inject(429, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY", "message": "limit"},
                headers={"Retry-After": "2"}, path="/crm/v3/objects/contacts/search")
    with pytest.raises(RateLimited) as exc:
        c.lookup(phone(), deadline=deadline())
    assert exc.value.retry_after == 2.0
