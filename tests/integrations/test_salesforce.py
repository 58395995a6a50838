"""The `salesforce` connector: requests made, answers understood, failures translated.

Unit tests mock Salesforce with `responses` (payload shapes from Salesforce's REST docs, see
the vendor documentation cited in docs/crm/); the end-to-end tests run the Flask app
against `fake_salesforce`, a real local HTTP server.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from hypothesis import given, settings as hsettings, strategies as st
from responses import matchers

from fake_salesforce import FakeSalesforce  # noqa: E402

from dialwhom.integrations.base import ConnectorContext  # noqa: E402
from dialwhom.routing.errors import AuthError, BadResponse, ConfigError, RateLimited  # noqa: E402
from dialwhom.integrations.registry import registry_from_classes  # noqa: E402
from dialwhom.integrations.connectors.salesforce import SalesforceConnector, build_sosl, search_terms, soql_literal  # noqa: E402
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

EXPECTED_SOSL = (
    "FIND {9876543210 OR 919876543210 OR 09876543210} IN PHONE FIELDS RETURNING "
    "Contact(Id, Name, Phone, MobilePhone, HomePhone, OtherPhone, AssistantPhone, OwnerId, Owner.Name, "
    "Owner.Email, Owner.Phone, Owner.MobilePhone, Owner.IsActive, AccountId, Account.Name, Account.OwnerId, "
    "Account.Owner.Name, Account.Owner.Email, Account.Owner.Phone, Account.Owner.MobilePhone, "
    "Account.Owner.IsActive, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 5), "
    "Lead(Id, Name, Company, Phone, MobilePhone, OwnerId, Owner.Name, Owner.Email, Owner.Phone, Owner.Type, "
    "Owner.IsActive, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC LIMIT 5), "
    "Account(Id, Name, Phone, OwnerId, Owner.Name, Owner.Email, Owner.Phone, Owner.MobilePhone, "
    "Owner.IsActive, LastModifiedDate ORDER BY LastModifiedDate DESC LIMIT 5)"
)
USER_SOQL = ("SELECT Id, Name, Email, Phone, MobilePhone, IsActive, Department, Division, UserRole.Name "
             "FROM User WHERE Id = '{}' LIMIT 1")


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
             phone: str | None = "+91 80 4000 0001", mobile: str | None = "+91 98000 00001") -> dict:
    return {"attributes": attrs("User", uid), "Name": name, "Email": email, "Phone": phone, "MobilePhone": mobile, "IsActive": True}


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


def user_query(uid: str = ASHA, role: str | None = "North Sales", **fields) -> dict:
    rec = {"attributes": attrs("User", uid), "Id": uid, "Name": "Asha Rao", "Email": "asha@example.com",
           "Phone": "+91 80 4000 0001", "MobilePhone": "+91 98000 00001", "IsActive": True,
           "Department": "Sales", "Division": "North",
           "UserRole": {"attributes": attrs("UserRole", "00E5g000000NORTHAQ"), "Name": role} if role else None}
    rec.update(fields)
    return {"totalSize": 1, "done": True, "records": [rec]}


def sf_error(code: str, message: str) -> list[dict]:
    return [{"message": message, "errorCode": code}]


# -- helpers --------------------------------------------------------------------------------------

def make(**opts) -> SalesforceConnector:
    base = {"login_url": MYDOMAIN, "auth": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    base.update(opts)
    ctx_keys = {k: base.pop(k) for k in ("retries", "timeout_s") if k in base}
    options = validate_options(SalesforceConnector.config_schema, base, "connectors[0]")
    return SalesforceConnector(options, ConnectorContext(id="sf", region="IN", timeout_s=ctx_keys.get("timeout_s", 2.0), retries=ctx_keys.get("retries", 1)))


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

def test_client_credentials_token_then_one_search_exact_requests(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]}, headers=LIMIT_HDR)
    rsps.get(QUERY_URL, json=user_query())
    m = make().lookup(phone(), deadline=dl())

    token, search, user = rsps.calls
    assert token.request.method == "POST" and token.request.url == TOKEN_URL
    assert token.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert token.request.body == f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
    assert "Authorization" not in token.request.headers

    assert search.request.method == "GET"
    assert urlsplit(search.request.url).path == f"/services/data/{V}/search/"
    assert parse_qs(urlsplit(search.request.url).query) == {"q": [EXPECTED_SOSL]}
    assert search.request.headers["Authorization"] == f"Bearer {TOK1}"
    assert search.request.headers["Accept"] == "application/json"
    raw_query = urlsplit(search.request.url).query
    assert "{" not in raw_query and "%7B9876543210" in raw_query  # braces percent-encoded, never raw

    assert user.request.method == "GET" and urlsplit(user.request.url).path == f"/services/data/{V}/query/"
    assert q_of(user) == USER_SOQL.format(ASHA)
    assert user.request.headers["Authorization"] == f"Bearer {TOK1}"

    assert m.owner.id == ASHA and m.owner.email == "asha@example.com" and m.owner.name == "Asha Rao"
    assert m.owner.phone == "+919800000001"  # MobilePhone first, as E.164
    assert m.owner.team == "North Sales"
    assert (m.record.type, m.record.id, m.record.name) == ("Contact", "0035g00000MeeraAAQ", "Meera Shah")
    assert "Sforce-Limit-Info: api-usage=18/15000" in m.notes
    assert any("from Contact.Owner" in n for n in m.notes)


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


def test_lead_owned_by_user_without_phone_reads_user(rsps):
    """Lead.Owner is the polymorphic Name object (no MobilePhone): the User query supplies it."""
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [lead(owner=RAVI, owner_name="Ravi Iyer", owner_type="User")]})
    rsps.get(QUERY_URL, json=user_query(RAVI, role=None, Name="Ravi Iyer", Email="ravi@example.com", Phone=None, MobilePhone="+91 98000 00009"))
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert (m.owner.id, m.owner.email, m.owner.phone, m.owner.team) == (RAVI, "ravi@example.com", "+919800000009", None)
    assert q_of(calls_to(rsps, QUERY_URL)[0]) == USER_SOQL.format(RAVI)


def test_owner_phone_present_and_no_team_wanted_is_one_call(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert m.owner.phone == "+919800000001" and m.owner.team is None
    assert len(calls_to(rsps, SEARCH_URL)) == 1 and not calls_to(rsps, QUERY_URL)


@pytest.mark.parametrize("field, team", [("Department", "Sales"), ("Division", "North"), ("UserRole.Name", "North Sales")])
def test_team_field_choices(rsps, field, team):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    rsps.get(QUERY_URL, json=user_query())
    assert make(team_field=field).lookup(phone(), deadline=dl()).owner.team == team


def test_owner_details_are_cached_per_user(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    rsps.get(QUERY_URL, json=user_query())
    c = make()
    first = c.lookup(phone(), deadline=dl())
    second = c.lookup(phone(), deadline=dl())
    assert first.owner == second.owner
    assert len(calls_to(rsps, QUERY_URL)) == 1 and len(calls_to(rsps, SEARCH_URL)) == 2


def test_owner_details_failure_still_answers_with_the_owner(rsps):
    cc_token(rsps)
    rsps.get(SEARCH_URL, json={"searchRecords": [contact()]})
    rsps.get(QUERY_URL, status=503, json=sf_error("SERVER_UNAVAILABLE", "Server temporarily unavailable"))
    m = make(retries=0).lookup(phone(), deadline=dl())
    assert m.owner.id == ASHA and m.owner.email == "asha@example.com" and m.owner.team is None
    assert "owner details unavailable (unavailable)" in m.notes


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


def test_inactive_owner_is_noted(rsps):
    cc_token(rsps)
    rel = user_rel()
    rel["IsActive"] = False
    rsps.get(SEARCH_URL, json={"searchRecords": [contact(owner_rel=rel)]})
    m = make(team_field="none").lookup(phone(), deadline=dl())
    assert f"owner {ASHA} is an inactive user" in m.notes


# -- SOSL safety ----------------------------------------------------------------------------------

FIND = re.compile(r"^FIND \{(\d{6,})( OR \d{6,})*\} IN PHONE FIELDS RETURNING ")


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_search_terms_are_digits_only_for_any_input(text):
    terms = search_terms(text, "IN")
    assert all(t.isascii() and t.isdigit() and len(t) >= 6 for t in terms)
    if terms:
        assert FIND.match(build_sosl(terms, ("Contact", "Lead", "Account")))


@given(st.from_regex(r"\+91[6-9][0-9]{9}", fullmatch=True))
def test_search_terms_for_valid_numbers(number):
    terms = search_terms(number, "IN")
    assert terms == [number[3:], number[1:], "0" + number[3:]]


@pytest.mark.parametrize("term", ["98765}", "98765 OR x", "", "４５６７８９", "123-456"])
def test_build_sosl_refuses_non_digit_terms(term):
    with pytest.raises(ValueError):
        build_sosl([term], ("Contact",))


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
    assert not set(braces) & set("?&|!{}[]()^~*:\\\"'+-")


# -- account lookups ------------------------------------------------------------------------------

def test_account_lookup_soql(rsps):
    cc_token(rsps)
    rec = account()
    rsps.get(QUERY_URL, json={"totalSize": 1, "done": True, "records": [rec]}, headers=LIMIT_HDR)
    m = make(team_field="none").lookup(Query("account", " ACME-001 ", "custom_field"), deadline=dl())
    (call,) = calls_to(rsps, QUERY_URL)
    assert q_of(call) == ("SELECT Id, Name, OwnerId, Owner.Name, Owner.Email, Owner.Phone, Owner.MobilePhone, Owner.IsActive, "
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

def test_check_authenticates_and_reads_the_version_resources(rsps):
    cc_token(rsps)
    rsps.get(f"{MYDOMAIN}/services/data/{V}/", json={"sobjects": f"/services/data/{V}/sobjects", "search": f"/services/data/{V}/search",
                                                     "query": f"/services/data/{V}/query"}, headers=LIMIT_HDR)
    note = make().check(deadline=dl())
    assert note == f"client_credentials token ok (user {ASHA}) at acme.my.salesforce.com; API {V} available; api-usage=18/15000"
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {TOK1}"


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
        "reps": [{"owner": "asha@example.com", "phone": "+919800000001", "team": "north"}],
        "teams": {"north": {"backup": ["+919800000002", "+919800000003"]}, "south": {"backup": ["+919800000012"]}},
        "fallback": ["+918000000000"],
        "lines": {"+918039513882": "north"},
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
