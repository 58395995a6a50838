"""The `zoho` connector: exact Zoho calls (mocked with `responses`), then end to end.

Payload shapes follow the vendor documentation cited in docs/crm/ and Zoho's
docs: token answer ``{access_token, api_domain, token_type, expires_in}``, search answer
``{data: [...], info: {...}}`` or 204, error body ``{code, details, message, status}``.
"""

from __future__ import annotations

import sample
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from responses import matchers

from fake_zoho import FakeZoho, sample_data  # noqa: E402

from dialwhom.integrations.base import ConnectorContext  # noqa: E402
from dialwhom.routing.errors import (  # noqa: E402
    AuthError,
    BadResponse,
    ConnectorUnavailable,
    RateLimited,
)
from dialwhom.integrations.registry import registry_from_classes  # noqa: E402
from dialwhom.routing.schema import validate_options  # noqa: E402
from dialwhom.testing import NOT_FOUND_PHONE, ConnectorContract  # noqa: E402
from dialwhom.integrations.connectors.zoho import DATA_CENTRES, ZohoConnector  # noqa: E402
from dialwhom.integrations.oauth import TokenRegistry, expires_in_seconds  # noqa: E402
from dialwhom.routing.config_error import ConfigError  # noqa: E402
from dialwhom.routing.deadline import Deadline  # noqa: E402
from dialwhom.routing.model import Owner, Query  # noqa: E402

ACCOUNTS = "https://accounts.zoho.in"
API = "https://www.zohoapis.in"
TOKEN_URL = f"{ACCOUNTS}/oauth/v2/token"
CREDS = {"client_id": "1000.ABCDEF123456", "client_secret": "0123456789abcdef0123456789", "refresh_token": "1000.aaaa.bbbb"}
CALLER = "+919876543210"
NATIONAL = "9876543210"
RAJ = {"name": "Raj Iyer", "id": "5725767000000185005", "email": "raj@acme.example"}
MEERA = {"name": "Meera Rao", "id": "5725767000000185011", "email": "meera@acme.example"}
ACME_ID = "5725767000000402001"


# --- builders ----------------------------------------------------------------------------------


def make(retries: int = 1, *, cls: type[ZohoConnector] = ZohoConnector, redis=None, key_prefix: str = "dialwhom:",
         **options) -> ZohoConnector:
    opts = {**CREDS, "data_centre": "in", **options}
    return cls(validate_options(cls.config_schema, opts, "connectors[0]"),
               ConnectorContext(id="zoho", region="IN", timeout_s=1.0, retries=retries, redis=redis, key_prefix=key_prefix))


def process() -> type[ZohoConnector]:
    """A connector class with in-process token state of its own: another dialwhom process."""
    return type("ZohoInAnotherProcess", (ZohoConnector,), {"token_registry": TokenRegistry()})


@pytest.fixture(autouse=True)
def own_process(monkeypatch):
    """Each test is a process of its own: no access token shared with another test's connectors."""
    monkeypatch.setattr(ZohoConnector, "token_registry", TokenRegistry())


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        add_directory(mock)
        yield mock


@pytest.fixture
def zoho():
    connectors: list[ZohoConnector] = []

    def build(**kw) -> ZohoConnector:
        c = make(**kw)
        connectors.append(c)
        return c

    yield build
    for c in connectors:
        c.close()


def token_answer(token: str = "1000.tok1", api_domain: str = API, expires_in: int = 3600) -> dict:
    return {"access_token": token, "scope": "ZohoCRM.modules.contacts.READ ZohoSearch.securesearch.READ ZohoCRM.users.READ",
            "api_domain": api_domain, "token_type": "Bearer", "expires_in": expires_in}


def add_token(rsps, token: str = "1000.tok1", *, url: str = TOKEN_URL, api_domain: str = API, body: dict | None = None):
    rsps.add(responses.POST, url, json=body if body is not None else token_answer(token, api_domain))


def contact(rid: str = "5725767000000411001", phone: str | None = "+91 98765 43210", owner: dict = RAJ,
            modified: str = "2025-06-01T13:00:00+05:30", account: dict | None = None, **extra) -> dict:
    return {"id": rid, "Full_Name": "Ana Ruiz", "First_Name": "Ana", "Last_Name": "Ruiz", "Email": "ana@customer.example",
            "Phone": phone, "Mobile": None, "Home_Phone": None, "Owner": owner, "Account_Name": account,
            "Modified_Time": modified, "$approved": True, **extra}


def lead(rid: str = "5725767000000512003", mobile: str = "+91-98765-43210", owner: dict = MEERA,
         modified: str = "2025-06-10T11:00:00+05:30") -> dict:
    return {"id": rid, "Full_Name": "Sunita Das", "Company": "Das Exports", "Phone": None, "Mobile": mobile,
            "Owner": owner, "$converted": False, "Modified_Time": modified}


def found(*records: dict, more: bool = False) -> dict:
    return {"data": list(records), "info": {"per_page": 10, "count": len(records), "page": 1, "more_records": more}}


def user(ref: dict = RAJ, role: str = "Sales Rep - South", mobile: str | None = "+91 98450 00001",
         phone: str | None = "+91 80 4000 0001", status: str = "active") -> dict:
    return {"users": [{"id": ref["id"], "full_name": ref["name"], "email": ref["email"], "phone": phone, "mobile": mobile,
                       "role": {"name": role, "id": "5725767000000231007"}, "profile": {"name": "Standard", "id": "1"},
                       "status": status, "zuid": "60000005"}]}


def zoho_error(code: str, message: str = "") -> dict:
    return {"code": code, "details": {}, "message": message or code.lower().replace("_", " "), "status": "error"}


def search_url(module: str, api: str = API, version: str = "v8") -> str:
    return f"{api}/crm/{version}/{module}/search"


def add_search(rsps, module: str, *, body=None, status: int | None = None, token: str | None = None,
               phone: str = NATIONAL, api: str = API, headers: dict | None = None, content_type: str = "application/json"):
    """One mocked search answer: `body` (dict -> 200 JSON, str -> raw), or 204 when neither is given."""
    match = [matchers.query_param_matcher({"phone": phone, "page": "1", "per_page": "10"})]
    if token:
        match.append(matchers.header_matcher({"Authorization": f"Zoho-oauthtoken {token}"}))
    if body is None:
        rsps.add(responses.GET, search_url(module, api), status=status or 204, body=b"", match=match, headers=headers)
    elif isinstance(body, (str, bytes)):
        rsps.add(responses.GET, search_url(module, api), status=status or 200, body=body, match=match,
                 headers=headers, content_type=content_type)
    else:
        rsps.add(responses.GET, search_url(module, api), status=status or 200, json=body, match=match, headers=headers)


def add_user(rsps, ref: dict = RAJ, body: dict | None = None, status: int = 200, api: str = API):
    rsps.add(responses.GET, f"{api}/crm/v8/users/{ref['id']}", status=status, json=body if body is not None else user(ref))


def add_directory(rsps, *users: dict, api: str = API, status: int = 200, body: dict | None = None):
    """The active-user directory (``users?type=ActiveUsers``, one page): Raj and Meera by default."""
    users = users or (user(RAJ)["users"][0], user(MEERA, role="Sales Manager")["users"][0])
    rsps.add(responses.GET, f"{api}/crm/v8/users", status=status,
             match=[matchers.query_param_matcher({"type": "ActiveUsers", "page": "1", "per_page": "200"})],
             json=body if body is not None else {"users": list(users),
                                                 "info": {"per_page": 200, "count": len(users), "page": 1, "more_records": False}})


def is_directory(call) -> bool:
    return urlsplit(call.request.url).path.endswith("/users") and "type=ActiveUsers" in call.request.url


def api_calls(rsps) -> list:
    """Every call but the directory load (it runs beside the first lookup's searches, in any order)."""
    return [c for c in rsps.calls if not is_directory(c)]


def calls(rsps) -> list[tuple[str, str]]:
    """(method, path) of every call but the directory load, in order."""
    return [(c.request.method, urlsplit(c.request.url).path) for c in api_calls(rsps)]


def lookup(c: ZohoConnector, value: str = CALLER, kind: str = "phone", seconds: float = 3.0):
    return c.lookup(Query(kind, value, "caller" if kind == "phone" else "custom_field"), deadline=Deadline(seconds))


# --- auth: token refresh -----------------------------------------------------------------------


@pytest.mark.parametrize("dc", sorted(DATA_CENTRES))
def test_token_refresh_posts_the_exact_form_to_the_data_centre_and_searches_its_api(rsps, zoho, dc):
    accounts, api = DATA_CENTRES[dc]
    add_token(rsps, url=f"{accounts}/oauth/v2/token", api_domain=api)
    for module in ("Contacts", "Leads", "Accounts"):
        add_search(rsps, module, api=api, token="1000.tok1")
    c = zoho(data_centre=dc.upper())

    assert lookup(c) is None

    token_call = api_calls(rsps)[0].request
    assert (token_call.method, token_call.url) == ("POST", f"{accounts}/oauth/v2/token")
    assert token_call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token_call.headers
    assert parse_qs(token_call.body) == {"grant_type": ["refresh_token"], "client_id": [CREDS["client_id"]],
                                         "client_secret": [CREDS["client_secret"]], "refresh_token": [CREDS["refresh_token"]]}
    assert urlsplit(token_call.url).query == ""  # secrets in the body, never in the URL
    searches = sorted(c.request.url for c in api_calls(rsps)[1:])
    assert searches == sorted(f"{api}/crm/v8/{m}/search?phone={NATIONAL}&page=1&per_page=10" for m in ("Contacts", "Leads", "Accounts"))
    assert all(c.request.headers["Authorization"] == "Zoho-oauthtoken 1000.tok1" for c in api_calls(rsps)[1:])


def test_token_is_cached_across_lookups(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts")
    c = zoho(modules=["Contacts"])
    assert lookup(c) is None
    assert lookup(c) is None
    assert [m for m, _ in calls(rsps)].count("POST") == 1


def test_wrong_data_centre_invalid_client_is_an_auth_error_naming_data_centre(rsps, zoho):
    add_token(rsps, url="https://accounts.zoho.eu/oauth/v2/token", body={"error": "invalid_client"})
    c = zoho(data_centre="eu")
    with pytest.raises(AuthError) as err:
        lookup(c)
    msg = str(err.value)
    assert "invalid_client" in msg and "data_centre 'eu'" in msg and "accounts.zoho.eu" in msg
    assert CREDS["client_secret"] not in msg and CREDS["refresh_token"] not in msg
    assert calls(rsps) == [("POST", "/oauth/v2/token")]  # nothing searched


def test_revoked_refresh_token_invalid_code_is_an_auth_error(rsps, zoho):
    add_token(rsps, body={"error": "invalid_code"})
    with pytest.raises(AuthError, match="refused .invalid_code.; refresh_token was revoked.*data_centre 'in'"):
        lookup(zoho())


def test_api_domain_from_the_token_answer_is_used_and_a_mismatch_is_reported(rsps, zoho):
    add_token(rsps, url="https://accounts.zoho.com/oauth/v2/token", api_domain="https://www.zohoapis.eu")
    add_search(rsps, "Contacts", api="https://www.zohoapis.eu")
    c = zoho(data_centre="us", modules=["Contacts"])
    assert lookup(c) is None
    assert calls(rsps)[1] == ("GET", "/crm/v8/Contacts/search")
    assert api_calls(rsps)[1].request.url.startswith("https://www.zohoapis.eu/")
    assert "data_centre 'us'" in c.dc_warning and "www.zohoapis.eu" in c.dc_warning


def test_api_url_overrides_the_token_api_domain(rsps, zoho):
    add_token(rsps, api_domain="https://www.zohoapis.in")
    rsps.add(responses.GET, "https://sandbox.zohoapis.in/crm/v2.1/Contacts/search", status=204)
    c = zoho(api_url="https://sandbox.zohoapis.in/", api_version="v2.1", modules=["Contacts"])
    assert lookup(c) is None
    assert api_calls(rsps)[1].request.url.startswith("https://sandbox.zohoapis.in/crm/v2.1/Contacts/search?")


def test_a_non_zoho_api_domain_in_the_token_answer_is_ignored(rsps, zoho):
    add_token(rsps, api_domain="https://evil.example.com")
    add_search(rsps, "Contacts")
    assert lookup(zoho(modules=["Contacts"])) is None
    assert urlsplit(api_calls(rsps)[1].request.url).netloc == "www.zohoapis.in"


def test_expired_token_401_invalid_token_refreshes_once(rsps, zoho):
    add_token(rsps, "1000.old")
    add_token(rsps, "1000.new")
    add_search(rsps, "Contacts", token="1000.old", status=401, body=zoho_error("INVALID_TOKEN", "invalid oauth token"))
    add_search(rsps, "Contacts", token="1000.new", body=found(contact()))
    c = zoho(modules=["Contacts"])
    c.users.ttl_s = 1e9
    c.users.load(Deadline(2.0))  # a warm directory, read with the first token
    match = lookup(c)
    assert match.owner.id == RAJ["id"]
    assert calls(rsps) == [("POST", "/oauth/v2/token"), ("GET", "/crm/v8/Contacts/search"),
                           ("POST", "/oauth/v2/token"), ("GET", "/crm/v8/Contacts/search")]
    assert api_calls(rsps)[3].request.headers["Authorization"] == "Zoho-oauthtoken 1000.new"


def test_concurrent_401s_for_one_expired_token_make_one_refresh(rsps, zoho):
    add_token(rsps, "1000.old")
    add_token(rsps, "1000.new")
    add_token(rsps, "1000.extra")  # a second refresh would take this one
    for module in ("Contacts", "Leads", "Accounts"):
        add_search(rsps, module, token="1000.old", status=401, body=zoho_error("INVALID_TOKEN"))
        add_search(rsps, module, token="1000.new")
    assert lookup(zoho()) is None
    assert [m for m, _ in calls(rsps)].count("POST") == 2


def test_a_fresh_token_refused_again_is_an_auth_error_about_data_centres(rsps, zoho):
    add_token(rsps, "1000.a")
    add_token(rsps, "1000.b")
    rsps.add(responses.GET, search_url("Contacts"), status=401, json=zoho_error("INVALID_TOKEN"))
    with pytest.raises(AuthError, match="same data centre"):
        lookup(zoho(modules=["Contacts"]))
    assert [m for m, _ in calls(rsps)].count("POST") == 2


def test_scope_mismatch_is_an_auth_error_without_a_new_token(rsps, zoho):
    add_token(rsps)
    rsps.add(responses.GET, search_url("Contacts"), status=401, json=zoho_error("OAUTH_SCOPE_MISMATCH", "Unauthorized"))
    with pytest.raises(AuthError, match="ZohoSearch.securesearch.READ"):
        lookup(zoho(modules=["Contacts"], retries=3))
    assert calls(rsps) == [("POST", "/oauth/v2/token"), ("GET", "/crm/v8/Contacts/search")]


def test_a_401_with_an_unknown_code_is_final_and_quotes_zoho(rsps, zoho):
    add_token(rsps)
    rsps.add(responses.GET, search_url("Contacts"), status=401, json=zoho_error("INVALID_CLIENT", "client 9876543210 blocked"))
    with pytest.raises(AuthError) as err:
        lookup(zoho(modules=["Contacts"]))
    assert "HTTP 401 INVALID_CLIENT" in str(err.value) and "9876543210" not in str(err.value)
    assert calls(rsps) == [("POST", "/oauth/v2/token"), ("GET", "/crm/v8/Contacts/search")]


@pytest.mark.parametrize("code", ["INVALID_TOKEN", "INVALID_OAUTHTOKEN", "AUTHENTICATION_FAILURE"])
def test_each_curable_401_code_makes_one_refresh_and_one_retry(rsps, zoho, code):
    add_token(rsps, "1000.old")
    add_token(rsps, "1000.new")
    add_search(rsps, "Contacts", token="1000.old", status=401, body=zoho_error(code))
    add_search(rsps, "Contacts", token="1000.new")
    assert lookup(zoho(modules=["Contacts"])) is None
    assert calls(rsps) == [("POST", "/oauth/v2/token"), ("GET", "/crm/v8/Contacts/search")] * 2


def test_token_endpoint_throttle_pauses_minting_instead_of_hot_looping(rsps, zoho):
    throttle = {"error_description": "You have made too many requests continuously. Please try again after some time.",
                "error": "Access Denied", "status": "failure"}
    add_token(rsps, body=throttle)  # HTTP 200, as Zoho sends it
    c = zoho(modules=["Contacts"])
    now = [1000.0]
    c.clock = lambda: now[0]
    with pytest.raises(RateLimited) as err:
        lookup(c)
    assert err.value.retry_after == pytest.approx(60.0)
    with pytest.raises(RateLimited):
        lookup(c)  # still paused: no second POST
    assert calls(rsps) == [("POST", "/oauth/v2/token")]
    now[0] += 61
    with pytest.raises(RateLimited) as err:
        lookup(c)  # one new try after the pause, refused again: the pause doubles
    assert err.value.retry_after == pytest.approx(120.0)
    assert [m for m, _ in calls(rsps)].count("POST") == 2


def test_mint_budget_caps_refreshes_when_the_api_keeps_refusing_tokens(rsps, zoho):
    add_token(rsps)
    rsps.add(responses.GET, search_url("Contacts"), status=401, json=zoho_error("INVALID_TOKEN"))
    c = zoho(modules=["Contacts"])
    c.tokens.mint_limit = 3
    for _ in range(2):
        with pytest.raises(AuthError):
            lookup(c)
    with pytest.raises(RateLimited, match="INVALID_TOKEN"):
        lookup(c)
    with pytest.raises(RateLimited):
        lookup(c)
    assert [m for m, _ in calls(rsps)].count("POST") == 3


def test_expires_in_is_seconds_and_old_millisecond_answers_are_understood():
    assert expires_in_seconds({"expires_in": 3600}) == 3600
    assert expires_in_seconds({"expires_in": 3600000, "expires_in_sec": 3600}) == 3600
    assert expires_in_seconds({"expires_in": 3600000}) == 3600
    assert expires_in_seconds({}) is None


def test_token_is_refreshed_shortly_beforeexpires_in_seconds(rsps, zoho):
    add_token(rsps, "1000.one")
    add_token(rsps, "1000.two")
    add_search(rsps, "Contacts")
    c = zoho(modules=["Contacts"])
    now = [0.0]
    c.clock = lambda: now[0]
    lookup(c)
    now[0] += 3600 - 61  # still valid (60 s margin)
    lookup(c)
    now[0] += 2
    lookup(c)
    assert [m for m, _ in calls(rsps)].count("POST") == 2
    assert api_calls(rsps)[-1].request.headers["Authorization"] == "Zoho-oauthtoken 1000.two"


# --- phone search ------------------------------------------------------------------------------


def test_found_in_contacts_with_exact_requests(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", token="1000.tok1", body=found(contact()))
    add_search(rsps, "Leads", token="1000.tok1")
    add_search(rsps, "Accounts", token="1000.tok1")
    match = lookup(zoho())

    assert match.owner.id == RAJ["id"] and match.owner.email == RAJ["email"] and match.owner.name == "Raj Iyer"
    assert match.owner.phone == "+919845000001"  # the user's mobile, in E.164
    assert match.owner.team == match.team == "Sales Rep - South"  # team = role name
    assert (match.record.type, match.record.id, match.record.name) == ("Contacts", "5725767000000411001", "Ana Ruiz")
    assert "owner source: Contacts record owner" in match.notes
    assert not any(NATIONAL in n for n in match.notes)

    got = calls(rsps)
    assert got[0] == ("POST", "/oauth/v2/token")
    assert sorted(got[1:4]) == [("GET", "/crm/v8/Accounts/search"), ("GET", "/crm/v8/Contacts/search"), ("GET", "/crm/v8/Leads/search")]
    assert len(got) == 4  # owner details from the directory: no users/{id} call
    assert f"owner {RAJ['id']} from the user directory" in match.notes and match.owner.active is True
    [directory_call] = [c.request for c in rsps.calls if is_directory(c)]  # loaded once, beside the searches
    assert parse_qs(urlsplit(directory_call.url).query) == {"type": ["ActiveUsers"], "page": ["1"], "per_page": ["200"]}
    assert directory_call.headers["Authorization"] == "Zoho-oauthtoken 1000.tok1"
    assert directory_call.headers["Accept"] == "application/json"


def test_no_content_in_every_module_is_not_found_and_costs_no_users_call(rsps, zoho):
    add_token(rsps)
    for module in ("Contacts", "Leads", "Accounts"):
        add_search(rsps, module)
    assert lookup(zoho()) is None
    assert len(api_calls(rsps)) == 4


@pytest.mark.parametrize("modules,winner", [(["Contacts", "Leads", "Accounts"], "Contacts"),
                                             (["Leads", "Contacts", "Accounts"], "Leads")])
def test_found_in_two_modules_is_tie_broken_by_module_priority(rsps, zoho, modules, winner):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(modified="2025-01-01T10:00:00+05:30")))
    add_search(rsps, "Leads", body=found(lead(modified="2025-06-10T11:00:00+05:30")))
    add_search(rsps, "Accounts")
    add_user(rsps, RAJ)
    add_user(rsps, MEERA, user(MEERA, role="Sales Manager"))
    match = lookup(zoho(modules=modules))
    assert match.record.type == winner
    assert match.owner.id == (RAJ if winner == "Contacts" else MEERA)["id"]
    assert any(n.startswith("2 records share this number; chose " + winner) for n in match.notes)


def test_within_a_module_the_latest_change_wins_whatever_the_time_zone(rsps, zoho):
    add_token(rsps)
    older_by_text = contact("5725767000000411009", modified="2025-06-01T08:00:00Z", owner=MEERA)  # 08:00 UTC
    newer_by_text = contact("5725767000000411001", modified="2025-06-01T13:00:00+05:30")  # 07:30 UTC
    add_search(rsps, "Contacts", body=found(newer_by_text, older_by_text))
    add_user(rsps, MEERA, user(MEERA))
    match = lookup(zoho(modules=["Contacts"]))
    assert match.record.id == "5725767000000411009"


def test_search_hits_without_the_callers_number_are_discarded(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(phone="+91 98765 432100"), contact("2", phone="+44 20 9876 5432")))
    assert lookup(zoho(modules=["Contacts"])) is None
    assert len(api_calls(rsps)) == 2  # no users call for a discarded hit


def test_international_form_is_searched_after_a_national_miss(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts")
    add_search(rsps, "Contacts", phone="91" + NATIONAL, body=found(contact(phone="919876543210")))
    add_user(rsps)
    match = lookup(zoho(modules=["Contacts"], phone_forms=["national", "international"]))
    assert match is not None
    assert "Contacts: 1 record(s) with the caller's number (international digits searched)" in match.notes


def test_a_warm_connector_answers_from_the_searches_alone(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact()))
    add_search(rsps, "Contacts", phone="9988776655", body=found(contact("5725767000000411007", phone="099887 76655")))
    c = zoho(modules=["Contacts"])
    first = lookup(c)
    rsps.calls.reset()
    second = lookup(c, "+919988776655")
    assert first.owner == second.owner and second.owner.phone == "+919845000001" and second.owner.active is True
    assert [(c.request.method, urlsplit(c.request.url).path) for c in rsps.calls] == [("GET", "/crm/v8/Contacts/search")]
    assert c.users.loads == 1


def test_owner_missing_from_the_active_directory_is_read_once_and_reported_inactive(rsps, zoho):
    kiran = {"name": "Kiran Shah", "id": "5725767000000185023", "email": "kiran@acme.example"}
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(owner=kiran)))
    add_user(rsps, kiran, body=user(kiran, mobile=None, phone="080 4000 0001", status="inactive"))
    c = zoho(modules=["Contacts"], owner_phone="mobile")
    match = lookup(c)
    assert (match.owner.id, match.owner.active) == (kiran["id"], False)
    assert match.owner.phone == "+918040000001"  # mobile empty: the other number
    assert f"owner {kiran['id']} is inactive in Zoho" in match.notes
    again = lookup(c)
    assert again.owner == match.owner and f"owner {kiran['id']} from cache" in again.notes
    assert calls(rsps).count(("GET", f"/crm/v8/users/{kiran['id']}")) == 1


def test_an_owner_deleted_from_zoho_is_inactive(rsps, zoho):
    gone = {"name": "Old Rep", "id": "5725767000000185099", "email": "old@acme.example"}
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(owner=gone)))
    rsps.add(responses.GET, f"{API}/crm/v8/users/{gone['id']}", status=204)
    match = lookup(zoho(modules=["Contacts"]))
    assert (match.owner.id, match.owner.email, match.owner.active) == (gone["id"], gone["email"], False)


def test_account_owner_preferred_for_contacts_is_one_extra_call_then_cached(rsps, zoho):
    add_token(rsps)
    linked = contact(account={"name": "Acme Traders", "id": ACME_ID})
    add_search(rsps, "Contacts", body=found(linked))
    add_search(rsps, "Contacts", phone="9988776655", body=found({**linked, "id": "7", "Phone": "9988776655"}))
    rsps.add(responses.GET, f"{API}/crm/v8/Accounts/{ACME_ID}",
             match=[matchers.query_param_matcher({"fields": "Owner,Account_Name"})],
             json={"data": [{"id": ACME_ID, "Account_Name": "Acme Traders", "Owner": MEERA}]})
    c = zoho(modules=["Contacts"], owner_preference="account")
    match = lookup(c)
    assert match.owner.id == MEERA["id"] and match.team == "Sales Manager"
    assert f"owner source: owner of Accounts/{ACME_ID} (owner_preference: account)" in match.notes
    again = lookup(c, "+919988776655")
    assert again.owner.id == MEERA["id"]
    assert calls(rsps).count(("GET", f"/crm/v8/Accounts/{ACME_ID}")) == 1
    assert calls(rsps).count(("GET", f"/crm/v8/users/{MEERA['id']}")) == 0  # Meera is in the directory


def test_record_owner_is_kept_when_the_account_owner_cannot_be_read(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(account={"name": "Acme", "id": ACME_ID})))
    rsps.add(responses.GET, f"{API}/crm/v8/Accounts/{ACME_ID}", status=403, json=zoho_error("NO_PERMISSION", "permission denied"))
    add_user(rsps)
    match = lookup(zoho(modules=["Contacts"], owner_preference="account"))
    assert match.owner.id == RAJ["id"]
    assert f"owner of Accounts/{ACME_ID} unavailable (auth); using the contact owner" in match.notes


def test_users_api_refusal_is_soft_and_not_retried_every_lookup(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact()))
    rsps.replace(responses.GET, f"{API}/crm/v8/users", status=401, json=zoho_error("OAUTH_SCOPE_MISMATCH", "Unauthorized"))
    c = zoho(modules=["Contacts"])
    first = lookup(c)
    assert (first.owner.id, first.owner.email, first.owner.phone, first.owner.active) == (RAJ["id"], RAJ["email"], None, None)
    assert "owner phone/role skipped: the users API refused this token recently" in first.notes
    assert "ZohoCRM.users.READ" in str(c.users.error)  # the scope Zoho's body does not name
    second = lookup(c)
    assert "owner phone/role skipped: the users API refused this token recently" in second.notes
    assert sum(1 for call in rsps.calls if is_directory(call)) == 1
    assert calls(rsps).count(("GET", f"/crm/v8/users/{RAJ['id']}")) == 0
    assert calls(rsps).count(("POST", "/oauth/v2/token")) == 1  # a missing scope is not cured by a new token


def test_record_without_an_owner_is_not_a_match(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(owner=None)))
    assert lookup(zoho(modules=["Contacts"])) is None


# --- limits and errors -------------------------------------------------------------------------


def test_too_many_requests_is_rate_limited_with_the_credit_header(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", status=429, body=zoho_error("TOO_MANY_REQUESTS", "too many requests"),
               headers={"X-API-CREDITS-REMAINING": "0"})
    with pytest.raises(RateLimited, match="X-API-CREDITS-REMAINING=0") as err:
        lookup(zoho(retries=0, modules=["Contacts"]))
    assert err.value.retry_after is None  # Zoho sends no Retry-After


def test_rate_limit_in_one_module_with_no_hit_elsewhere_raises(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", status=429, body=zoho_error("TOO_MANY_REQUESTS"))
    add_search(rsps, "Leads")
    add_search(rsps, "Accounts")
    with pytest.raises(RateLimited):
        lookup(zoho(retries=0))


def test_server_error_then_success_is_retried_within_the_deadline(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", status=500, body=zoho_error("INTERNAL_ERROR", "Internal Server Error"))
    add_search(rsps, "Contacts", body=found(contact()))
    add_user(rsps)
    match = lookup(zoho(retries=1, modules=["Contacts"]))
    assert match.owner.id == RAJ["id"]
    assert calls(rsps).count(("GET", "/crm/v8/Contacts/search")) == 2


def test_a_failed_module_does_not_hide_a_match_elsewhere(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", status=503, body="<html><body>Service Unavailable</body></html>", content_type="text/html")
    add_search(rsps, "Leads", body=found(lead()))
    add_search(rsps, "Accounts")
    add_user(rsps, MEERA, user(MEERA))
    match = lookup(zoho(retries=0))
    assert match.record.type == "Leads"
    assert "Contacts search failed (unavailable); answered from the other modules" in match.notes


def test_every_module_failing_raises_rather_than_saying_not_found(rsps, zoho):
    add_token(rsps)
    for module in ("Contacts", "Leads", "Accounts"):
        add_search(rsps, module, status=500, body=zoho_error("INTERNAL_ERROR"))
    with pytest.raises(ConnectorUnavailable):
        lookup(zoho(retries=0))


def test_html_with_200_is_a_bad_response(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body="<!DOCTYPE html><html><body>Zoho CRM - Sign in</body></html>", content_type="text/html")
    with pytest.raises(BadResponse, match="HTML") as err:
        lookup(zoho(modules=["Contacts"]))
    assert NATIONAL not in str(err.value)  # the shared layer quotes the URL, query string included


@pytest.mark.parametrize("status,code,error", [
    (404, "INVALID_URL_PATTERN", BadResponse),
    (400, "INVALID_MODULE", BadResponse),
    (400, "INVALID_QUERY", BadResponse),
    (403, "NO_PERMISSION", AuthError),
])
def test_zoho_error_codes_map_to_connector_errors(rsps, zoho, status, code, error):
    add_token(rsps)
    add_search(rsps, "Contacts", status=status, body=zoho_error(code))
    with pytest.raises(error, match=code):
        lookup(zoho(modules=["Contacts"]))


def test_rate_limit_headers_are_recorded_in_notes(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact()), headers={"X-API-CREDITS-REMAINING": "24990"})
    add_user(rsps)
    match = lookup(zoho(modules=["Contacts"]))
    assert "zoho rate: X-API-CREDITS-REMAINING=24990" in match.notes


def test_more_records_than_one_page_is_noted(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(), more=True))
    add_user(rsps)
    match = lookup(zoho(modules=["Contacts"]))
    assert "Contacts: more than 10 records matched; only the first 10 were checked" in match.notes


# --- injection ---------------------------------------------------------------------------------


def test_phone_values_reach_zoho_as_digits_only(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts")
    c = zoho(modules=["Contacts"])
    assert lookup(c, "+91 (98765) 43210") is None
    assert api_calls(rsps)[1].request.url.endswith(f"?phone={NATIONAL}&page=1&per_page=10")
    for hostile in ("+91 98765 43210)or(Email:starts_with:a", "9876543210:equals:*", "*", "' OR 1=1 --"):
        assert lookup(c, hostile) is None
    assert len(api_calls(rsps)) == 2  # hostile values were never searched


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.sampled_from(list("0123456789+()-. :,\\*abcEQ")), min_size=1, max_size=24))
def test_whatever_the_caller_value_the_search_parameter_is_digits(zoho, value):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        add_token(mock)
        mock.add(responses.GET, search_url("Contacts"), status=204)
        c = zoho(modules=["Contacts"])
        c.lookup(Query("phone", value), deadline=Deadline(2.0))
        for call in api_calls(mock)[1:]:
            params = parse_qs(urlsplit(call.request.url).query)
            assert set(params) == {"phone", "page", "per_page"}
            assert re.fullmatch(r"[0-9]{6,15}", params["phone"][0])


def test_account_key_search_uses_a_safe_criteria_and_exact_match(rsps, zoho):
    add_token(rsps)
    rsps.add(responses.GET, search_url("Accounts"),
             match=[matchers.query_param_matcher({"criteria": "(Account_Number:equals:ACC-1001)", "page": "1", "per_page": "10"})],
             json=found({"id": ACME_ID, "Account_Name": "Acme Traders", "Account_Number": "ACC-10011", "Owner": RAJ,
                         "Modified_Time": "2025-04-01T08:00:00+05:30"},
                        {"id": "5725767000000402009", "Account_Name": "Acme Traders", "Account_Number": "ACC-1001",
                         "Owner": MEERA, "Modified_Time": "2025-04-01T08:00:00+05:30"}))
    c = zoho()
    match = lookup(c, "ACC-1001", kind="account")
    assert match.record.id == "5725767000000402009" and match.owner.id == MEERA["id"]
    assert "Accounts: discarded 1 hit(s) whose Account_Number differs" in match.notes
    for hostile in ("ACC-1)or(Account_Name:starts_with:A", "ACC\\,1", "A", "ACC 1001", "x" * 65):
        assert lookup(c, hostile, kind="account") is None
    assert len(api_calls(rsps)) == 2


def test_account_key_not_found_is_none(rsps, zoho):
    add_token(rsps)
    rsps.add(responses.GET, search_url("Accounts"), status=204)
    assert lookup(zoho(), "ACC-9", kind="account") is None


# --- check and config --------------------------------------------------------------------------


FULL_SCOPE = "ZohoCRM.modules.ALL ZohoSearch.securesearch.READ ZohoCRM.users.READ ZohoCRM.settings.fields.READ"
PROBE = "9811122233"


def add_fields(rsps, module: str, names=("Owner", "Full_Name", "Phone", "Mobile", "Account_Number"), phones=("Phone", "Mobile")):
    fields = [{"api_name": n, "data_type": "phone" if n in phones else "text", "visible": True} for n in names]
    rsps.add(responses.GET, f"{API}/crm/v8/settings/fields", match=[matchers.query_param_matcher({"module": module})],
             json={"fields": fields})


def test_check_runs_the_real_search_reads_the_fields_and_the_users(rsps, zoho):
    add_token(rsps, body={**token_answer(), "scope": FULL_SCOPE})
    rsps.add(responses.GET, f"{API}/crm/v8/users", match=[matchers.query_param_matcher({"type": "CurrentUser"})],
             json={**user(), "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}},
             headers={"X-API-CREDITS-REMAINING": "4999"})
    for module in ("Contacts", "Leads", "Accounts"):
        rsps.add(responses.GET, search_url(module), status=204,
                 match=[matchers.query_param_matcher({"phone": PROBE, "page": "1", "per_page": "1"})])
        add_fields(rsps, module)
    note = zoho().check(deadline=Deadline(2.0))
    assert "accounts.zoho.in" in note and "https://www.zohoapis.in/crm/v8" in note
    assert "signed in as Raj Iyer (role Sales Rep - South)" in note and "2 active users in the directory" in note
    assert "phone search ran in Contacts, Leads, Accounts" in note and "warn" not in note and PROBE not in note
    assert calls(rsps) == [("POST", "/oauth/v2/token"), ("GET", "/crm/v8/users"),
                           *[("GET", f"/crm/v8/{m}/search") for m in ("Contacts", "Leads", "Accounts")],
                           *[("GET", "/crm/v8/settings/fields")] * 3]
    assert sum(1 for call in rsps.calls if is_directory(call)) == 1


def test_check_names_a_scope_the_token_lacks_and_a_search_zoho_refuses(rsps, zoho):
    add_token(rsps, body={**token_answer(), "scope": "ZohoCRM.modules.contacts.READ ZohoCRM.users.READ"})
    rsps.add(responses.GET, f"{API}/crm/v8/users", match=[matchers.query_param_matcher({"type": "CurrentUser"})], json=user())
    rsps.add(responses.GET, search_url("Contacts"), status=401, json=zoho_error("OAUTH_SCOPE_MISMATCH", "Unauthorized"))
    rsps.add(responses.GET, f"{API}/crm/v8/settings/fields", status=401, json=zoho_error("OAUTH_SCOPE_MISMATCH", "Unauthorized"))
    with pytest.raises(AuthError) as err:
        zoho(modules=["Contacts"]).check(deadline=Deadline(2.0))
    msg = str(err.value)
    assert "the token's scopes lack ZohoCRM.modules.accounts.READ, ZohoSearch.securesearch.READ, ZohoCRM.settings.fields.READ" in msg
    assert "Contacts search: zoho: HTTP 401 OAUTH_SCOPE_MISMATCH" in msg and "lacks the scope ZohoSearch.securesearch.READ and ZohoCRM.modules.contacts.READ" in msg
    assert calls(rsps).count(("POST", "/oauth/v2/token")) == 1


def test_check_names_a_configured_field_zoho_does_not_have(rsps, zoho):
    add_token(rsps, body={**token_answer(), "scope": FULL_SCOPE})
    rsps.add(responses.GET, f"{API}/crm/v8/users", match=[matchers.query_param_matcher({"type": "CurrentUser"})], json=user())
    rsps.add(responses.GET, search_url("Contacts"), status=204)
    add_fields(rsps, "Contacts")
    add_fields(rsps, "Accounts", names=("Owner", "Account_Name", "Phone", "Account_No"))
    with pytest.raises(BadResponse, match="account_field 'Account_Number' is not a field of Accounts .fields: Account_Name, Account_No"):
        zoho(modules=["Contacts"]).check(deadline=Deadline(2.0))


def test_check_that_could_not_read_the_fields_says_warn(rsps, zoho):
    add_token(rsps, body={**token_answer(), "scope": FULL_SCOPE})
    rsps.add(responses.GET, f"{API}/crm/v8/users", match=[matchers.query_param_matcher({"type": "CurrentUser"})], json=user())
    rsps.add(responses.GET, search_url("Contacts"), status=204)
    rsps.add(responses.GET, f"{API}/crm/v8/settings/fields", status=500, json=zoho_error("INTERNAL_ERROR"))
    note = zoho(modules=["Contacts"], account_module="Contacts", retries=0).check(deadline=Deadline(2.0))
    assert "warn: fields of Contacts not checked (unavailable" in note and "fields ok in no module" in note


def test_check_reports_a_bad_data_centre(rsps, zoho):
    add_token(rsps, url="https://accounts.zoho.com.au/oauth/v2/token", body={"error": "invalid_client"})
    with pytest.raises(AuthError, match="data_centre 'au'"):
        zoho(data_centre="au").check(deadline=Deadline(2.0))


@pytest.mark.parametrize("options,key", [
    ({"data_centre": None}, "data_centre"),
    ({"data_centre": "mars"}, "data_centre"),
    ({"accounts_url": "ftp://accounts.zoho.eu"}, "accounts_url"),
    ({"api_version": "8"}, "api_version"),
    ({"modules": ["Contacts", "Leads;DROP"]}, "modules[1]"),
    ({"modules": []}, "modules"),
    ({"modules": ["Contacts", "Contacts"]}, "modules"),
    ({"phone_forms": ["e164"]}, "phone_forms[0]"),
    ({"account_field": "Account Number"}, "account_field"),
    ({"owner_preference": "deal"}, "connectors[0].owner_preference"),
])
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError) as err:
        make(**options)
    assert err.value.key == key


def test_overrides_alone_need_no_data_centre(rsps, zoho):
    c = zoho(data_centre=None, accounts_url="https://accounts.example.test/", api_url="https://api.example.test")
    assert c.token_url == "https://accounts.example.test/oauth/v2/token"
    assert repr(c).count(CREDS["client_secret"]) == 0 and repr(c).count(CREDS["refresh_token"]) == 0


def test_token_endpoint_answers_that_are_not_oauth_errors_are_bad_responses(rsps, zoho):
    add_token(rsps, body={"error": "server busy, try later"})
    with pytest.raises(BadResponse, match="no access_token"):
        lookup(zoho())


def test_a_malformed_owner_is_a_bad_response_not_a_miss(rsps, zoho):
    add_token(rsps)
    add_search(rsps, "Contacts", body=found(contact(owner="Raj Iyer")))
    with pytest.raises(BadResponse, match="Owner"):
        lookup(zoho(modules=["Contacts"]))


# --- the contract kit (dialwhom.testing), as plugin authors run it -------------------------


class TestZohoContract(ConnectorContract):
    connector_class = ZohoConnector
    options = {**CREDS, "data_centre": "in"}
    expected_owner = Owner(id=RAJ["id"], email=RAJ["email"], phone="+919845000001", team="Sales Rep - South")
    bad_options = [({"data_centre": "mars"}, "data_centre"), ({"modules": ["Con tacts"]}, "modules[0]"),
                   ({"api_url": "not a url"}, "api_url")]
    wrong_shapes = [
        {"access_token": "1000.t", "data": "not a list"},
        {"access_token": "1000.t", "data": [1, 2]},
        {"access_token": "1000.t", "data": [{"id": "1", "Phone": "+919876543210", "Owner": "Raj Iyer"}]},
    ]

    def answer_found(self, fake_http, query):
        add_token(fake_http)
        add_search(fake_http, "Contacts", body=found(contact()))
        add_search(fake_http, "Leads")
        add_search(fake_http, "Accounts")
        add_user(fake_http)

    def answer_not_found(self, fake_http, query):
        add_token(fake_http)
        national = NOT_FOUND_PHONE[3:]
        for module in ("Contacts", "Leads", "Accounts"):
            add_search(fake_http, module, phone=national)


# --- against the fake Zoho (real HTTP) ---------------------------------------------------------


@pytest.fixture
def fake():
    with FakeZoho(**sample_data(), credits_remaining=20000) as server:
        yield server


def test_fake_zoho_end_to_end_lookup_refresh_and_cache(fake, zoho):
    c = zoho(data_centre=None, **fake.connector_options())
    match = lookup(c)
    assert (match.owner.email, match.owner.phone, match.team) == ("raj@acme.example", "+919845000001", "Sales Rep - South")
    assert any(n.startswith("zoho rate: X-API-CREDITS-REMAINING=") for n in match.notes)
    token_call = fake.requests_to("POST", "/oauth/v2/token")[0]
    assert token_call.form["grant_type"] == ["refresh_token"] and token_call.query == {}
    search = fake.requests_to("GET", "/crm/v8/Contacts/search")[0]
    assert search.arg("phone") == NATIONAL and search.headers["Authorization"].startswith("Zoho-oauthtoken 1000.")

    fake.expire_tokens()
    lead_match = lookup(c, "+919123456789")  # Sunita Das, a lead owned by Priya
    assert lead_match.record.type == "Leads" and lead_match.owner.phone == "+919845000003"
    assert fake.calls("POST", "/oauth/v2/token") == 2  # one refresh after INVALID_TOKEN
    assert lookup(c, "+911111111111") is None
    assert lookup(c, "ACC-1001", kind="account").owner.email == "meera@acme.example"
    assert "signed in as Raj Iyer" in c.check(deadline=Deadline(2.0))


def test_fake_zoho_injected_limits(fake, zoho):
    c = zoho(retries=0, modules=["Contacts"], **fake.connector_options(), data_centre=None)
    fake.inject(429, {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "too many requests", "status": "error"},
                path="/crm/*/Contacts/search")
    with pytest.raises(RateLimited):
        lookup(c)
    assert lookup(c).owner.id == "5725767000000185005"


def test_fake_zoho_wrong_client_is_invalid_client(fake, zoho):
    opts = {**fake.connector_options(), "client_id": "1000.SOMEONE.ELSE"}
    with pytest.raises(AuthError, match="invalid_client"):
        lookup(zoho(data_centre=None, **opts))


def test_fake_zoho_multi_number_phone_field_and_inactive_owner(fake, zoho):
    c = zoho(data_centre=None, **fake.connector_options())
    vikram = lookup(c, "+919811122244")  # stored as "080 2345 6789, 98111 22244"
    assert vikram.record.name == "Vikram Rao" and vikram.owner.email == "raj@acme.example"
    divya = lookup(c, "+919900011122")  # owned by Kiran, who left: not in the active directory
    assert (divya.owner.id, divya.owner.active) == ("5725767000000185023", False)
    assert "owner 5725767000000185023 is inactive in Zoho" in divya.notes
    assert fake.calls("GET", "/crm/v8/users") == 1  # the directory, loaded once
    assert fake.calls("GET", "/crm/v8/users/*") == 1  # only the owner it does not know


def test_fake_zoho_directory_reads_every_page(zoho):
    data = sample_data()
    extra = [{**data["users"][0], "id": str(5725767000000300000 + i), "email": f"rep{i}@acme.example"} for i in range(250)]
    with FakeZoho(**{**data, "users": data["users"] + extra}) as server:
        c = zoho(data_centre=None, **server.connector_options())
        assert c.users.load(Deadline(3.0)) == 253  # 3 active sample users + 250
        pages = [r.arg("page") for r in server.requests_to("GET", "/crm/v8/users")]
        assert pages == ["1", "2"]


# --- one access token per refresh token: in-process, and across instances through Redis ---------


def test_connectors_of_one_process_share_one_token(fake, zoho):
    opts = {**fake.connector_options(), "data_centre": None}
    first, second = zoho(**opts), zoho(**opts, modules=["Leads"])
    assert lookup(first) and lookup(second, "+919123456789")
    assert fake.calls("POST", "/oauth/v2/token") == 1


def test_without_redis_each_process_mints_and_the_eleventh_token_evicts_the_first(fake, zoho):
    opts = {**fake.connector_options(), "data_centre": None}
    processes = [zoho(cls=process(), **opts, modules=["Contacts"]) for _ in range(11)]
    for i, c in enumerate(processes):
        if i == 10:
            fake.mints.clear()  # ten minutes later: Zoho's throttle window has passed, the tokens live on
        assert lookup(c).owner.id == "5725767000000185005"
    assert fake.calls("POST", "/oauth/v2/token") == 11 and len(fake.evicted) == 1  # Zoho dropped the first silently
    fake.reset_requests()
    assert lookup(processes[0]).owner.id == "5725767000000185005"  # its token is gone: 401, a new one
    assert fake.calls("GET", "/crm/v8/Contacts/search") == 2 and fake.calls("POST", "/oauth/v2/token") == 1


def test_processes_sharing_redis_mint_one_token_between_them(fake, zoho, redis_client):
    client, prefix = redis_client
    opts = {**fake.connector_options(), "data_centre": None, "modules": ["Contacts"]}
    processes = [zoho(cls=process(), redis=client, key_prefix=prefix, **opts) for _ in range(12)]
    errors: list[BaseException] = []

    def run(c):
        try:
            assert lookup(c).owner.id == "5725767000000185005"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    import threading

    threads = [threading.Thread(target=run, args=(c,)) for c in processes]  # all cold at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not errors
    assert fake.calls("POST", "/oauth/v2/token") == 1 and fake.evicted == []
    assert sum(c.tokens.fetches for c in processes) == 1
    assert client.get(f"{prefix}oauth:{processes[0].oauth.fingerprint}:lock") is None  # released
    stored = client.get(f"{prefix}oauth:{processes[0].oauth.fingerprint}:token")
    assert stored and CREDS["refresh_token"].encode() not in stored and fake.client[2].encode() not in stored

    # The token expires: the first process to notice mints one, the others pick it up from Redis.
    fake.expire_tokens()
    for c in processes:
        assert lookup(c).owner.id == "5725767000000185005"
    assert fake.calls("POST", "/oauth/v2/token") == 2 and fake.evicted == []


def test_the_mint_budget_counts_every_instance_through_redis(fake, zoho, redis_client):
    client, prefix = redis_client
    opts = {**fake.connector_options(), "data_centre": None, "modules": ["Contacts"], "retries": 0}
    a, b = (zoho(cls=process(), redis=client, key_prefix=prefix, **opts) for _ in range(2))
    a.tokens.mint_limit = b.tokens.mint_limit = 2
    assert lookup(a)
    fake.expire_tokens()
    assert lookup(b)  # 401, b mints the second token of the window
    a.tokens.invalidate()  # as a 401 would: forgotten here and in Redis
    with pytest.raises(RateLimited, match="2 access tokens minted in 10 min") as err:
        lookup(a)  # a's own count is 1: the shared count says 2
    assert 0 < err.value.retry_after <= 600
    assert fake.calls("POST", "/oauth/v2/token") == 2


def test_redis_down_falls_back_to_the_process_token(fake, zoho):
    import redis as redis_lib

    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_timeout=0.05, socket_connect_timeout=0.05, retry_on_error=[], retry=None)
    opts = {**fake.connector_options(), "data_centre": None, "modules": ["Contacts"]}
    tried: list[str] = []
    real_get = dead.get
    dead.get = lambda *a, **kw: tried.append("get") or real_get(*a, **kw)
    try:
        c = zoho(redis=dead, **opts)
        assert lookup(c).owner.id == "5725767000000185005"
        fake.expire_tokens()
        assert lookup(c).owner.id == "5725767000000185005"  # 401, a new token, minted here
        assert fake.calls("POST", "/oauth/v2/token") == 2
        assert tried == ["get"]  # after the failure, Redis is left alone for a while
    finally:
        dead.close()


def test_fake_zoho_throttles_the_eleventh_mint_in_ten_minutes(fake):
    import requests

    cid, secret, refresh = fake.client
    form = {"grant_type": "refresh_token", "client_id": cid, "client_secret": secret, "refresh_token": refresh}
    with requests.Session() as http:
        answers = [http.post(f"{fake.url}/oauth/v2/token", data=form) for _ in range(11)]
        fake.mints.clear()  # ten minutes later
        eleventh = http.post(f"{fake.url}/oauth/v2/token", data=form).json()["access_token"]
        first = answers[0].json()["access_token"]
        old = http.get(f"{fake.url}/crm/v8/users", params={"type": "CurrentUser"}, headers={"Authorization": f"Zoho-oauthtoken {first}"})
        new = http.get(f"{fake.url}/crm/v8/users", params={"type": "CurrentUser"}, headers={"Authorization": f"Zoho-oauthtoken {eleventh}"})
    assert all("access_token" in a.json() for a in answers[:10])
    assert (answers[10].status_code, answers[10].json()["error"]) == (200, "Access Denied")
    assert "too many requests" in answers[10].json()["error_description"].lower()
    assert fake.evicted == [first]  # the 11th live token dropped the oldest
    assert (old.status_code, old.json()["code"]) == (401, "INVALID_TOKEN") and new.status_code == 200


def _wait_for_app():
    from dialwhom.app import create_app

    return create_app


def test_dial_whom_routes_a_known_caller_to_the_zoho_owner_then_team(fake):
    create_app = _wait_for_app()
    config = {
        "default_region": "IN",
        "budget_ms": 3000,
        "connectors": [{"id": "crm", "type": "zoho", "timeout_ms": 2000, **fake.connector_options()}],
        "reps": [{"owner": "raj@acme.example", "phone": sample.ASHA, "team": "south"}],
        "teams": {"south": {"backup": [sample.VIKRAM, sample.NORTH3]},
                  "Sales Rep - South": {"backup": ["+919800000004"]}},
        "fallback": [sample.FALLBACK],
    }
    app = create_app(config, registry=registry_from_classes([ZohoConnector]))
    client = app.test_client()
    try:
        resp = client.get("/exotel/dial-whom", query_string={"CallSid": "CA-zoho-1", "From": "09876543210", "To": "08039513882"})
        assert resp.status_code == 200 and resp.mimetype == "text/plain"
        assert resp.get_data(as_text=True).strip() == "+919800000001,+919800000002,+919800000003,+918000000000"
        assert "crm" in resp.headers["X-Dialwhom-Trace"]

        # An owner with no reps entry: the phone and role (team) from Zoho's users API.
        resp = client.get("/exotel/dial-whom", query_string={"CallSid": "CA-zoho-2", "From": "09123456789", "To": "08039513882"})
        assert resp.get_data(as_text=True).strip() == "+919845000003,+919800000004,+918000000000"

        # Unknown caller: fallback only.
        resp = client.get("/exotel/dial-whom", query_string={"CallSid": "CA-zoho-3", "From": "09000000001", "To": "08039513882"})
        assert resp.get_data(as_text=True).strip() == sample.FALLBACK
        searches = fake.requests_to("GET", "/crm/v8/*/search")
        assert searches and all(re.fullmatch(r"[0-9]+", r.arg("phone") or "") for r in searches)
    finally:
        app.extensions["dialwhom"].close()
