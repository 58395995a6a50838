"""The `salesforce` connector: requests made, answers understood, failures translated.

Unit tests mock Salesforce with `responses` (payload shapes from Salesforce's REST docs, see
the vendor documentation cited in docs/crm/); the end-to-end tests run the Flask app
against `fake_salesforce`, a real local HTTP server.
"""

from __future__ import annotations

import sample
import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from hypothesis import given, settings as hsettings, strategies as st
from responses import matchers

from fake_salesforce import FakeSalesforce, describe_body, sample_dataset  # noqa: E402

from dialwhom.integrations.base import ConnectorContext  # noqa: E402
from dialwhom.routing.errors import AuthError, BadResponse, ConfigError, RateLimited  # noqa: E402
from dialwhom.integrations.registry import registry_from_classes  # noqa: E402
from dialwhom.integrations.connectors.salesforce import (  # noqa: E402
    CHECK_PHONE, Described, SalesforceConnector, build_sosl, phrase_terms, search_terms, soql_literal,
)
from dialwhom.routing.schema import validate_options  # noqa: E402
from dialwhom.routing.deadline import Deadline  # noqa: E402
from dialwhom.routing.model import Query  # noqa: E402

MYDOMAIN = "https://acme.my.salesforce.com"
V = "v62.0"
TOKEN_URL = f"{MYDOMAIN}/services/oauth2/token"
SEARCH_URL = f"{MYDOMAIN}/services/data/{V}/search/"
QUERY_URL = f"{MYDOMAIN}/services/data/{V}/query/"
CLIENT_ID = "3MVG9.consumer-key"
CLIENT_SECRET = "s3cr3t-consumer-value"
REFRESH = "5Aep861.refresh-token-value"
TOK1 = "00D5g000004FAKE!AQ.first-token"
TOK2 = "00D5g000004FAKE!AQ.second-token"
CALLER = "+919876543210"
LIMIT_HDR = {"Sforce-Limit-Info": "api-usage=18/15000"}
ASHA = "0055g00000AshaAAAQ"
RAVI = "0055g00000RaviAAAQ"
QUEUE = "00G5g000001InbQAAQ"

DESCRIBE_URL = f"{MYDOMAIN}/services/data/{V}/sobjects/{{}}/describe"
CALLER_TERMS = '9876543210 OR 919876543210 OR 09876543210 OR "98765 43210" OR "098765 43210"'
EXPECTED_SOSL = (
    "FIND {" + CALLER_TERMS + "} IN PHONE FIELDS RETURNING "
    "Contact(Id, Name, Phone, MobilePhone, HomePhone, OtherPhone, AssistantPhone, OwnerId, Owner.Email, Owner.Name, "
    "Owner.Phone, Owner.MobilePhone, Owner.IsActive, Owner.UserRole.Name, LastModifiedDate "
    "ORDER BY LastModifiedDate DESC LIMIT 5), "
    "Lead(Id, Name, Company, Phone, MobilePhone, OwnerId, Owner.Email, Owner.Name, Owner.Phone, Owner.Type, "
    "Owner.IsActive, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC LIMIT 5), "
    "Account(Id, Name, Phone, OwnerId, Owner.Email, Owner.Name, Owner.Phone, Owner.MobilePhone, Owner.IsActive, "
    "Owner.UserRole.Name, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 5)"
)
DIRECTORY_SOQL = ("SELECT Id, Email, Name, Phone, MobilePhone, IsActive, UserRole.Name FROM User "
                  "WHERE IsActive = true ORDER BY Id")


# -- realistic payloads (shapes from Salesforce's REST API docs) ---------------------------------

def token_body(token: str = TOK1, instance: str = MYDOMAIN, **extra) -> dict:
    body = {
        "access_token": token, "signature": "dGhpcyBpcyBhIHNpZ25hdHVyZQ==", "scope": "api",
        "instance_url": instance, "id": f"https://login.salesforce.com/id/00D5g000004FAKEEA0/{ASHA}",
        "token_type": "Bearer", "issued_at": "1718000000000", "token_format": "opaque",
    }
    body.update(extra)
    return body


def attrs(obj: str, rid: str) -> dict:
    return {"type": obj, "url": f"/services/data/{V}/sobjects/{obj}/{rid}"}


def user_rel(uid: str = ASHA, name: str = "Asha Rao", email: str = "asha@example.com",
             phone: str | None = "+91 80 4000 0001", mobile: str | None = "+91 98000 00001", *, active: bool = True,
             role: str | None = "North Sales", department: str = "Sales", division: str = "North") -> dict:
    return {"attributes": attrs("User", uid), "Name": name, "Email": email, "Phone": phone, "MobilePhone": mobile,
            "IsActive": active, "Department": department, "Division": division,
            "UserRole": {"attributes": attrs("UserRole", "00E5g000000NORTHAQ"), "Name": role} if role else None}


def contact(rid: str = "0035g00000MeeraAAQ", phone: str | None = "098765 43210", *, owner: str = ASHA, owner_rel: dict | None = None,
            modified: str = "2024-06-01T09:30:00.000+0000", account: dict | None = None, mobile: str | None = None) -> dict:
    return {
        "attributes": attrs("Contact", rid), "Id": rid, "Name": "Meera Shah", "Phone": phone, "MobilePhone": mobile,
        "HomePhone": None, "OtherPhone": None, "AssistantPhone": None, "OwnerId": owner,
        "Owner": owner_rel if owner_rel is not None else user_rel(owner),
        "AccountId": account["Id"] if account else None,
        "Account": ({"attributes": attrs("Account", account["Id"]), "Name": account["Name"], "OwnerId": account["OwnerId"],
                     "Owner": account["Owner"]} if account else None),
        "LastModifiedDate": modified,
    }


def lead(rid: str = "00Q5g00000KiranAAQ", phone: str = "+91-98765-43210", *, owner: str = QUEUE, owner_name: str = "Inbound Queue",
         owner_type: str = "Queue", owner_phone: str | None = None, modified: str = "2024-06-03T12:00:00.000+0000") -> dict:
    return {
        "attributes": attrs("Lead", rid), "Id": rid, "Name": "Kiran Das", "Company": "Das & Co", "Phone": phone, "MobilePhone": None,
        "OwnerId": owner,
        "Owner": {"attributes": {"type": "Name", "url": f"/services/data/{V}/sobjects/{'Group' if owner_type == 'Queue' else 'User'}/{owner}"},
                  "Name": owner_name, "Email": None if owner_type == "Queue" else "ravi@example.com", "Phone": owner_phone,
                  "Type": owner_type, "IsActive": True},
        "LastModifiedDate": modified,
    }


def account(rid: str = "0015g00000AcmeAAAQ", phone: str = "+91 98765 43210", *, owner: str = RAVI,
            modified: str = "2024-05-01T10:00:00.000+0000") -> dict:
    return {
        "attributes": attrs("Account", rid), "Id": rid, "Name": "Acme Traders", "Phone": phone, "OwnerId": owner,
        "Owner": user_rel(owner, "Ravi Iyer", "ravi@example.com", None, "+91 98000 00009"), "LastModifiedDate": modified,
    }


def directory(*users: dict, done: bool = True, next_url: str | None = None) -> dict:
    """A page of ``SELECT ... FROM User WHERE IsActive = true``."""
    body: dict = {"totalSize": len(users), "done": done, "records": list(users)}
    if next_url:
        body["nextRecordsUrl"] = next_url
    return body


def user_row(uid: str = RAVI, name: str = "Ravi Iyer", email: str = "ravi@example.com", mobile: str | None = "+91 98000 00009",
             role: str | None = "South Sales") -> dict:
    return {"attributes": attrs("User", uid), "Id": uid, "Name": name, "Email": email, "Phone": None, "MobilePhone": mobile,
            "IsActive": True, "UserRole": {"attributes": attrs("UserRole", "00E5g000000SOUTHAQ"), "Name": role} if role else None}


def sf_error(code: str, message: str) -> list[dict]:
    return [{"message": message, "errorCode": code}]


# -- helpers --------------------------------------------------------------------------------------

def schema(hidden=(), extra=None, objects=("Contact", "Lead", "Account", "User")) -> dict[str, Described]:
    """What describe would say, from the fake org's field lists."""
    return {obj: Described.from_json(describe_body(obj, hidden, extra)) for obj in objects}


def make(*, described: dict | None | bool = True, users: dict | None = None, **opts) -> SalesforceConnector:
    """A connector whose background loads run in line. By default describe and the directory
    count as already read (`described=False`: the real describe calls are made)."""
    base = {"login_url": MYDOMAIN, "auth": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    base.update(opts)
    ctx_keys = {k: base.pop(k) for k in ("retries", "timeout_s") if k in base}
    options = validate_options(SalesforceConnector.config_schema, base, "connectors[0]")
    c = SalesforceConnector(options, ConnectorContext(id="sf", region="IN", timeout_s=ctx_keys.get("timeout_s", 2.0), retries=ctx_keys.get("retries", 1)))
    c.schema.spawn = c.directory.spawn = lambda fn: fn()
    if described is not False:
        c.schema.seed(schema() if described is True else described)
        c.directory.seed(users or {})
    return c


def describes(rsps, hidden=(), extra=None, objects=("Contact", "Lead", "Account", "User"), **kw) -> None:
    for obj in objects:
        rsps.get(DESCRIBE_URL.format(obj), **({"json": describe_body(obj, hidden, extra)} | kw))


def is_directory(request):
    q = parse_qs(urlsplit(request.url).query).get("q", [""])[0]
    return ("FROM User WHERE IsActive = true" in q, "not the directory query")


def phone(value: str = CALLER) -> Query:
    return Query("phone", value, "caller")


def dl() -> Deadline:
    return Deadline(5.0)


def q_of(call) -> str:
    return parse_qs(urlsplit(call.request.url).query)["q"][0]


def calls_to(rsps, url: str) -> list:
    return [c for c in rsps.calls if c.request.url.split("?")[0] == url]


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as r:
        yield r


def cc_token(rsps, token: str = TOK1, **extra) -> None:
    rsps.post(TOKEN_URL, json=token_body(token, **extra), match=[matchers.urlencoded_params_matcher(
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})])


# -- auth -----------------------------------------------------------------------------------------

def test_cold_lookup_token_describes_directory_then_one_search_exact_requests(rsps):
    cc_token(rsps)
    describes(rsps)
    rsps.get(QUERY_URL, json=directory(user_row()), match=[is_directory])
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]}, headers=LIMIT_HDR)
    c = make(described=False)
    m = c.lookup(phone(), deadline=dl())

    token, *describe_calls, users, search = rsps.calls
    assert token.request.method == "POST" and token.request.url == TOKEN_URL
    assert token.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert token.request.body == f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
    assert "Authorization" not in token.request.headers

    # the four describes go out in parallel, each once, with the token
    assert sorted(c.request.url for c in describe_calls) == sorted(DESCRIBE_URL.format(o) for o in ("Contact", "Lead", "Account", "User"))
    assert all(c.request.method == "GET" and c.request.headers["Authorization"] == f"Bearer {TOK1}" for c in describe_calls)
    assert q_of(users) == DIRECTORY_SOQL

    assert search.request.method == "GET"
    assert urlsplit(search.request.url).path == f"/services/data/{V}/search/"
    assert parse_qs(urlsplit(search.request.url).query) == {"q": [EXPECTED_SOSL]}
    assert search.request.headers["Authorization"] == f"Bearer {TOK1}"
    assert search.request.headers["Accept"] == "application/json"
    raw_query = urlsplit(search.request.url).query
    assert "{" not in raw_query and "%7B9876543210" in raw_query  # braces percent-encoded, never raw

    assert m.owner.id == ASHA and m.owner.email == "asha@example.com" and m.owner.name == "Asha Rao"
    assert m.owner.phone == sample.ASHA  # MobilePhone first, as E.164
    assert m.owner.team == "North Sales" and m.owner.active is True
    assert (m.record.type, m.record.id, m.record.name) == ("Contact", "0035g00000MeeraAAQ", "Meera Shah")
    assert "Sforce-Limit-Info: api-usage=18/15000" in m.notes
    assert any("from Contact.Owner" in n for n in m.notes)


def test_warm_lookup_is_exactly_one_request_with_the_owners_team(rsps):
    """Describe and directory are cached: an uncached caller costs the search alone, team included."""
    cc_token(rsps)
    describes(rsps)
    rsps.get(QUERY_URL, json=directory(user_row()), match=[is_directory])
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    rsps.get(SEARCH_URL, json={"searchRecords": [lead(owner=RAVI, owner_name="Ravi Iyer", owner_type="User")]})
    rsps.get(SEARCH_URL, json={"searchRecords": [account()]})
    c = make(described=False)
    c.lookup(phone(), deadline=dl())
    before = len(rsps.calls)
    lead_match = c.lookup(phone("+919876543210"), deadline=dl())
    account_match = c.lookup(phone("09876543210"), deadline=dl())
    assert [urlsplit(x.request.url).path for x in rsps.calls[before:]] == [f"/services/data/{V}/search/"] * 2
    assert (lead_match.owner.id, lead_match.owner.phone, lead_match.owner.team) == (RAVI, "+919800000009", "South Sales")
    assert (account_match.owner.id, account_match.owner.team) == (RAVI, "North Sales")


def test_refresh_token_flow_posts_to_login_host_and_uses_instance_url(rsps):
    login = "https://login.salesforce.com"
    rsps.post(f"{login}/services/oauth2/token", json=token_body(scope="api refresh_token"), match=[matchers.urlencoded_params_matcher(
        {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH})])
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    c = make(login_url=login + "/", auth="refresh_token", refresh_token=REFRESH)
    assert c.lookup(phone(), deadline=dl()) is None
    token, search = rsps.calls
    assert token.request.body == f"grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={REFRESH}"
    assert search.request.url.startswith(SEARCH_URL)  # the instance_url from the token answer, not the login host


def test_refresh_token_flow_without_secret_sends_no_secret(rsps):
    rsps.post("https://test.salesforce.com/services/oauth2/token", json=token_body(), match=[matchers.urlencoded_params_matcher(
        {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": REFRESH})])
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    make(login_url="https://test.salesforce.com", auth="refresh_token", refresh_token=REFRESH, client_secret=None).lookup(phone(), deadline=dl())


def test_rotated_refresh_token_is_used_for_the_next_refresh(rsps):
    login = "https://login.salesforce.com/services/oauth2/token"
    rsps.post(login, json=token_body(TOK1, refresh_token="5Aep861.rotated"))
    rsps.post(login, json=token_body(TOK2), match=[matchers.urlencoded_params_matcher(
        {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": "5Aep861.rotated"})])
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    c = make(login_url="https://login.salesforce.com", auth="refresh_token", refresh_token=REFRESH)
    c.lookup(phone(), deadline=dl())
    c.token.invalidate()
    c.lookup(phone(), deadline=dl())


def test_token_is_reused_across_lookups(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    c = make()
    for _ in range(3):
        c.lookup(phone(), deadline=dl())
    assert len(calls_to(rsps, TOKEN_URL)) == 1 and len(calls_to(rsps, SEARCH_URL)) == 3


def test_refused_token_is_auth_error_without_the_secret(rsps):
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_client", "error_description": "invalid client credentials"})
    with pytest.raises(AuthError) as exc:
        make().lookup(phone(), deadline=dl())
    assert "invalid_client" in str(exc.value) and CLIENT_SECRET not in str(exc.value)


def test_token_endpoint_400_that_is_not_a_credential_refusal_is_bad_response(rsps):
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": "grant type not supported"})
    with pytest.raises(BadResponse, match="invalid_request"):
        make().lookup(phone(), deadline=dl())


def test_token_answer_without_instance_url_is_bad_response(rsps):
    body = token_body()
    del body["instance_url"]
    rsps.post(TOKEN_URL, json=body)
    with pytest.raises(BadResponse):
        make().lookup(phone(), deadline=dl())


def test_invalid_session_refreshes_once_then_succeeds(rsps):
    cc_token(rsps, TOK1)
    cc_token(rsps, TOK2)
    rsps.get(SEARCH_URL, status=401, json=sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert m.owner.id == ASHA
    searches = calls_to(rsps, SEARCH_URL)
    assert [c.request.headers["Authorization"] for c in searches] == [f"Bearer {TOK1}", f"Bearer {TOK2}"]
    assert len(calls_to(rsps, TOKEN_URL)) == 2


def test_invalid_session_twice_is_auth_error(rsps):
    cc_token(rsps, TOK1)
    cc_token(rsps, TOK2)
    rsps.get(SEARCH_URL, status=401, json=sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
    rsps.get(SEARCH_URL, status=401, json=sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
    with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
        make().lookup(phone(), deadline=dl())
    assert len(calls_to(rsps, SEARCH_URL)) == 2 and len(calls_to(rsps, TOKEN_URL)) == 2


def test_401_with_another_error_code_is_auth_error_without_a_new_token(rsps):
    cc_token(rsps, TOK1)
    rsps.get(SEARCH_URL, status=401, json=sf_error("INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE"))
    with pytest.raises(AuthError, match="INVALID_AUTH_HEADER"):
        make(retries=3).lookup(phone(), deadline=dl())
    assert len(calls_to(rsps, SEARCH_URL)) == 1 and len(calls_to(rsps, TOKEN_URL)) == 1


def test_concurrent_invalid_session_401s_make_one_refresh(rsps):
    """Lookups that all sent the expired token share one new one."""
    n = 4
    cc_token(rsps, TOK1)
    cc_token(rsps, TOK2)
    barrier = threading.Barrier(n, timeout=3)

    def search(request):
        if request.headers["Authorization"] == f"Bearer {TOK1}":
            barrier.wait()  # all lookups have sent TOK1 before any hears it expired
            return 401, {}, json.dumps(sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
        return 200, {}, json.dumps({"searchRecords": []})

    rsps.add_callback(responses.GET, SEARCH_URL, callback=search, content_type="application/json")
    c = make()
    c.token.token(dl())
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(c.lookup(phone(), deadline=dl()))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [None] * n
    assert len(calls_to(rsps, TOKEN_URL)) == 2
    assert sorted(c.request.headers["Authorization"] for c in calls_to(rsps, SEARCH_URL)) == [f"Bearer {TOK1}"] * n + [f"Bearer {TOK2}"] * n


# -- search and owners ----------------------------------------------------------------------------

def test_not_found_is_none(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": []}, headers=LIMIT_HDR)
    assert make().lookup(phone(), deadline=dl()) is None
    assert len(rsps.calls) == 2  # token + search; no owner query


def test_several_matches_tie_break_by_object_priority_then_latest_change(rsps):
    cc_token(rsps)
    rows = [
        lead(modified="2024-07-01T00:00:00.000+0000"),
        account(modified="2024-07-02T00:00:00.000+0000"),
        contact("0035g00000OlderAAQ", modified="2024-01-01T00:00:00.000+0000"),
        contact("0035g00000NewerAAQ", "+91 98765 43210", modified="2024-06-30T00:00:00.000+0000"),
    ]
    rsps.get(SEARCH_URL, json={"searchRecords": rows})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert m.record.id == "0035g00000NewerAAQ"
    note = next(n for n in m.notes if "share this number" in n)
    assert note.startswith("4 records share this number; chose Contact/0035g00000NewerAAQ")


def test_object_priority_is_configurable(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(), account()]})
    m = make(objects=["Account", "Contact"], team_field="none").lookup(phone(), deadline=dl())
    assert m.record.type == "Account" and m.owner.id == RAVI
    assert "Account(Id" in q_of(calls_to(rsps, SEARCH_URL)[0]) and "Lead(" not in q_of(calls_to(rsps, SEARCH_URL)[0])


def test_search_over_match_is_rechecked_and_dropped(rsps):
    cc_token(rsps)
    # same last ten digits, different country: the search index may return it, the caller is not this one
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(phone="+1 987-654-3210")]})
    assert make().lookup(phone(), deadline=dl()) is None


def test_match_on_a_secondary_phone_field(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(phone="080 4000 1000", mobile="98765-43210")]})
    assert make(team_field="none").lookup(phone(), deadline=dl()).record.id == "0035g00000MeeraAAQ"


@pytest.mark.parametrize("queue_teams, team", [
    ({"Inbound Queue": "south"}, "south"),
    ({"inbound queue": "south"}, "south"),
    ({QUEUE: "north"}, "north"),
    ({}, None),
])
def test_lead_owned_by_a_queue(rsps, queue_teams, team):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [lead()]})
    m = make(queue_teams=queue_teams).lookup(phone(), deadline=dl())
    assert m.owner.id == QUEUE and m.owner.name == "Inbound Queue" and m.owner.email is None and m.owner.phone is None
    assert m.team == team and m.owner.team == team
    assert len(rsps.calls) == 2  # no User query for a queue
    assert any("owned by queue Inbound Queue" in n for n in m.notes)


def test_queue_owned_leads_skipped_when_configured(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [lead(modified="2025-01-01T00:00:00.000+0000"), account()]})
    m = make(queue_owner="skip", objects=["Lead", "Account"], team_field="none").lookup(phone(), deadline=dl())
    assert m.record.type == "Account"
    assert any("queue-owned Lead" in n for n in m.notes)


def test_queue_owned_lead_alone_and_skipped_is_not_found(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [lead()]})
    assert make(queue_owner="skip").lookup(phone(), deadline=dl()) is None


def test_lead_owned_by_a_user_gets_mobile_and_team_from_the_directory_not_a_call(rsps):
    """Lead.Owner is the polymorphic Name object (no MobilePhone, no role): the cached
    directory of active users supplies them, with no request of its own."""
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [lead(owner=RAVI, owner_name="Ravi Iyer", owner_type="User")]})
    m = make(users={RAVI: user_row()}).lookup(phone(), deadline=dl())
    assert (m.owner.id, m.owner.email, m.owner.phone, m.owner.team, m.owner.active) == (RAVI, "ravi@example.com", "+919800000009", "South Sales", True)
    assert len(rsps.calls) == 2  # token + search


def test_lead_owner_missing_from_the_directory_answers_with_what_the_search_gave(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [lead(owner=RAVI, owner_name="Ravi Iyer", owner_type="User", owner_phone="+91 80 4000 0009")]})
    m = make().lookup(phone(), deadline=dl())
    assert (m.owner.id, m.owner.phone, m.owner.team) == (RAVI, "+918040000009", None)
    assert any("not in the directory" in n for n in m.notes)
    assert len(rsps.calls) == 2


def test_owner_phone_present_and_no_team_wanted_is_one_call(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert m.owner.phone == sample.ASHA and m.owner.team is None
    assert len(calls_to(rsps, SEARCH_URL)) == 1 and not calls_to(rsps, QUERY_URL)
    assert "UserRole" not in q_of(calls_to(rsps, SEARCH_URL)[0])


@pytest.mark.parametrize("field, team", [("Department", "Sales"), ("Division", "North"), ("UserRole.Name", "North Sales")])
def test_team_field_comes_through_the_owner_relationship_in_the_one_search(rsps, field, team):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(team_field=field).lookup(phone(), deadline=dl())
    assert m.owner.team == team
    sosl = q_of(calls_to(rsps, SEARCH_URL)[0])
    assert f"Owner.{field}, LastModifiedDate" in sosl  # on Contact and Account (User owners) ...
    assert sosl.count(f"Owner.{field}") == 2  # ... not on Lead (the Name object has no such field)
    assert not calls_to(rsps, QUERY_URL)


def test_no_user_query_for_any_owner_on_a_warm_connector(rsps):
    cc_token(rsps)
    for uid in (ASHA, RAVI, "0055g00000NewOneAAQ"):
        rsps.get(SEARCH_URL, json={"searchRecords": [contact(owner=uid)]})
    c = make()
    teams = [c.lookup(phone(), deadline=dl()).owner.team for _ in range(3)]
    assert teams == ["North Sales"] * 3
    assert not calls_to(rsps, QUERY_URL) and len(calls_to(rsps, SEARCH_URL)) == 3


def test_owner_preference_account_uses_the_contacts_account_owner(rsps):
    cc_token(rsps)
    acct = {"Id": "0015g00000AcmeAAAQ", "Name": "Acme Traders", "OwnerId": RAVI,
            "Owner": user_rel(RAVI, "Ravi Iyer", "ravi@example.com", None, "+91 98000 00009")}
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(account=acct)]})
    m = make(owner_preference="account", team_field="none").lookup(phone(), deadline=dl())
    assert (m.owner.id, m.owner.email, m.owner.phone) == (RAVI, "ravi@example.com", "+919800000009")
    assert m.record.type == "Contact"
    assert any("Account Acme Traders" in n for n in m.notes)


def test_owner_preference_account_without_account_keeps_contact_owner(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(owner_preference="account", team_field="none").lookup(phone(), deadline=dl())
    assert m.owner.id == ASHA and "Contact has no Account; using the Contact owner" in m.notes


def test_inactive_owner_is_active_false(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(owner_rel=user_rel(active=False))]})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert m.owner.active is False and m.owner.id == ASHA
    assert f"owner {ASHA} is an inactive user" in m.notes


def test_owner_active_unknown_is_none(rsps):
    cc_token(rsps)
    rel = user_rel()
    del rel["IsActive"]
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(owner_rel=rel)]})
    assert make().lookup(phone(), deadline=dl()).owner.active is None


# -- what the integration user can read ------------------------------------------------------------

def test_returning_lists_only_fields_describe_says_are_readable(rsps):
    cc_token(rsps)
    describes(rsps, hidden={"Contact.HomePhone", "Contact.AssistantPhone", "User.MobilePhone", "Lead.IsConverted"})
    rsps.get(QUERY_URL, json=directory(), match=[is_directory])
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(described=False).lookup(phone(), deadline=dl())
    sosl = q_of(calls_to(rsps, SEARCH_URL)[0])
    assert "Contact(Id, Name, Phone, MobilePhone, OtherPhone, OwnerId, Owner.Email, Owner.Name, Owner.Phone, Owner.IsActive, Owner.UserRole.Name, LastModifiedDate " in sosl
    assert "Lead(Id, Name, Company, Phone, MobilePhone, OwnerId, Owner.Email, Owner.Name, Owner.Phone, Owner.Type, Owner.IsActive, LastModifiedDate ORDER BY" in sosl
    assert m.owner.id == ASHA  # degraded field by field, not all or nothing
    assert any("cannot read, left out: Contact.AssistantPhone, Contact.HomePhone, User.MobilePhone" in n for n in m.notes)
    assert any("converted Leads may match" in n for n in m.notes)


def test_custom_and_person_account_phone_fields_from_describe_are_returned_and_rechecked(rsps):
    """SOSL searches every phone field; a hit on one we did not return must not be thrown away."""
    extra = {"Contact": {"Mobile2__c": "phone"}, "Account": {"PersonMobilePhone": "phone", "PersonHomePhone": "phone"}}
    cc_token(rsps)
    describes(rsps, extra=extra)
    rsps.get(QUERY_URL, json=directory(), match=[is_directory])
    acct = account(phone="080 4000 1000")
    acct["PersonMobilePhone"] = "+91 98765 43210 (M)"
    rsps.get(SEARCH_URL, json={"searchRecords": [acct]})
    m = make(described=False).lookup(phone(), deadline=dl())
    sosl = q_of(calls_to(rsps, SEARCH_URL)[0])
    assert "AssistantPhone, Mobile2__c, OwnerId" in sosl and "Account(Id, Name, Phone, PersonHomePhone, PersonMobilePhone, OwnerId" in sosl
    assert m is not None and m.record.type == "Account"


def test_configured_phone_fields_are_returned_and_rechecked(rsps):
    cc_token(rsps)
    row = contact(phone="080 4000 1000")
    row["Work_Mobile__c"] = "9876543210, 9123456789"
    rsps.get(SEARCH_URL, json={"searchRecords": [row]})
    extra = {"Contact": {"Work_Mobile__c": "phone"}}
    m = make(described=schema(extra=extra), phone_fields={"Contact": ["Work_Mobile__c"], "Lead": ["MobilePhone"]}).lookup(phone(), deadline=dl())
    assert m.record.id == "0035g00000MeeraAAQ"
    sosl = q_of(calls_to(rsps, SEARCH_URL)[0])
    assert sosl.count("Work_Mobile__c") == 1 and "Lead(Id, Name, Company, Phone, MobilePhone, OwnerId" in sosl


def test_configured_phone_field_without_describe_is_still_asked_for(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    make(described={}, phone_fields={"Account": ["PersonMobilePhone"]}).lookup(phone(), deadline=dl())
    assert "Account(Id, Name, Phone, PersonMobilePhone, OwnerId" in q_of(calls_to(rsps, SEARCH_URL)[0])


@pytest.mark.parametrize("value", [{"Opportunity": ["Phone"]}, {"Contact": "Mobile__c"}, {"Contact": ["Owner.Phone"]}, {"Contact": ["x y"]}])
def test_phone_fields_config_errors_name_the_key(value):
    with pytest.raises(ConfigError) as exc:
        make(phone_fields=value)
    assert exc.value.key == "phone_fields" and "phone_fields" in exc.value.message


def invalid_field(field: str, entity: str) -> list[dict]:
    """Salesforce's INVALID_FIELD body (message as the API words it; fields null)."""
    return [{"message": f"\n{field}, Phone\n ^\nERROR at Row:1:Column:52\nNo such column '{field}' on entity '{entity}'. "
                        "If you are attempting to use a custom field, be sure to append the '__c' after the custom field "
                        "name. Please reference your WSDL or the describe call for the appropriate names.",
             "errorCode": "INVALID_FIELD", "fields": None}]


def test_invalid_field_leaves_the_field_out_searches_again_and_rereads_describe(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=400, json=invalid_field("HomePhone", "Contact"))
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    describes(rsps, hidden={"Contact.HomePhone"})  # the re-read, in the background (in line here)
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    c = make()
    m = c.lookup(phone(), deadline=dl())
    first, second = (q_of(x) for x in calls_to(rsps, SEARCH_URL)[:2])
    assert "HomePhone" in first and "HomePhone" not in second
    assert first.replace("HomePhone, ", "") == second
    assert m.owner.id == ASHA and "Salesforce refused Contact.HomePhone (INVALID_FIELD); asked again without it" in m.notes
    assert len(calls_to(rsps, DESCRIBE_URL.format("Contact"))) == 1
    c.lookup(phone(), deadline=dl())  # from now on: one search, without the field
    assert "HomePhone" not in q_of(calls_to(rsps, SEARCH_URL)[2]) and len(calls_to(rsps, SEARCH_URL)) == 3


def test_invalid_field_on_a_relationship_field_leaves_the_users_field_out(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=400, json=invalid_field("MobilePhone", "User"))
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    describes(rsps)
    m = make().lookup(phone(), deadline=dl())
    second = q_of(calls_to(rsps, SEARCH_URL)[1])
    assert "Owner.MobilePhone" not in second and "Contact(Id, Name, Phone, MobilePhone, HomePhone" in second
    assert m.owner.id == ASHA


def test_a_second_invalid_field_is_bad_response_not_a_loop(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=400, json=invalid_field("HomePhone", "Contact"))
    rsps.get(SEARCH_URL, status=400, json=invalid_field("OtherPhone", "Contact"))
    describes(rsps)
    with pytest.raises(BadResponse, match="INVALID_FIELD"):
        make().lookup(phone(), deadline=dl())
    assert len(calls_to(rsps, SEARCH_URL)) == 2


def test_invalid_field_naming_no_field_is_not_retried(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=400, json=[{"message": "something else", "errorCode": "INVALID_FIELD"}])
    describes(rsps)
    with pytest.raises(BadResponse):
        make().lookup(phone(), deadline=dl())
    assert len(calls_to(rsps, SEARCH_URL)) == 1


def test_describe_that_fails_degrades_to_the_standard_fields_and_is_tried_again_later(rsps):
    clock = [1000.0]
    cc_token(rsps)
    describes(rsps, status=503, json=sf_error("SERVER_UNAVAILABLE", "down"))
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    c = make(described=False, retries=0, objects=["Contact", "Lead", "Account"])
    c.schema.clock = lambda: clock[0]
    c.directory.seed({})
    m = c.lookup(phone(), deadline=dl())
    assert m.owner.team == "North Sales"
    assert q_of(calls_to(rsps, SEARCH_URL)[0]) == EXPECTED_SOSL  # the standard list
    c.lookup(phone(), deadline=dl())
    assert len(calls_to(rsps, DESCRIBE_URL.format("Contact"))) == 1  # not again within a minute
    clock[0] += 61
    describes(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    c.lookup(phone(), deadline=dl())  # served at once; describe re-read in the background
    assert len(calls_to(rsps, DESCRIBE_URL.format("Contact"))) == 2


def test_describe_is_reread_in_the_background_after_its_ttl_and_never_delays_a_lookup(rsps):
    clock = [0.0]
    queued: list = []
    cc_token(rsps)
    for _ in range(3):
        rsps.get(SEARCH_URL, json={"searchRecords": []})
    c = make(describe_ttl_s=3600)
    c.schema.clock = lambda: clock[0]
    c.schema.seed(schema())
    c.schema.spawn = queued.append
    c.lookup(phone(), deadline=dl())
    assert not queued
    clock[0] += 3601
    c.lookup(phone(), deadline=dl())
    assert len(queued) == 1 and not calls_to(rsps, DESCRIBE_URL.format("Contact"))  # the lookup did not wait
    describes(rsps, hidden={"Contact.OtherPhone"})
    queued.pop()()
    c.lookup(phone(), deadline=dl())
    assert "OtherPhone" not in q_of(calls_to(rsps, SEARCH_URL)[2])


def test_a_background_reload_never_blocks_a_lookup():
    """While a reload is running (holding its load lock), readers get the old value at once."""
    from dialwhom.integrations.connectors.salesforce import Refreshed
    import logging

    started, release = threading.Event(), threading.Event()
    calls = []

    def load(deadline):
        calls.append(1)
        if len(calls) > 1:
            started.set()
            release.wait(5)
        return len(calls)

    clock = [0.0]
    r = Refreshed("t", load, ttl_s=10, log=logging.getLogger("t"), clock=lambda: clock[0])
    assert r.get(dl(), wait=True) == 1
    clock[0] = 11
    assert r.get(dl(), wait=True) == 1  # stale: served, reload started in the background
    assert started.wait(5)
    assert r.get(dl(), wait=True) == 1 and r.get(dl(), wait=False) == 1  # not waiting for the running reload
    release.set()
    r.close()
    assert r.value == 2 and len(calls) == 2


def test_directory_follows_next_records_url(rsps):
    cc_token(rsps)
    nxt = f"/services/data/{V}/query/01gD0000002HU6KIAW-2000"
    rsps.get(QUERY_URL, json=directory(user_row(), done=False, next_url=nxt), match=[is_directory])
    rsps.get(f"{MYDOMAIN}{nxt}", json=directory(user_row(ASHA, "Asha Rao", "asha@example.com", role="North Sales")))
    c = make(described=True)
    users = c.directory.load(dl(), force=True)
    assert set(users) == {RAVI, ASHA} and users[ASHA]["UserRole"]["Name"] == "North Sales"


# -- SOSL safety ----------------------------------------------------------------------------------

FIND = re.compile(r"^FIND \{(\d{6,})( OR \d{6,})*\} IN PHONE FIELDS RETURNING ")


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_search_terms_are_digits_only_for_any_input(text):
    terms = search_terms(text, "IN")
    assert all(t.isascii() and t.isdigit() and len(t) >= 6 for t in terms)
    if terms:
        assert FIND.match(build_sosl(terms, {"Contact": "Id", "Lead": "Id"}))


@given(st.from_regex(r"\+91[6-9][0-9]{9}", fullmatch=True))
def test_search_terms_for_valid_numbers(number):
    terms = search_terms(number, "IN")
    assert terms == [number[3:], number[1:], "0" + number[3:]]


@pytest.mark.parametrize("term", ["98765}", "98765 OR x", "", "４５６７８９", "123-456"])
def test_build_sosl_refuses_non_digit_terms(term):
    with pytest.raises(ValueError):
        build_sosl([term], {"Contact": "Id"})


@pytest.mark.parametrize("value", [
    "+91987654321} IN ALL FIELDS RETURNING User(Id, Email",
    "\\} OR {*",
    "9876543210' OR Name LIKE '%",
    "12",
])
def test_hostile_caller_value_never_reaches_salesforce(rsps, value):
    assert make().lookup(phone(value), deadline=dl()) is None
    assert len(rsps.calls) == 0


def test_reserved_characters_are_stripped_from_a_real_number(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": []})
    make().lookup(phone("+91 (98765) 43210"), deadline=dl())
    sosl = q_of(calls_to(rsps, SEARCH_URL)[0])
    assert sosl == EXPECTED_SOSL
    braces = sosl[sosl.index("{") + 1: sosl.index("}")]
    assert not set(braces.replace(' OR ', '').replace('"', '')) - set("0123456789 ")  # digits, spaces, phrase quotes


@pytest.mark.parametrize("number, region, phrases", [
    ("+919876543210", "IN", ["98765 43210", "098765 43210"]),
    ("+918023456789", "IN", ["80 2345 6789", "080 2345 6789"]),
    ("+14155550123", "US", ["415 555 0123"]),
    ("+442079460018", "IN", ["20 7946 0018", "020 7946 0018"]),
    ("not a number", "IN", []),
])
def test_phrase_terms_are_the_digit_groups_people_write(number, region, phrases):
    assert phrase_terms(number, region) == phrases


def test_build_sosl_quotes_phrases_and_refuses_anything_else():
    sosl = build_sosl(["9876543210", "98765 43210"], {"Contact": "Id LIMIT 5"})
    assert sosl == 'FIND {9876543210 OR "98765 43210"} IN PHONE FIELDS RETURNING Contact(Id LIMIT 5)'
    for bad in ['98765 "43210', "98765  43210", " 98765", "98765 x", "98765\t43210", "9876-5432"]:
        with pytest.raises(ValueError):
            build_sosl([bad], {"Contact": "Id"})


@hsettings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_phrase_terms_are_digits_and_single_spaces_for_any_input(text):
    for p in phrase_terms(text, "IN"):
        assert re.fullmatch(r"\d+( \d+)+", p)


# -- account lookups ------------------------------------------------------------------------------

def test_account_lookup_soql(rsps):
    cc_token(rsps)
    rec = account()
    rsps.get(QUERY_URL, json={"totalSize": 1, "done": True, "records": [rec]}, headers=LIMIT_HDR)
    m = make(team_field="none").lookup(Query("account", " ACME-001 ", "custom_field"), deadline=dl())
    (call,) = calls_to(rsps, QUERY_URL)
    assert q_of(call) == ("SELECT Id, Name, OwnerId, Owner.Email, Owner.Name, Owner.Phone, Owner.MobilePhone, Owner.IsActive, "
                          "LastModifiedDate FROM Account WHERE AccountNumber = 'ACME-001' ORDER BY LastModifiedDate DESC LIMIT 5")
    assert call.request.headers["Authorization"] == f"Bearer {TOK1}"
    assert m.owner.id == RAVI and m.record.type == "Account" and "Account matched on AccountNumber" in m.notes


def test_account_lookup_custom_field_and_not_found(rsps):
    cc_token(rsps)
    rsps.get(QUERY_URL, json={"totalSize": 0, "done": True, "records": []})
    assert make(account_field="Customer_Id__c").lookup(Query("account", "1234", "digits"), deadline=dl()) is None
    assert "WHERE Customer_Id__c = '1234' " in q_of(rsps.calls[1])


@pytest.mark.parametrize("value", ["x' OR Name != '", "a\\b", "ACME%", "", " ", "-leading", "x" * 81, "ä-1"])
def test_account_values_outside_the_safe_charset_are_not_queried(rsps, value):
    assert make().lookup(Query("account", value, "custom_field"), deadline=dl()) is None
    assert len(rsps.calls) == 0


def test_soql_literal_escapes_quote_and_backslash():
    assert soql_literal("O'Brien\\x") == "'O\\'Brien\\\\x'"


# -- limits and failures --------------------------------------------------------------------------

def test_request_limit_exceeded_is_rate_limited_and_not_retried(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=403, json=sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
             headers={"Sforce-Limit-Info": "api-usage=15001/15000"})
    with pytest.raises(RateLimited) as exc:
        make(retries=3).lookup(phone(), deadline=dl())
    assert exc.value.retryable is False and exc.value.status == 403 and exc.value.connector == "sf"
    assert "api-usage=15001/15000" in str(exc.value)
    assert len(calls_to(rsps, SEARCH_URL)) == 1


def test_429_is_rate_limited(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=429, body="", headers={"Retry-After": "30"})
    with pytest.raises(RateLimited) as exc:
        make().lookup(phone(), deadline=dl())
    assert exc.value.retry_after == 30.0
    assert len(calls_to(rsps, SEARCH_URL)) == 1  # 30 s does not fit the caller's budget


def test_other_403_is_auth_error(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=403, json=sf_error("API_DISABLED_FOR_ORG", "API is not enabled for this Organization or Partner"))
    with pytest.raises(AuthError, match="API_DISABLED_FOR_ORG"):
        make().lookup(phone(), deadline=dl())


def test_500_then_ok(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=500, json=sf_error("UNKNOWN_EXCEPTION", "An unexpected error occurred."))
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert m.owner.id == ASHA and len(calls_to(rsps, SEARCH_URL)) == 2


@pytest.mark.parametrize("body, ctype", [
    ("<!DOCTYPE html><html><body>Service Unavailable</body></html>", "text/html"),
    ('{"searchRecords": [', "application/json"),
    ('{"records": []}', "application/json"),
    ('[{"Id": "003"}]', "application/json"),
    ('{"searchRecords": ["x"]}', "application/json"),
])
def test_unusable_200_is_bad_response(rsps, body, ctype):
    cc_token(rsps)
    rsps.get(SEARCH_URL, body=body, content_type=ctype)
    with pytest.raises(BadResponse) as exc:
        make().lookup(phone(), deadline=dl())
    assert "9876543210" not in str(exc.value) and "q=" not in str(exc.value)  # the SOSL holds the caller's digits


def test_malformed_search_error_masks_the_number(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, status=400, json=sf_error("MALFORMED_SEARCH", "No search term found near 919876543210"))
    with pytest.raises(BadResponse) as exc:
        make().lookup(phone(), deadline=dl())
    assert "MALFORMED_SEARCH" in str(exc.value) and "919876543210" not in str(exc.value)


def test_unknown_api_version_says_so(rsps):
    cc_token(rsps)
    rsps.get(f"{MYDOMAIN}/services/data/v99.0/search/", status=404, json=sf_error("NOT_FOUND", "The requested resource does not exist"))
    with pytest.raises(BadResponse, match="api_version v99.0"):
        make(api_version="v99.0").lookup(phone(), deadline=dl())


# -- check ----------------------------------------------------------------------------------------

def check_search(rsps, **kw) -> None:
    rsps.get(SEARCH_URL, json={"searchRecords": []}, headers=LIMIT_HDR, **kw)


def test_check_runs_the_real_search_and_reads_describe_and_the_directory(rsps):
    cc_token(rsps)
    describes(rsps)
    rsps.get(QUERY_URL, json=directory(user_row(), user_row(ASHA, "Asha Rao", "asha@example.com")), match=[is_directory])
    check_search(rsps)
    note = make(described=False).check(deadline=dl())
    assert note == (f"client_credentials token ok (user {ASHA}) at acme.my.salesforce.com; describe read for 4 object(s); "
                    f"search ok (0 hit(s) for +91*******233, API {V}); 2 active user(s) in the owner directory; api-usage=18/15000")
    (search,) = calls_to(rsps, SEARCH_URL)
    assert q_of(search).startswith('FIND {9811122233 OR 919811122233 OR 09811122233 OR "98111 22233" OR "098111 22233"} IN PHONE FIELDS')
    assert search.request.headers["Authorization"] == f"Bearer {TOK1}"
    assert CHECK_PHONE[1:] not in note


def test_check_names_every_field_the_user_cannot_read_and_warns(rsps):
    cc_token(rsps)
    describes(rsps, hidden={"Contact.HomePhone", "User.MobilePhone", "User.UserRoleId", "Lead.IsConverted"})
    rsps.get(QUERY_URL, json=directory(user_row()), match=[is_directory])
    check_search(rsps)
    note = make(described=False, phone_fields={"Contact": ["Mobile2__c"]}).check(deadline=dl())
    assert note.startswith("warn: the integration user cannot read Contact.HomePhone, Contact.Mobile2__c, User.MobilePhone, User.UserRole: ")
    assert "field-level security" in note and "Lead.IsConverted is not readable" in note
    assert "search ok (0 hit(s)" in note  # the search ran, without those fields
    sosl = q_of(calls_to(rsps, SEARCH_URL)[0])
    assert "HomePhone" not in sosl and "Owner.MobilePhone" not in sosl and "UserRole" not in sosl and "IsConverted" not in sosl
    assert q_of(calls_to(rsps, QUERY_URL)[0]) == "SELECT Id, Email, Name, Phone, IsActive FROM User WHERE IsActive = true ORDER BY Id"


def test_check_warns_when_describe_cannot_be_read(rsps):
    cc_token(rsps)
    describes(rsps, status=404, objects=("Contact", "Lead", "Account"))
    rsps.get(DESCRIBE_URL.format("User"), json=describe_body("User"))
    rsps.get(QUERY_URL, json=directory(), match=[is_directory])
    check_search(rsps)
    note = make(described=False, retries=0).check(deadline=dl())
    assert note.startswith("warn: describe of Contact, Lead, Account could not be read: give the integration user Read on them")


def test_check_raises_when_the_search_fails(rsps):
    cc_token(rsps)
    describes(rsps)
    rsps.get(QUERY_URL, json=directory(), match=[is_directory])
    rsps.get(SEARCH_URL, status=403, json=sf_error("INSUFFICIENT_ACCESS", "insufficient access rights on cross-reference id"))
    with pytest.raises(AuthError, match="INSUFFICIENT_ACCESS"):
        make(described=False).check(deadline=dl())


def test_check_warns_when_the_directory_cannot_be_read(rsps):
    cc_token(rsps)
    describes(rsps)
    rsps.get(QUERY_URL, status=403, json=sf_error("INSUFFICIENT_ACCESS", "no access to User"), match=[is_directory])
    check_search(rsps)
    note = make(described=False).check(deadline=dl())
    assert note.startswith("warn: the directory of active users could not be read (auth)")


def test_check_with_bad_credentials_raises(rsps):
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "no client credentials user enabled"})
    with pytest.raises(AuthError, match="invalid_grant"):
        make().check(deadline=dl())


# -- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("opts, key", [
    ({"login_url": "https://login.salesforce.com"}, "login_url"),
    ({"login_url": "https://test.salesforce.com/"}, "login_url"),
    ({"login_url": "http://acme.my.salesforce.com"}, "login_url"),
    ({"login_url": "https://acme.my.salesforce.com/services/oauth2/token"}, "login_url"),
    ({"client_secret": None}, "client_secret"),
    ({"auth": "refresh_token"}, "refresh_token"),
    ({"api_version": "62"}, "api_version"),
    ({"api_version": "v30.0"}, "api_version"),
    ({"objects": ["Contact", "Opportunity"]}, "objects"),
    ({"objects": []}, "objects"),
    ({"objects": ["Lead", "Lead"]}, "objects"),
    ({"account_field": "Name = '' OR Id"}, "account_field"),
    ({"queue_teams": {"Inbound Queue": 5}}, "queue_teams"),
])
def test_config_errors_name_the_key(opts, key):
    with pytest.raises(ConfigError) as exc:
        make(**opts)
    assert exc.value.key == key


@pytest.mark.parametrize("opts, key", [
    ({"auth": None}, "connectors[0].auth"),
    ({"auth": "jwt_bearer"}, "connectors[0].auth"),
    ({"team_field": "Manager.Name"}, "connectors[0].team_field"),
    ({"user_cache_ttl_s": 1}, "connectors[0].user_cache_ttl_s"),
])
def test_schema_errors_name_the_key(opts, key):
    with pytest.raises(ConfigError) as exc:
        make(**opts)
    assert exc.value.key == key


def test_api_version_is_normalised_and_secrets_masked():
    c = make(api_version="61.0", auth="refresh_token", refresh_token=REFRESH, login_url="https://acme--uat.sandbox.my.salesforce.com")
    assert c.api_version == "v61.0"
    assert CLIENT_SECRET not in repr(c) and REFRESH not in repr(c)


# -- end to end: the Flask app against the fake Salesforce ---------------------------------------

@pytest.fixture
def fake_sf():
    with FakeSalesforce() as sf:
        yield sf


@pytest.fixture
def app_client(fake_sf, monkeypatch):
    app_mod = pytest.importorskip("dialwhom.app")
    monkeypatch.setenv("SF_CLIENT_ID", fake_sf.client_id)
    monkeypatch.setenv("SF_CLIENT_SECRET", fake_sf.client_secret)
    config = {
        "default_region": "IN",
        "budget_ms": 4000,
        "connectors": [{
            "id": "crm", "type": "salesforce", "timeout_ms": 2000,
            "login_url": fake_sf.url, "auth": "client_credentials",
            "client_id": "${SF_CLIENT_ID}", "client_secret": "${SF_CLIENT_SECRET}",
            "team_field": "Division", "queue_teams": {"Inbound Queue": "south"},
        }],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"}],
        "teams": {"north": {"backup": [sample.VIKRAM, sample.NORTH3]}, "south": {"backup": [sample.RAHUL]}},
        "fallback": [sample.FALLBACK],
        "lines": {sample.LINE_NORTH: "north"},
    }
    app = app_mod.create_app(config, registry=registry_from_classes([SalesforceConnector]))
    return app.test_client()


@pytest.mark.parametrize("params, expected", [
    # Contact owned by Asha, who has a reps entry: her number, then her team's backups
    ({"From": "09876543210"}, "+919800000001,+919800000002,+919800000003,+918000000000"),
    # Lead owned by a queue mapped to south
    ({"From": "09123456789"}, "+919800000012,+918000000000"),
    # Contact owned by Ravi, who has no reps entry: his CRM mobile, then his Division's team
    ({"From": "+19876543210"}, "+919800000009,+919800000012,+918000000000"),
    # unknown caller: the line's team
    ({"From": "09999999999"}, "+919800000002,+919800000003,+918000000000"),
    # account number keyed in the IVR (CustomField): Account owned by Ravi
    ({"From": "09999999999", "CustomField": "ACME-001"}, "+919800000009,+919800000012,+918000000000"),
])
def test_dial_whom_end_to_end(app_client, fake_sf, params, expected):
    r = app_client.get("/exotel/dial-whom", query_string={"CallSid": "e2e-1", "To": "08039513882", **params})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert r.get_data(as_text=True) == expected
    assert "9876543210" not in r.headers["X-Dialwhom-Trace"]
    tokens = fake_sf.calls("/services/oauth2/token")
    assert len(tokens) == 1 and tokens[0].form["grant_type"] == "client_credentials"
    data = fake_sf.calls("/services/data/")
    assert data and all(c.headers["Authorization"].startswith("Bearer 00D") for c in data)


def test_dial_whom_end_to_end_survives_an_expired_session(app_client, fake_sf):
    first = app_client.get("/exotel/dial-whom", query_string={"CallSid": "a1", "From": "09876543210", "To": "08039513882"})
    fake_sf.expire_tokens()
    second = app_client.get("/exotel/dial-whom", query_string={"CallSid": "a2", "From": "+19876543210", "To": "08039513882"})
    assert first.get_data(as_text=True).startswith("+919800000001,")
    assert second.get_data(as_text=True).startswith("+919800000009,")
    assert len(fake_sf.calls("/services/oauth2/token")) == 2
    searches = fake_sf.calls("/services/data/v62.0/search")
    assert len(searches) == 3  # first call, the 401, the retry with the new token
    assert "via=crm" in second.headers["X-Dialwhom-Trace"]


def test_dial_whom_end_to_end_limit_exceeded_falls_back_to_the_line(fake_sf, app_client):
    fake_sf.api_usage = fake_sf.api_limit
    r = app_client.get("/exotel/dial-whom", query_string={"CallSid": "lim", "From": "09876543210", "To": "08039513882"})
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "+919800000002,+919800000003,+918000000000"
    assert "rate_limited" in r.headers["X-Dialwhom-Trace"]
    assert len(fake_sf.calls("/services/data/v62.0/search")) == 1  # the daily limit is not retried


def test_dial_whom_end_to_end_with_a_locked_down_integration_user(fake_sf, app_client):
    """Field-level security on common fields costs detail, never the answer."""
    fake_sf.hidden |= {"Contact.HomePhone", "Contact.OtherPhone", "Contact.AssistantPhone", "User.MobilePhone", "Lead.IsConverted"}
    r = app_client.get("/exotel/dial-whom", query_string={"CallSid": "fls", "From": "09876543210", "To": "08039513882"})
    assert r.get_data(as_text=True) == "+919800000001,+919800000002,+919800000003,+918000000000"
    assert not [c for c in fake_sf.calls("/services/data/v62.0/search") if "HomePhone" in c.query["q"]]


def test_fake_rejects_sosl_injection_like_salesforce(fake_sf):
    import requests

    tok = requests.post(f"{fake_sf.url}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": fake_sf.client_id, "client_secret": fake_sf.client_secret}, timeout=5).json()
    r = requests.get(f"{fake_sf.url}/services/data/v62.0/search/", params={"q": "FIND {98765} OR x} IN PHONE FIELDS RETURNING Contact(Id)"},
                     headers={"Authorization": f"Bearer {tok['access_token']}"}, timeout=5)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_SEARCH"
    r = requests.get(f"{fake_sf.url}/services/data/v62.0/search/", params={"q": "FIND {9876543210} IN PHONE FIELDS RETURNING Lead(Id, Owner.MobilePhone)"},
                     headers={"Authorization": f"Bearer {tok['access_token']}"}, timeout=5)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"


# -- the fake behaves as Salesforce documents ------------------------------------------------------

def _session(sf: FakeSalesforce):
    import requests

    tok = requests.post(f"{sf.url}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": sf.client_id, "client_secret": sf.client_secret}, timeout=5).json()

    def get(path: str, **params):
        return requests.get(f"{sf.url}/services/data/v62.0/{path}", params=params or None,
                            headers={"Authorization": f"Bearer {tok['access_token']}"}, timeout=5)
    return get


def test_fake_field_level_security_hides_fields_from_describe_and_refuses_them_as_invalid_field():
    with FakeSalesforce(hidden_fields={"Contact.HomePhone", "User.MobilePhone"}) as sf:
        get = _session(sf)
        names = {f["name"] for f in get("sobjects/Contact/describe").json()["fields"]}
        assert "HomePhone" not in names and {"Phone", "MobilePhone", "OwnerId"} <= names
        owner = next(f for f in get("sobjects/Contact/describe").json()["fields"] if f["name"] == "OwnerId")
        assert (owner["relationshipName"], owner["referenceTo"]) == ("Owner", ["User"])
        lead_owner = next(f for f in get("sobjects/Lead/describe").json()["fields"] if f["name"] == "OwnerId")
        assert lead_owner["referenceTo"] == ["Group", "User"]
        r = get("search/", q="FIND {9876543210} IN PHONE FIELDS RETURNING Contact(Id, HomePhone)")
        assert r.status_code == 400
        (err,) = r.json()
        assert err["errorCode"] == "INVALID_FIELD" and "No such column 'HomePhone' on entity 'Contact'" in err["message"]
        r = get("search/", q="FIND {9876543210} IN PHONE FIELDS RETURNING Contact(Id, Owner.MobilePhone)")
        assert r.status_code == 400 and "No such column 'MobilePhone' on entity 'User'" in r.json()[0]["message"]
        assert get("sobjects/Opportunity/describe").status_code == 404


def test_fake_matches_phone_tokens_as_documented_not_digit_suffixes():
    """Stored ``098765 43210`` is the tokens 098765 and 43210: only the phrase finds it."""
    with FakeSalesforce() as sf:
        get = _session(sf)

        def ids(find: str) -> list[str]:
            r = get("search/", q=f"FIND {{{find}}} IN PHONE FIELDS RETURNING Contact(Id)")
            assert r.status_code == 200, r.text
            return [x["Id"] for x in r.json()["searchRecords"]]

        assert ids("9876543210 OR 919876543210 OR 09876543210") == []
        assert ids('"098765 43210"') == ["0035g00000MeeraAAQ"]
        assert ids('"987 654 3210"') == ["0035g00000JohnAAAQ"]  # +1 987-654-3210
        assert ids("9000011111") == ["0035g00000PriyaAAQ"]  # one number of two in the field
        assert ids('"98765 4321"') == []


def test_fake_session_and_limit_errors_have_salesforces_shapes():
    with FakeSalesforce(api_limit=1) as sf:
        get = _session(sf)
        assert get("search/", q="FIND {9876543210} IN PHONE FIELDS RETURNING Contact(Id)").status_code == 200
        r = get("search/", q="FIND {9876543210} IN PHONE FIELDS RETURNING Contact(Id)")
        assert r.status_code == 403 and r.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        assert r.headers["Sforce-Limit-Info"] == "api-usage=2/1"
        sf.expire_tokens()
        r = get("search/", q="FIND {9876543210} IN PHONE FIELDS RETURNING Contact(Id)")
        assert r.status_code == 401 and r.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_fake_user_directory_query_pages_and_lists_only_active_users():
    with FakeSalesforce(query_batch=1) as sf:
        get = _session(sf)
        first = get("query/", q="SELECT Id, IsActive FROM User WHERE IsActive = true ORDER BY Id").json()
        assert first["done"] is False and first["totalSize"] == 2 and len(first["records"]) == 1
        rest = get(first["nextRecordsUrl"].split("/v62.0/", 1)[1]).json()
        assert rest["done"] is True and [u["IsActive"] for u in first["records"] + rest["records"]] == [True, True]


# -- against the fake: request counts, degraded orgs, check ------------------------------------------

def fake_connector(sf: FakeSalesforce, **opts) -> SalesforceConnector:
    c = make(described=False, login_url=sf.url, client_id=sf.client_id, client_secret=sf.client_secret, **opts)
    return c


def test_requests_per_uncached_lookup_on_a_warm_connector_is_exactly_one():
    """The figure docs/crm/salesforce.md quotes: after the first lookup, one request per caller."""
    data = sample_dataset()
    data["Lead"].append({"Id": "00Q5g00000UserLdAAQ", "Name": "Dev Rao", "Company": "Rao", "Phone": "+91 99000 11122",
                         "OwnerId": "0055g00000RaviAAAQ", "IsConverted": False, "LastModifiedDate": "2024-06-09T00:00:00.000+0000"})
    with FakeSalesforce(data) as sf:
        c = fake_connector(sf)
        try:
            cold = c.lookup(phone("09876543210"), deadline=dl())
            cold_paths = [r.path for r in sf.requests]
            answers = []
            for number in ("09123456789", "+19876543210", "08040001000", "09900011122", "09000011111", "09999999999"):
                sf.reset_requests()
                answers.append(c.lookup(phone(number), deadline=dl()))
                assert [r.path for r in sf.requests] == ["/services/data/v62.0/search/"], number
        finally:
            c.close()
    assert cold.owner.team == "North Sales"
    assert sorted(cold_paths) == sorted(["/services/oauth2/token", "/services/data/v62.0/query/", "/services/data/v62.0/search/"]
                                        + [f"/services/data/v62.0/sobjects/{o}/describe" for o in ("Contact", "Lead", "Account", "User")])
    queue_lead, ravi_contact, account_match, user_lead, inactive, unknown = answers
    assert queue_lead.owner.id == QUEUE
    assert (ravi_contact.owner.id, ravi_contact.owner.team) == (RAVI, "South Sales")
    assert account_match.record.type == "Account"
    assert (user_lead.owner.id, user_lead.owner.phone, user_lead.owner.team) == (RAVI, "+919800000009", "South Sales")
    assert (inactive.owner.id, inactive.owner.active) == ("0055g00000GitaAAAQ", False)
    assert unknown is None


def test_against_the_fake_a_locked_down_user_still_finds_callers_field_by_field():
    hidden = {"Contact.HomePhone", "Contact.AssistantPhone", "User.MobilePhone", "User.UserRoleId", "Lead.IsConverted"}
    with FakeSalesforce(hidden_fields=hidden) as sf:
        c = fake_connector(sf)
        try:
            m = c.lookup(phone("09876543210"), deadline=dl())
            searches = sf.calls("/services/data/v62.0/search")
        finally:
            c.close()
    assert m.owner.id == ASHA and m.owner.phone == "+918040000001" and m.owner.team is None  # no mobile, no role: less detail
    assert len(searches) == 1  # no INVALID_FIELD: describe said what to leave out


def test_against_the_fake_a_stale_describe_costs_one_retry_then_nothing():
    """describe said HomePhone was readable; the admin then removed it: one INVALID_FIELD, one
    repeat without it, and later lookups go straight through."""
    with FakeSalesforce() as sf:
        c = fake_connector(sf)
        try:
            c.lookup(phone("09876543210"), deadline=dl())
            sf.hidden.add("Contact.HomePhone")
            sf.reset_requests()
            m = c.lookup(phone("+19876543210"), deadline=dl())
            retried = [r.path for r in sf.requests if "/search" in r.path]
            sf.reset_requests()
            again = c.lookup(phone("09123456789"), deadline=dl())
        finally:
            c.close()
    assert m.owner.id == RAVI and len(retried) == 2
    assert again.owner.id == QUEUE and [r.path for r in sf.requests] == ["/services/data/v62.0/search/"]


def test_phrase_terms_are_what_finds_a_tokenised_number(monkeypatch):
    import dialwhom.integrations.connectors.salesforce as sf_mod

    with FakeSalesforce() as sf:
        c = fake_connector(sf)
        try:
            assert c.lookup(phone("09876543210"), deadline=dl()).record.id == "0035g00000MeeraAAQ"
            monkeypatch.setattr(sf_mod, "phrase_terms", lambda value, region="IN": [])
            assert c.lookup(phone("09876543210"), deadline=dl()) is None  # digits alone miss "098765 43210"
        finally:
            c.close()


def test_dialwhom_check_prints_warn_for_unreadable_fields_and_ok_otherwise(tmp_path, capsys, monkeypatch):
    from dialwhom.cli import main

    for hidden, mark in ((set(), "ok  "), ({"User.MobilePhone"}, "warn")):
        with FakeSalesforce(hidden_fields=hidden) as sf:
            monkeypatch.setenv("SF_SECRET", sf.client_secret)
            path = tmp_path / "conf.yaml"
            path.write_text(
                "connectors:\n"
                f"  - {{id: crm, type: salesforce, login_url: '{sf.url}', auth: client_credentials,"
                f" client_id: '{sf.client_id}', client_secret: '${{SF_SECRET}}'}}\n"
                "fallback: ['+918000000000']\ntoken: x-token-0123456789abcdef\n", encoding="utf-8")
            assert main(["check", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if "connector crm" in x)
        assert line.startswith(f"{mark} connector crm (salesforce): "), line
        assert "search ok (0 hit(s) for +91*******233" in line
        if hidden:
            assert "cannot read User.MobilePhone" in line and "warn: " not in line
