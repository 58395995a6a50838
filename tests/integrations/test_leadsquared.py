"""The `leadsquared` connector: requests made, answers understood, limits kept, failures translated.

Unit tests mock LeadSquared with `responses` (shapes from apidocs.leadsquared.com, see
docs/crm/leadsquared.md); the end-to-end tests run the Flask app against `fake_leadsquared`, a
real local HTTP server that behaves as LeadSquared documents.
"""

from __future__ import annotations

import sample
import json
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from fake_leadsquared import ACCESS_KEY, ASHA, GONE, RAVI, SECRET_KEY, FakeLeadSquared, sample_data
from test_ratelimit import Clock  # the fake clock the RateLimiter tests use

from dialwhom.integrations.base import ConnectorContext
from dialwhom.integrations.connectors.leadsquared import LeadSquaredConnector
from dialwhom.integrations.ratelimit import RateLimiter
from dialwhom.routing.schema import validate_options
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import AuthError, BadResponse, ConfigError, RateLimited
from dialwhom.routing.model import Owner, Query, Record
from dialwhom.testing import ConnectorContract

HOST = "https://api-in21.leadsquared.com"
SEARCH = f"{HOST}/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber"
USERS = f"{HOST}/v2/UserManagement.svc/Users.Get"
USER = f"{HOST}/v2/UserManagement.svc/User/Retrieve/ByUserId"
LEADS_GET = f"{HOST}/v2/LeadManagement.svc/Leads.Get"
OPPORTUNITY = f"{HOST}/v2/OpportunityManagement.svc/GetOpportunityDetails"
CALLER = "+919876543210"
NATIONAL = "9876543210"
KEYS = {"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY}

LEAD = {"ProspectID": "1bfdec89-f91b-46a3-85bd-fda3f3712518", "FirstName": "Meera", "LastName": "Shah",
        "Phone": "+91-9876543210", "Mobile": None, "OwnerId": ASHA, "OwnerIdName": "Asha Rao",
        "OwnerIdEmailAddress": "asha@example.com", "ProspectActivityDate_Max": "2025-11-25 07:47:26.000"}
USERS_LIST = [
    {"ID": ASHA, "FirstName": "Asha", "LastName": "Rao", "EmailAddress": "asha@example.com", "Role": "Sales_User", "StatusCode": 0},
    {"ID": RAVI, "FirstName": "Ravi", "LastName": "Kumar", "EmailAddress": "ravi@example.com", "Role": "Sales_Manager", "StatusCode": 0},
    {"ID": GONE, "FirstName": "Old", "LastName": "Rep", "EmailAddress": "old.rep@example.com", "Role": "Sales_User", "StatusCode": 1},
]
ASHA_DETAIL = {"UserId": ASHA, "FirstName": "Asha", "LastName": "Rao", "EmailAddress": "asha@example.com", "StatusCode": 0,
               "TeamId": "8bfd8940-0f53-11e8-871e-02bf1924461c", "TeamName": "North", "ManagerUserId": RAVI,
               "ManagerName": "Ravi Kumar", "PhoneMobile": "+91-9800000001", "PhoneMain": ""}


def make(**opts) -> LeadSquaredConnector:
    opts.setdefault("access_key", ACCESS_KEY)
    opts.setdefault("secret_key", SECRET_KEY)
    ctx = ConnectorContext(id="lsq", region="IN", timeout_s=1.0, retries=opts.pop("retries", 1))
    return LeadSquaredConnector(validate_options(LeadSquaredConnector.config_schema, opts, "connectors[0]"), ctx)


def phone(value: str = CALLER) -> Query:
    return Query("phone", value)


def query_of(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def path_of(call) -> str:
    return urlsplit(call.request.url).path


@pytest.fixture
def lsq():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def answer_all(rsps, lead=LEAD, detail=ASHA_DETAIL):
    rsps.get(SEARCH, json=[lead] if lead else [])
    rsps.get(USERS, json=USERS_LIST)
    rsps.get(USER, json=[detail] if detail else [])


# -- config -----------------------------------------------------------------------------------


def test_defaults_are_the_mumbai_host_and_the_pro_plan():
    c = make()
    assert c.host == HOST and c.calls_per_5s == 5 and c.account_lookup == "none"
    assert ACCESS_KEY not in repr(c) and SECRET_KEY not in repr(c)


@pytest.mark.parametrize("plan, calls", [("lite", 2), ("super", 10), ("enterprise", 25)])
def test_the_plan_sets_the_local_limit(plan, calls):
    assert make(plan=plan).calls_per_5s == calls
    assert make(plan=plan, calls_per_5s=7).calls_per_5s == 7


@pytest.mark.parametrize("opts, key", [
    ({"host": "api-in21.leadsquared.com"}, "host"),
    ({"host": "https://api-in21.leadsquared.com/v2/LeadManagement.svc?x=1"}, "host"),
    ({"account_field": "mx Account"}, "account_field"),
])
def test_config_errors_name_the_key(opts, key):
    with pytest.raises(ConfigError) as exc:
        make(**opts)
    assert exc.value.key == key


def test_host_may_be_given_with_v2():
    assert make(host="https://api.leadsquared.com/v2/").host == "https://api.leadsquared.com"


# -- the requests -----------------------------------------------------------------------------


def test_cold_lookup_searches_and_loads_the_directory_together_then_details(lsq):
    answer_all(lsq)
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner == Owner(id=ASHA, email="asha@example.com", name="Asha Rao", phone="+91-9800000001", team="North", active=True)
    assert match.team == "North"
    assert match.record == Record(type="lead", id=LEAD["ProspectID"], name="Meera Shah")
    assert "owner's manager: Ravi Kumar" in match.notes
    assert sorted(path_of(c) for c in lsq.calls) == sorted(urlsplit(u).path for u in (SEARCH, USERS, USER))
    search = next(c for c in lsq.calls if path_of(c).endswith("RetrieveLeadByPhoneNumber"))
    assert query_of(search) == {"phone": "919876543210"}  # digits only, as LeadSquared asks
    for call in lsq.calls:
        assert call.request.headers["x-LSQ-AccessKey"] == ACCESS_KEY
        assert call.request.headers["x-LSQ-SecretKey"] == SECRET_KEY
        assert ACCESS_KEY not in call.request.url and SECRET_KEY not in call.request.url
        assert "accessKey" not in call.request.url and "secretKey" not in call.request.url
    assert query_of(next(c for c in lsq.calls if path_of(c).endswith("ByUserId"))) == {"userId": ASHA}


def test_warm_lookup_is_one_call(lsq):
    answer_all(lsq)
    c = make()
    c.lookup(phone(), deadline=Deadline(3))
    before = len(lsq.calls)
    match = c.lookup(phone(), deadline=Deadline(3))
    assert [path_of(x) for x in lsq.calls[before:]] == ["/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber"]
    assert f"owner {ASHA} details from cache" in match.notes and match.owner.team == "North"


def test_concurrent_cold_callers_share_one_users_load(lsq):
    def slow_users(request):
        time.sleep(0.05)  # still loading when the other callers arrive
        return 200, {}, json.dumps(USERS_LIST)
    lsq.get(SEARCH, json=[LEAD])
    lsq.add_callback(responses.GET, USERS, callback=slow_users)
    lsq.get(USER, json=[ASHA_DETAIL])
    c = make(plan="enterprise")
    threads = [threading.Thread(target=c.lookup, args=(phone(),), kwargs={"deadline": Deadline(3)}) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sum(path_of(x).endswith("Users.Get") for x in lsq.calls) == 1


def test_stale_owner_details_are_answered_and_refreshed_off_the_callers_path(lsq):
    answer_all(lsq)
    c = make(directory_ttl_s=60)
    now = [1000.0]
    c._clock = lambda: now[0]
    c.lookup(phone(), deadline=Deadline(3))
    lsq.replace(responses.GET, USER, json=[{**ASHA_DETAIL, "TeamName": "West"}])
    now[0] += 61
    match = c.lookup(phone(), deadline=Deadline(3))
    assert match.owner.team == "North"  # the stale answer, at once
    assert f"owner {ASHA} details from cache (refreshing in the background)" in match.notes
    for _ in range(100):  # the refresh runs on its own thread
        if c.lookup(phone(), deadline=Deadline(3)).owner.team == "West":
            break
        time.sleep(0.01)
    assert c.lookup(phone(), deadline=Deadline(3)).owner.team == "West"
    assert sum(path_of(x).endswith("ByUserId") for x in lsq.calls) == 2


def test_prefetch_loads_every_active_users_details_so_a_new_owner_costs_one_call(lsq):
    ravi_lead = {**LEAD, "ProspectID": "bd595fc2-3678-4004-9ac6-65bfd1caadb5", "OwnerId": RAVI,
                 "OwnerIdName": "Ravi Kumar", "OwnerIdEmailAddress": "ravi@example.com"}
    lsq.get(SEARCH, json=[LEAD])
    lsq.get(USERS, json=USERS_LIST)
    lsq.get(USER, match=[matchers.query_param_matcher({"userId": ASHA})], json=[ASHA_DETAIL])
    lsq.get(USER, match=[matchers.query_param_matcher({"userId": RAVI})], json=[{**ASHA_DETAIL, "UserId": RAVI, "TeamName": "South"}])
    c = make(plan="enterprise", prefetch_details=True)
    c.lookup(phone(), deadline=Deadline(3))
    for _ in range(100):  # the prefetch runs on its own thread
        if RAVI in c._details:
            break
        time.sleep(0.01)
    # every active user, never the inactive one (Asha may be fetched twice: by her caller and the prefetch)
    assert {query_of(x)["userId"] for x in lsq.calls if path_of(x).endswith("ByUserId")} == {ASHA, RAVI}
    lsq.replace(responses.GET, SEARCH, json=[ravi_lead])
    before = len(lsq.calls)
    match = c.lookup(phone(), deadline=Deadline(3))
    assert match.owner.team == "South" and len(lsq.calls) == before + 1
    c.close()


def test_national_phone_form(lsq):
    answer_all(lsq)
    make(phone_form="national").lookup(phone(), deadline=Deadline(3))
    assert query_of(next(c for c in lsq.calls if path_of(c).endswith("RetrieveLeadByPhoneNumber"))) == {"phone": NATIONAL}


def test_not_found_is_none_and_makes_no_owner_call(lsq):
    answer_all(lsq, lead=None)
    assert make().lookup(phone(), deadline=Deadline(3)) is None
    assert not any(path_of(c).endswith("ByUserId") for c in lsq.calls)


def test_a_lead_whose_number_is_not_the_callers_is_discarded(lsq):
    answer_all(lsq, lead={**LEAD, "Phone": "+1-9876543210"})  # same national digits, another country
    assert make().lookup(phone(), deadline=Deadline(3)) is None


def test_mobile_field_match(lsq):
    answer_all(lsq, lead={**LEAD, "Phone": None, "Mobile": "09876543210"})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert f"matched lead/{LEAD['ProspectID']} on Mobile (LeadSquared picks the most recently active lead)" in match.notes


def test_inactive_owner_is_reported_inactive_without_a_details_call(lsq):
    answer_all(lsq, lead={**LEAD, "OwnerId": GONE, "OwnerIdName": "Old Rep", "OwnerIdEmailAddress": "old.rep@example.com"})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner == Owner(id=GONE, email="old.rep@example.com", name="Old Rep", phone=None, team=None, active=False)
    assert f"owner {GONE} is not an active LeadSquared user" in match.notes
    assert not any(path_of(c).endswith("ByUserId") for c in lsq.calls)


def test_owner_unknown_to_the_directory_and_empty_details_is_inactive(lsq):
    stranger = "00000000-1111-2222-3333-444444444444"
    answer_all(lsq, lead={**LEAD, "OwnerId": stranger, "OwnerIdEmailAddress": None, "OwnerIdName": None}, detail=None)
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner.id == stranger and match.owner.active is False


def test_lead_without_owner_is_not_a_match(lsq):
    answer_all(lsq, lead={**LEAD, "OwnerId": None, "OwnerIdEmailAddress": None})
    assert make().lookup(phone(), deadline=Deadline(3)) is None


def test_directory_failure_still_answers_with_the_leads_owner(lsq):
    lsq.get(SEARCH, json=[LEAD])
    lsq.get(USERS, status=500, json={"Status": "Error", "ExceptionType": "MXDBException", "ExceptionMessage": "x"})
    lsq.get(USER, json=[ASHA_DETAIL])
    match = make(retries=0).lookup(phone(), deadline=Deadline(3))
    assert match.owner.email == "asha@example.com" and match.owner.active is True  # details answered: active
    assert any(n.startswith("users directory unavailable (unavailable)") for n in match.notes)


def test_details_failure_answers_without_team(lsq):
    lsq.get(SEARCH, json=[LEAD])
    lsq.get(USERS, json=USERS_LIST)
    lsq.get(USER, status=500, body="<html>oops</html>", content_type="text/html")
    match = make(retries=0).lookup(phone(), deadline=Deadline(3))
    assert match.owner.id == ASHA and match.owner.team is None and match.owner.active is True
    assert "owner details unavailable (unavailable); answered without team" in match.notes


# -- account keys -----------------------------------------------------------------------------


def test_account_lookup_is_off_by_default(lsq):
    assert make().lookup(Query("account", "ACC-1001", "custom_field"), deadline=Deadline(3)) is None
    assert not lsq.calls


def test_account_lookup_by_lead_field_sends_an_exact_criteria_search(lsq):
    lsq.post(LEADS_GET, json=[{**LEAD, "mx_Account_Number": "ACC-1001"}])
    lsq.get(USERS, json=USERS_LIST)
    lsq.get(USER, json=[ASHA_DETAIL])
    c = make(account_lookup="lead_field", account_field="mx_Account_Number")
    match = c.lookup(Query("account", "ACC-1001", "custom_field"), deadline=Deadline(3))
    assert match.owner.id == ASHA and match.record.type == "lead"
    body = json.loads(next(x for x in lsq.calls if path_of(x).endswith("Leads.Get")).request.body)
    assert body["Parameter"] == {"LookupName": "mx_Account_Number", "LookupValue": "ACC-1001", "SqlOperator": "="}
    assert body["Columns"]["Include_CSV"].split(",")[-1] == "mx_Account_Number"


def test_account_lookup_by_opportunity_id(lsq):
    opp = {"ID": "4597c076-be5a-4ba2-9b08-ecd21626750f", "Name": "Loan", "DisplayName": "Home loan",
           "Fields": [{"SchemaName": "Owner", "Value": RAVI}, {"SchemaName": "Status", "Value": "Open"}]}
    lsq.get(OPPORTUNITY, match=[matchers.query_param_matcher({"OpportunityId": opp["ID"]})], json=opp)
    lsq.get(USERS, json=USERS_LIST)
    lsq.get(USER, json=[{**ASHA_DETAIL, "UserId": RAVI, "TeamName": "South", "ManagerName": ""}])
    match = make(account_lookup="opportunity_id").lookup(Query("account", opp["ID"], "digits"), deadline=Deadline(3))
    assert match.owner.id == RAVI and match.owner.email == "ravi@example.com" and match.team == "South"
    assert match.record == Record(type="opportunity", id=opp["ID"], name="Home loan")


@pytest.mark.parametrize("value", ["ACC' OR 1=1", "a b", "%", "x" * 65])
def test_unsafe_account_keys_never_reach_leadsquared(lsq, value):
    assert make(account_lookup="lead_field").lookup(Query("account", value, "custom_field"), deadline=Deadline(3)) is None
    assert not lsq.calls


# -- errors and limits ------------------------------------------------------------------------


def test_401_names_keys_and_region(lsq):
    lsq.get(SEARCH, status=401, json={"Status": "Error", "ExceptionType": "MXUnAuthorizedAccessException", "ExceptionMessage": "Invalid keys"})
    lsq.get(USERS, status=401, json={"Status": "Error"})
    with pytest.raises(AuthError) as exc:
        make().lookup(phone(), deadline=Deadline(3))
    assert "region" in str(exc.value) and "MXUnAuthorizedAccessException" in str(exc.value)


def test_429_says_the_limit_and_waits_the_window(lsq):
    body = {"Status": "Error", "ExceptionType": "MXAPIRateLimitExceededException",
            "ExceptionMessage": "API calls exceeded the limit of 5 in 5 second(s)"}
    lsq.get(SEARCH, status=429, json=body)
    lsq.get(USERS, status=429, json=body)
    with pytest.raises(RateLimited) as exc:
        make().lookup(phone(), deadline=Deadline(3))
    assert exc.value.retry_after == 5.0 and "limit of 5" not in str(exc.value) and "message withheld" in str(exc.value)  # read, not quoted
    assert sum(path_of(c).endswith("RetrieveLeadByPhoneNumber") for c in lsq.calls) == 1  # 5 s does not fit: no retry


def test_error_messages_mask_numbers(lsq):
    lsq.get(SEARCH, status=400, json={"Status": "Error", "ExceptionType": "MXInvalidInputException",
                                      "ExceptionMessage": "Invalid phone 919876543210"})
    lsq.get(USERS, json=USERS_LIST)
    with pytest.raises(BadResponse) as exc:
        make().lookup(phone(), deadline=Deadline(3))
    assert NATIONAL not in str(exc.value) and "MXInvalidInputException" in str(exc.value)


@pytest.mark.parametrize("body", [{"Status": "Error"}, [1, 2], "<html>login</html>"])
def test_wrong_answers_are_bad_response(lsq, body):
    if isinstance(body, str):
        lsq.get(SEARCH, body=body, content_type="text/html")
    else:
        lsq.get(SEARCH, json=body)
    lsq.get(USERS, json=USERS_LIST)
    with pytest.raises(BadResponse):
        make().lookup(phone(), deadline=Deadline(3))


def test_local_limiter_waits_only_when_the_wait_fits(lsq):
    answer_all(lsq)
    clock = Clock()
    c = make(plan="lite")  # 2 calls per 5 s: one slot every 2.5 s
    c.limiter = RateLimiter("lsq-test", 2, 5.0, clock=clock, sleep=clock.sleep)
    c.lookup(phone(), deadline=Deadline(3))  # search, directory, details: the third waits 2.5 s (fits 3 s)
    assert clock.slept == [pytest.approx(2.5)]
    before = len(lsq.calls)
    with pytest.raises(RateLimited) as exc:
        c.lookup(phone(), deadline=Deadline(1))  # the next slot is 2.5 s away: refused, no call made
    assert exc.value.retry_after == pytest.approx(2.5)
    assert len(lsq.calls) == before and clock.slept == [pytest.approx(2.5)]


def test_instances_with_shared_state_draw_from_one_bucket_per_account(lsq):
    """Two instances (two servers) with the same keys share LeadSquared's per-account limit through Redis."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=0.5)
    prefix = f"dialwhom-test-{uuid.uuid4().hex[:8]}:"
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    answer_all(lsq)
    opts = validate_options(LeadSquaredConnector.config_schema, {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "plan": "lite"}, "c")
    first, second = (LeadSquaredConnector(opts, ConnectorContext(id=f"lsq{i}", redis=client, key_prefix=prefix)) for i in (1, 2))
    try:
        first.check(deadline=Deadline(3))  # 2 calls: the whole burst of lite (2 per 5 s)
        before = len(lsq.calls)
        with pytest.raises(RateLimited):
            second.lookup(phone(), deadline=Deadline(1))  # the other instance sees the same empty bucket
        assert len(lsq.calls) == before
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


# -- check ------------------------------------------------------------------------------------


def test_check_runs_the_real_search_and_lists_users(lsq):
    lsq.get(SEARCH, match=[matchers.query_param_matcher({"phone": "919000000000"}), matchers.header_matcher(KEYS)], json=[])
    lsq.get(USERS, json=USERS_LIST)
    note = make().check(deadline=Deadline(3))
    assert "lead search ran (no match, as expected)" in note and "2 active of 3 users" in note
    assert [path_of(c) for c in lsq.calls] == ["/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber", "/v2/UserManagement.svc/Users.Get"]


def test_check_names_the_refused_permission(lsq):
    lsq.get(SEARCH, json=[])
    lsq.get(USERS, status=403, json={"Status": "Error", "ExceptionType": "MXUnAuthorizedAccessException", "ExceptionMessage": "denied"})
    with pytest.raises(AuthError) as exc:
        make().check(deadline=Deadline(3))
    assert "users list" in str(exc.value) and "permission" in str(exc.value)


# -- the contract kit -------------------------------------------------------------------------


class TestLeadSquaredContract(ConnectorContract):
    connector_class = LeadSquaredConnector
    # enterprise: 25 calls per 5 s, enough for the kit's eight concurrent callers on one bucket
    options = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "plan": "enterprise"}
    expected_owner = Owner(id=ASHA, email="asha@example.com", team="North")
    wrong_shapes = [{"Status": "Error"}, [42], {"Leads": []}]
    max_calls_on_failure = 2  # the search and, on a cold connector, the users directory alongside it

    def answer_found(self, fake_http, query):
        fake_http.get(SEARCH, match=[matchers.header_matcher(KEYS)], json=[LEAD])
        fake_http.get(USERS, json=USERS_LIST)
        fake_http.get(USER, json=[ASHA_DETAIL])

    def answer_not_found(self, fake_http, query):
        fake_http.get(SEARCH, json=[])
        fake_http.get(USERS, json=USERS_LIST)


# -- end to end: the Flask app against the fake LeadSquared -------------------------------------


def _config(url: str, budget_ms: int = 3000, **extra) -> dict:
    return {
        "default_region": "IN",
        "budget_ms": budget_ms,
        "connectors": [{"id": "crm", "type": "leadsquared", "host": url, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
                        "timeout_ms": budget_ms - 100, "plan": "enterprise", **extra}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
                 {"owner": RAVI, "phone": sample.MEERA, "team": "south"}],
        "teams": {"north": {"backup": [sample.VIKRAM]}, "south": {"backup": [sample.RAHUL]}},
        "fallback": [sample.FALLBACK],
    }


@pytest.fixture
def fake():
    with FakeLeadSquared(**sample_data()) as server:
        yield server


@pytest.fixture
def app_for(make_app):
    """A test client of the real app (conftest's factory, closed afterwards) with this connector type."""
    return lambda config: make_app(config, classes=[LeadSquaredConnector]).test_client()


def _dial(client, caller: str, sid: str) -> tuple[list[str], float]:
    started = time.monotonic()
    resp = client.get("/exotel/dial-whom", query_string={"CallSid": sid, "From": caller, "To": "08039513882"})
    assert resp.status_code == 200
    return resp.get_data(as_text=True).strip().split(","), time.monotonic() - started


def test_e2e_seeded_caller_rings_the_lead_owner_then_team(fake, app_for):
    client = app_for(_config(fake.url))
    numbers, _ = _dial(client, "09876543210", "c1")
    assert numbers[:2] == [sample.ASHA, sample.VIKRAM]  # Asha: the most recently active lead's owner
    search = fake.requests_to("GET", "/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber")[0]
    assert search.query == {"phone": ["919876543210"]}
    assert search.headers["x-LSQ-AccessKey"] == ACCESS_KEY and "accessKey" not in search.query
    assert fake.calls("GET", "/v2/UserManagement.svc/Users.Get") == 1
    assert fake.calls("GET", "/v2/UserManagement.svc/User/Retrieve/ByUserId") == 1


def test_e2e_owner_matched_by_id_and_unknown_caller(fake, app_for):
    client = app_for(_config(fake.url))
    assert _dial(client, "09988776655", "c2")[0][:2] == [sample.MEERA, sample.RAHUL]  # Ravi, by OwnerId
    assert len(fake.requests) == 3  # cold: the search and the users list side by side, then Ravi's details
    assert _dial(client, "09111111111", "c3")[0] == [sample.FALLBACK]
    assert len(fake.requests) == 4  # warm: one search


def test_e2e_opportunity_key_and_input_errors(fake):
    c = make(host=fake.url, account_lookup="opportunity_id")
    match = c.lookup(Query("account", "4597c076-be5a-4ba2-9b08-ecd21626750f", "digits"), deadline=Deadline(3))
    assert match.owner.id == RAVI and match.record.type == "opportunity" and match.team == "South"
    before = fake.calls()
    assert c.lookup(Query("account", "no-such-opportunity", "digits"), deadline=Deadline(3)) is None  # LeadSquared's 500
    assert fake.calls() == before + 1  # an input error is not retried
    c.close()
    c = make(host=fake.url, account_lookup="lead_field", account_field="mx_No_Such_Field")
    with pytest.raises(BadResponse) as exc:
        c.lookup(Query("account", "ACC-1001", "custom_field"), deadline=Deadline(3))
    assert "MXInvalidInputException" in str(exc.value)
    c.close()


def test_e2e_lead_field_key(fake, app_for):
    client = app_for(_config(fake.url, account_lookup="lead_field", account_field="mx_Account_Number"))
    resp = client.get("/exotel/dial-whom", query_string={"CallSid": "k1", "From": "09111111111", "To": "08039513882",
                                                         "CustomField": "ACC-1001"})
    assert resp.get_data(as_text=True).split(",")[:2] == [sample.ASHA, sample.VIKRAM]


def test_e2e_departed_owner_is_inactive(fake):
    c = make(host=fake.url)
    match = c.lookup(phone("+919123456780"), deadline=Deadline(3))
    assert match.owner.id == GONE and match.owner.active is False and match.owner.phone is None
    c.close()


def test_e2e_fake_matches_digits_only_and_refuses_wrong_keys(fake):
    url = f"{fake.url}/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber"
    with requests.Session() as s:
        assert s.get(url, params={"phone": "+91-9876543210"}, headers=KEYS).json() == []
        assert [lead["OwnerId"] for lead in s.get(url, params={"phone": NATIONAL}, headers=KEYS).json()] == [ASHA]
        assert s.get(url, params={"phone": NATIONAL, "accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}).status_code == 200
    c = make(host=fake.url, secret_key="wrong-secret-0123456789")
    with pytest.raises(AuthError):
        c.lookup(phone(), deadline=Deadline(3))
    c.close()


def test_e2e_the_fakes_429_when_over_the_plan(fake):
    fake.calls_per_5s = 2
    c = make(host=fake.url, plan="enterprise", retries=0)  # our limiter thinks 25: the vendor's 429 still maps
    c.lookup(phone(), deadline=Deadline(3))  # search + users (2 calls)
    with pytest.raises(RateLimited) as exc:
        c._details.clear()
        c.lookup(phone("+919988776655"), deadline=Deadline(3))
    assert exc.value.retry_after == 5.0
    c.close()


@pytest.mark.parametrize("fault", ["hang", "500", "429", "html"])
def test_e2e_faults_answer_within_budget_from_fallback(fake, app_for, fault):
    client = app_for(_config(fake.url, budget_ms=800))
    path = "/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber"
    if fault == "hang":
        fake.inject(200, [], path=path, delay_s=1.0, times=5)
    elif fault == "500":
        fake.inject(500, {"Status": "Error", "ExceptionType": "MXDBException", "ExceptionMessage": "db down"}, path=path, times=5)
    elif fault == "429":
        fake.inject(429, {"Status": "Error", "ExceptionType": "MXAPIRateLimitExceededException",
                          "ExceptionMessage": "API calls exceeded the limit of 25 in 5 second(s)"}, path=path, times=5)
    else:
        fake.inject(200, "<!DOCTYPE html><html>maintenance</html>", path=path, times=5)
    numbers, elapsed = _dial(client, "09876543210", f"f-{fault}")
    assert elapsed < 0.8 + 0.3
    assert numbers == [sample.FALLBACK]
