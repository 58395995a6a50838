"""The `freshsales` connector: exact lookups fanned out, owners from the selector, limits kept.

Unit tests mock Freshsales with `responses` (shapes from developers.freshworks.com/crm/api and
integrators' code, see docs/crm/freshsales.md); the end-to-end tests run the Flask app against
`fake_freshsales`, a real local HTTP server.
"""

from __future__ import annotations

import sample
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from fake_freshsales import API_KEY, FakeFreshsales, sample_data
from test_ratelimit import Clock  # the fake clock the RateLimiter tests use

from dialwhom.integrations.base import ConnectorContext
from dialwhom.integrations.connectors.freshsales import FreshsalesConnector
from dialwhom.integrations.ratelimit import RateLimiter
from dialwhom.routing.schema import validate_options
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import AuthError, BadResponse, ConfigError, RateLimited
from dialwhom.routing.model import Owner, Query, Record
from dialwhom.routing.phones import variants
from dialwhom.testing import ConnectorContract

BASE = "https://acme.myfreshworks.com/crm/sales"
LOOKUP = f"{BASE}/api/lookup"
OWNERS = f"{BASE}/api/selector/owners"
CALLER = "+919876543210"
ASHA, RAVI, GONE = 31000148397, 31000148398, 31000148399
USERS = sample_data()["owners"]
MEERA = {"id": 31016358306, "display_name": "Meera Shah", "mobile_number": CALLER, "work_number": None,
         "owner_id": ASHA, "updated_at": "2025-05-10T20:48:27+05:30"}
EMPTY = {"contacts": {"contacts": []}}
EMPTY_ACCOUNTS = {"sales_accounts": {"sales_accounts": []}}


def make(**opts) -> FreshsalesConnector:
    opts.setdefault("api_key", API_KEY)
    if "base_url" not in opts:
        opts.setdefault("bundle", "acme.myfreshworks.com/crm/sales")
    ctx = ConnectorContext(id="fs", region="IN", timeout_s=1.0, retries=opts.pop("retries", 1))
    return FreshsalesConnector(validate_options(FreshsalesConnector.config_schema, opts, "connectors[0]"), ctx)


def phone(value: str = CALLER) -> Query:
    return Query("phone", value)


def query_of(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def lookups(rsps) -> list[dict]:
    return [query_of(c) for c in rsps.calls if urlsplit(c.request.url).path.endswith("/api/lookup")]


def answer(hits: dict | None = None):
    """A responses callback for /api/lookup: `hits` maps (f, q) to records; anything else finds nothing."""
    def callback(request):
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        block = "contacts" if q["entities"] == "contact" else "sales_accounts"
        return 200, {}, json.dumps({block: {block: (hits or {}).get((q["f"], q["q"]), [])}})
    return callback


@pytest.fixture
def fs():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def serve(rsps, hits=None, users=USERS):
    rsps.add_callback(responses.GET, LOOKUP, callback=answer(hits))
    rsps.get(OWNERS, json={"users": users})


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle, url", [
    ("acme", BASE), ("acme.myfreshworks.com/crm/sales", BASE), ("https://acme.myfreshworks.com/crm/sales/", BASE),
    ("acme.freshworks.com", "https://acme.freshworks.com/crm/sales"),
])
def test_bundle_alias_forms(bundle, url):
    assert make(bundle=bundle).base_url == url


def test_base_url_for_tests_and_classic_accounts():
    assert make(base_url="http://127.0.0.1:9/crm/sales/api").base_url == "http://127.0.0.1:9/crm/sales"
    assert make(base_url="https://acme.freshsales.io").base_url == "https://acme.freshsales.io"


@pytest.mark.parametrize("opts, key", [
    ({"bundle": None}, "bundle"),
    ({"bundle": "acme", "base_url": "https://x.test"}, "bundle"),  # both
    ({"bundle": "acme/../x"}, "bundle"),
    ({"contact_fields": []}, "contact_fields"),
    ({"contact_fields": ["mobile_number", "Mobile Number"]}, "contact_fields[1]"),
    ({"account_fields": ["phone", "phone"]}, "account_fields"),
    ({"account_field": "cf account"}, "account_field"),
    ({"max_forms": 6}, "max_concurrency"),  # 6 x 3 = 18 lookups would not fit 16 at once
])
def test_config_errors_name_the_key(opts, key):
    with pytest.raises(ConfigError) as exc:
        make(**opts)
    assert exc.value.key == key


# -- the requests -----------------------------------------------------------------------------


def test_every_stored_form_is_looked_up_at_once_in_every_field(fs):
    serve(fs, {("mobile_number", CALLER): [MEERA]})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner == Owner(id=str(ASHA), email="asha@example.com", name="Asha Rao", phone=sample.ASHA, active=True)
    assert match.record == Record(type="contact", id=str(MEERA["id"]), name="Meera Shah")
    forms = variants(CALLER)[:3]
    assert forms == ["+919876543210", "919876543210", "9876543210"]
    expected = [{"q": q, "f": f, "entities": e} for e, fields in (("contact", ("mobile_number", "work_number")), ("sales_account", ("phone",)))
                for f in fields for q in forms]
    assert sorted(map(sorted, map(dict.items, lookups(fs)))) == sorted(map(sorted, map(dict.items, expected)))
    assert sum(urlsplit(c.request.url).path.endswith("/selector/owners") for c in fs.calls) == 1
    for call in fs.calls:
        assert call.request.headers["Authorization"] == f"Token token={API_KEY}"
        assert API_KEY not in call.request.url
    assert "9 exact lookups (3 forms x 3 fields), 1 record(s) hold the number" in match.notes


def test_warm_connector_makes_only_the_lookups(fs):
    serve(fs, {("mobile_number", CALLER): [MEERA]})
    c = make()
    c.lookup(phone(), deadline=Deadline(3))
    before = len(fs.calls)
    c.lookup(phone(), deadline=Deadline(3))
    assert len(fs.calls) - before == 9
    assert all(urlsplit(x.request.url).path.endswith("/api/lookup") for x in fs.calls[before:])


def test_concurrent_cold_callers_share_one_owners_load(fs):
    serve(fs, {("mobile_number", CALLER): [MEERA]})
    c = make()
    threads = [threading.Thread(target=c.lookup, args=(phone(),), kwargs={"deadline": Deadline(3)}) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sum(urlsplit(x.request.url).path.endswith("/selector/owners") for x in fs.calls) == 1
    assert len(lookups(fs)) == 36


def test_max_forms_and_fields_set_the_cost(fs):
    serve(fs)
    make(max_forms=1, account_fields=[]).lookup(phone(), deadline=Deadline(3))
    assert sorted(q["f"] for q in lookups(fs)) == ["mobile_number", "work_number"]
    assert {q["q"] for q in lookups(fs)} == {CALLER}


def test_national_form_in_work_number(fs):
    kiran = {"id": 7, "display_name": "Kiran", "work_number": "9876543210", "owner_id": RAVI}
    serve(fs, {("work_number", "9876543210"): [kiran]})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner.id == str(RAVI) and match.owner.phone == sample.MEERA


def test_contact_wins_over_account_and_owned_over_unowned(fs):
    account = {"id": 9, "name": "Acme", "phone": CALLER, "owner_id": RAVI, "updated_at": "2026-01-01T00:00:00Z"}
    unowned = {**MEERA, "id": 8, "owner_id": None, "updated_at": "2026-02-01T00:00:00Z"}
    serve(fs, {("mobile_number", CALLER): [MEERA, unowned], ("phone", CALLER): [account]})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.record.id == str(MEERA["id"])
    assert "skipped 1 record(s) without an owner" in match.notes


def test_hit_whose_number_differs_is_discarded(fs):
    serve(fs, {("mobile_number", CALLER): [{**MEERA, "mobile_number": "+919876543211"}]})
    assert make().lookup(phone(), deadline=Deadline(3)) is None


def test_not_found_is_none(fs):
    serve(fs)
    assert make().lookup(phone(), deadline=Deadline(3)) is None
    assert len(lookups(fs)) == 9


def test_deactivated_owner(fs):
    serve(fs, {("mobile_number", CALLER): [{**MEERA, "owner_id": GONE}]})
    owner = make().lookup(phone(), deadline=Deadline(3)).owner
    assert owner == Owner(id=str(GONE), email="old.rep@example.com", name="Old Rep", phone=None, active=False)


def test_owner_missing_from_the_selector_is_the_id_only(fs):
    serve(fs, {("mobile_number", CALLER): [{**MEERA, "owner_id": 42}]})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner == Owner(id="42")


def test_lookup_hit_without_owner_id_reads_the_record(fs):
    hit = {k: v for k, v in MEERA.items() if k != "owner_id"}
    serve(fs, {("mobile_number", CALLER): [hit]})
    fs.get(f"{BASE}/api/contacts/{MEERA['id']}", json={"contact": MEERA})
    match = make().lookup(phone(), deadline=Deadline(3))
    assert match.owner.id == str(ASHA)
    assert f"owner read from contact/{MEERA['id']} (the lookup answer had none)" in match.notes


def test_some_lookups_failing_still_answers_from_the_others(fs):
    def flaky(request):
        q = parse_qs(urlsplit(request.url).query)
        if q["f"] == ["work_number"]:
            return 500, {}, '{"errors": {"code": 500, "message": ["oops"]}}'
        return answer({("mobile_number", CALLER): [MEERA]})(request)
    fs.add_callback(responses.GET, LOOKUP, callback=flaky)
    fs.get(OWNERS, json={"users": USERS})
    match = make(retries=0).lookup(phone(), deadline=Deadline(3))
    assert match.owner.id == str(ASHA)
    assert "3 of 9 lookups failed (unavailable); answered from the others" in match.notes


def test_failures_without_a_hit_raise_the_most_telling_error(fs):
    def failing(request):
        q = parse_qs(urlsplit(request.url).query)
        if q["f"] == ["phone"]:
            return 403, {}, '{"errors": {"code": 403, "message": ["You do not have permission"]}}'
        return 500, {}, "<html>oops</html>"
    fs.add_callback(responses.GET, LOOKUP, callback=failing)
    fs.get(OWNERS, json={"users": USERS})
    with pytest.raises(AuthError) as exc:
        make(retries=0).lookup(phone(), deadline=Deadline(3))
    assert "permission denied" in str(exc.value) and "admin" in str(exc.value)


# -- account keys -----------------------------------------------------------------------------


def test_account_lookup_uses_the_configured_field(fs):
    acme = sample_data()["sales_accounts"][0]
    fs.get(LOOKUP, json={"sales_accounts": {"sales_accounts": [acme]}})
    fs.get(OWNERS, json={"users": USERS})
    match = make(account_field="cf_account_number").lookup(Query("account", "ACC-1001", "custom_field"), deadline=Deadline(3))
    assert match.record == Record(type="sales_account", id=str(acme["id"]), name="Acme Traders") and match.owner.id == str(RAVI)
    assert lookups(fs) == [{"q": "ACC-1001", "f": "cf_account_number", "entities": "sales_account"}]


def test_account_lookup_off_without_a_field(fs):
    assert make().lookup(Query("account", "ACC-1001", "custom_field"), deadline=Deadline(3)) is None
    assert not fs.calls


# -- errors and limits ------------------------------------------------------------------------


def test_429_without_retry_after_waits_the_minute(fs):
    fs.get(LOOKUP, status=429, json={"errors": {"code": 429, "message": ["Too many requests"]}})
    fs.get(OWNERS, status=429, json={})
    with pytest.raises(RateLimited) as exc:
        make().lookup(phone(), deadline=Deadline(3))
    assert exc.value.retry_after == 60.0 and "Too many requests" not in str(exc.value) and "message withheld" in str(exc.value)


def test_401_names_the_key_and_the_bundle(fs):
    fs.get(LOOKUP, status=401, json={"login": "failed", "message": "Incorrect or expired API key"})
    fs.get(OWNERS, status=401, json={"login": "failed", "message": "Incorrect or expired API key"})
    with pytest.raises(AuthError) as exc:
        make().lookup(phone(), deadline=Deadline(3))
    assert "Incorrect or expired" not in str(exc.value) and "API key refused" in str(exc.value) and "bundle" in str(exc.value)


@pytest.mark.parametrize("body, ctype", [("<!DOCTYPE html><html>Log in</html>", "text/html"), ('{"contacts": []}', "application/json"),
                                         ("[1]", "application/json")])
def test_wrong_answers_are_bad_response(fs, body, ctype):
    fs.get(LOOKUP, body=body, content_type=ctype)
    fs.get(OWNERS, json={"users": USERS})
    with pytest.raises(BadResponse):
        make().lookup(phone(), deadline=Deadline(3))


def test_local_limits_refuse_a_lookup_the_minute_cannot_afford(fs):
    serve(fs, {("mobile_number", CALLER): [MEERA]})
    clock = Clock()
    c = make()
    c.limiters = (RateLimiter("fs-minute", 10, 60.0, clock=clock, sleep=clock.sleep), RateLimiter("fs-hour", 1000, 3600.0, clock=clock, sleep=clock.sleep))
    c.lookup(phone(), deadline=Deadline(3))  # 9 lookups + the owners selector: the minute's 10
    before = len(fs.calls)
    with pytest.raises(RateLimited):
        c.lookup(phone(), deadline=Deadline(3))  # the next slot is 6 s away
    assert len(fs.calls) == before  # nothing sent


# -- check ------------------------------------------------------------------------------------


def test_check_looks_up_in_every_field_and_reads_owners(fs):
    serve(fs)
    note = make().check(deadline=Deadline(3))
    assert lookups(fs) == [{"q": "+919000000000", "f": f, "entities": e}
                           for e, f in (("contact", "mobile_number"), ("contact", "work_number"), ("sales_account", "phone"))]
    assert "lookups ran on contact.mobile_number, contact.work_number, sales_account.phone; 3 owners" in note
    assert "9 calls per uncached lookup" in note


def test_check_names_the_field_freshsales_refuses(fs):
    fs.get(LOOKUP, status=400, json={"errors": {"code": 400, "message": ["Invalid field cf_phone for contact"]}})
    with pytest.raises(BadResponse) as exc:
        make(contact_fields=["cf_phone"]).check(deadline=Deadline(3))
    assert "contact field 'cf_phone'" in str(exc.value)


# -- the contract kit -------------------------------------------------------------------------


class TestFreshsalesContract(ConnectorContract):
    connector_class = FreshsalesConnector
    options = {"api_key": API_KEY, "bundle": "acme"}
    expected_owner = Owner(id=str(ASHA), email="asha@example.com")
    wrong_shapes = [{"contacts": []}, {"contacts": {"contacts": [42]}}, {"users": "x"}]
    max_calls_on_failure = 10  # nine concurrent exact lookups and the owners selector alongside
    bad_options = [({"bundle": None}, "bundle"), ({"contact_fields": ["Bad Name"]}, "contact_fields[0]")]

    def answer_found(self, fake_http, query):
        serve(fake_http, {("mobile_number", query.phone): [MEERA]})

    def answer_not_found(self, fake_http, query):
        serve(fake_http)


# -- end to end: the Flask app against the fake Freshsales --------------------------------------


def _config(url: str, budget_ms: int = 3000) -> dict:
    return {
        "default_region": "IN",
        "budget_ms": budget_ms,
        "connectors": [{"id": "crm", "type": "freshsales", "base_url": f"{url}/crm/sales", "api_key": API_KEY, "timeout_ms": budget_ms - 100}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
                 {"owner": str(RAVI), "phone": sample.MEERA, "team": "south"}],
        "teams": {"north": {"backup": [sample.VIKRAM]}, "south": {"backup": [sample.RAHUL]}},
        "fallback": [sample.FALLBACK],
    }


@pytest.fixture
def fake():
    with FakeFreshsales(**sample_data()) as server:
        yield server


@pytest.fixture
def client_for(make_app):
    """A test client of the real app (conftest's factory, closed afterwards) with this connector type."""
    return lambda config: make_app(config, classes=[FreshsalesConnector]).test_client()


def _dial(client, caller: str, sid: str) -> tuple[list[str], float]:
    started = time.monotonic()
    resp = client.get("/exotel/dial-whom", query_string={"CallSid": sid, "From": caller, "To": "08039513882"})
    assert resp.status_code == 200
    return resp.get_data(as_text=True).strip().split(","), time.monotonic() - started


def test_e2e_seeded_callers_reach_their_owners(fake, client_for):
    client = client_for(_config(fake.url))
    assert _dial(client, "09876543210", "c1")[0][:2] == [sample.ASHA, sample.VIKRAM]  # stored E.164
    assert fake.calls("GET", "/crm/sales/api/lookup") == 9 and fake.calls("GET", "/crm/sales/api/selector/owners") == 1
    assert _dial(client, "+91 99887 76655", "c2")[0][:2] == [sample.MEERA, sample.RAHUL]  # stored national
    assert _dial(client, "08040001000", "c3")[0][:2] == [sample.MEERA, sample.RAHUL]  # a sales account
    assert fake.calls("GET", "/crm/sales/api/selector/owners") == 1  # the directory stays warm
    assert _dial(client, "09111111111", "c4")[0] == [sample.FALLBACK]
    for r in fake.requests:
        assert r.headers["Authorization"] == f"Token token={API_KEY}" and API_KEY not in str(r.query)


def test_e2e_owner_id_missing_from_lookup_hits(fake):
    fake.hide_owner_in_lookup = True
    c = make(base_url=f"{fake.url}/crm/sales")
    match = c.lookup(phone(), deadline=Deadline(3))
    assert match.owner.email == "asha@example.com"
    assert fake.calls("GET", "/crm/sales/api/contacts/31016358306") == 1
    c.close()


def test_e2e_the_fakes_hourly_429_maps_to_rate_limited(fake):
    fake.per_hour = 5  # the account's other integrations used the rest of the hour
    c = make(base_url=f"{fake.url}/crm/sales", retries=0)
    with pytest.raises(RateLimited) as exc:  # 5 lookups answer "nothing", the rest 429: not a "not found"
        c.lookup(phone("+919111111111"), deadline=Deadline(3))
    assert exc.value.retry_after == 60.0
    c.close()


def test_e2e_wrong_key_and_wrong_field(fake):
    c = make(base_url=f"{fake.url}/crm/sales", api_key="not-the-key-0123456789")
    with pytest.raises(AuthError):
        c.lookup(phone(), deadline=Deadline(3))
    c.close()
    c = make(base_url=f"{fake.url}/crm/sales", contact_fields=["cf_no_such_field"])
    with pytest.raises(BadResponse) as exc:
        c.check(deadline=Deadline(3))
    assert "cf_no_such_field" in str(exc.value)
    c.close()


@pytest.mark.parametrize("fault", ["hang", "500", "429", "html"])
def test_e2e_faults_answer_within_budget_from_fallback(fake, client_for, fault):
    client = client_for(_config(fake.url, budget_ms=800))
    path = "/crm/sales/api/lookup"
    if fault == "hang":
        fake.inject(200, {"contacts": {"contacts": []}}, path=path, delay_s=1.0, times=40)
    elif fault == "500":
        fake.inject(500, {"errors": {"code": 500, "message": ["Internal error"]}}, path=path, times=40)
    elif fault == "429":
        fake.inject(429, {"errors": {"code": 429, "message": ["Too many requests"]}}, path=path, times=40)
    else:
        fake.inject(200, "<!DOCTYPE html><html>maintenance</html>", path=path, times=40)
    numbers, elapsed = _dial(client, "09876543210", f"f-{fault}")
    assert elapsed < 0.8 + 0.3
    assert numbers == [sample.FALLBACK]
