"""`dialwhom.integrations.http.HttpClient` against a misbehaving server on real sockets (and `responses`).

Every call here runs under a watchdog (`timed`), so a call that ignores its deadline fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import responses

from dialwhom.routing.errors import (
    AuthError,
    BadResponse,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    RateLimited,
)
from dialwhom.integrations.http import HttpClient
from dialwhom.integrations.support import CachedToken
from dialwhom.routing.deadline import Deadline

PHONE = "+919876543210"
#: what must never appear in an error message: the number, raw or URL-encoded
PHONE_FORMS = ("9876543210", "%2B919876543210")
#: how late a call may return after its deadline
MARGIN_S = 0.15
#: how long the watchdog lets a call run before declaring it stuck
STUCK_S = 3.0


# --- helpers ----------------------------------------------------------------------------------


class Outcome:
    def __init__(self, value=None, error: BaseException | None = None, elapsed: float = 0.0):
        self.value, self.error, self.elapsed = value, error, elapsed

    def raises(self, cls: type[BaseException]) -> BaseException:
        assert self.error is not None, f"expected {cls.__name__}, got a value: {self.value!r}"
        assert type(self.error) is cls, f"expected {cls.__name__}, got {type(self.error).__name__}: {self.error}"
        return self.error


def timed(fn, *, stuck_after: float = STUCK_S) -> Outcome:
    """Run `fn()` in a thread; fail (without hanging) if it is still running after `stuck_after`."""
    box: dict = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        box["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=run, daemon=True, name="timed-call")
    t.start()
    t.join(stuck_after)
    if t.is_alive():
        pytest.fail(f"call still running after {stuck_after:.1f} s: the deadline was not enforced")
    return Outcome(box.get("value"), box.get("error"), box["elapsed"])


@pytest.fixture
def clients():
    """`make(**kw)` -> an HttpClient (closed after the test); defaults: no retries, 1 s per attempt."""
    made: list[HttpClient] = []

    def make(**kw) -> HttpClient:
        kw.setdefault("timeout_s", 1.0)
        kw.setdefault("retries", 0)
        c = HttpClient("crm", **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def get(client: HttpClient, srv, deadline_s: float = 0.5, phone: str = PHONE, stuck_after: float = STUCK_S) -> Outcome:
    return timed(lambda: client.get_json(srv.owner_url(phone), deadline=Deadline(deadline_s)), stuck_after=stuck_after)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- happy path and pooling -------------------------------------------------------------------


def test_ok_returns_the_document_and_reuses_one_connection(fault_server, clients):
    c = clients()
    for _ in range(3):
        out = get(c, fault_server)
        assert out.error is None, out.error
        assert out.value["owner"]["email"] == "asha@example.com"
    assert fault_server.count(PHONE) == 3
    assert fault_server.stats()["connections"] == 1, "keep-alive: one pooled connection for sequential calls"


def test_unknown_number_is_none_not_an_error(fault_server, clients):
    out = get(clients(retries=2), fault_server, phone="+919999999999")
    assert out.error is None and out.value is None
    assert fault_server.count() == 1


@pytest.mark.parametrize("bad", ["trickle", "huge", "reset", "500"])
def test_a_failed_call_does_not_poison_the_pool(fault_server, clients, bad):
    """Unread bytes of a timed-out or oversized answer must not be read as the next answer."""
    c = clients(max_body=64 * 1024)
    fault_server.trickle_interval = 0.05
    assert get(c, fault_server).error is None
    fault_server.mode = bad
    assert isinstance(get(c, fault_server, deadline_s=0.3).error, ConnectorError)
    fault_server.mode = "ok"
    for _ in range(2):
        out = get(c, fault_server)
        assert out.error is None, out.error
        assert out.value["owner"]["id"] == "u-17"


# --- every failure maps to the right error class ----------------------------------------------


@pytest.mark.parametrize(
    "mode, expected, status",
    [
        ("hang", ConnectorTimeout, None),
        ("slow:2000", ConnectorTimeout, None),
        ("trickle", ConnectorTimeout, None),
        ("429", RateLimited, 429),
        ("429_short", RateLimited, 429),
        ("500", ConnectorUnavailable, 500),
        ("status:503", ConnectorUnavailable, 503),
        ("401_then_ok", AuthError, 401),
        ("status:403", AuthError, 403),
        ("status:400", BadResponse, 400),
        ("status:422", BadResponse, 422),
        ("html", BadResponse, 200),
        ("badjson", BadResponse, 200),
        ("huge", BadResponse, 200),
        ("huge_chunked", BadResponse, 200),
        ("gzip_bomb", BadResponse, 200),
        ("reset", ConnectorUnavailable, None),
        ("close", ConnectorUnavailable, None),
        ("garbage", ConnectorUnavailable, None),
    ],
)
def test_failure_maps_to_error_class(fault_server, clients, mode, expected, status):
    fault_server.mode = mode
    out = get(clients(), fault_server, deadline_s=0.4)
    err = out.raises(expected)
    assert err.status == status
    assert err.kind == expected.kind
    assert err.retryable == issubclass(expected, ConnectorUnavailable)
    assert out.elapsed < 0.4 + MARGIN_S


def test_trickled_headers_map_to_timeout_within_the_deadline(fault_server, clients):
    fault_server.mode = "trickle_headers"
    out = get(clients(), fault_server, deadline_s=0.4, stuck_after=1.0)
    out.raises(ConnectorTimeout)
    assert out.elapsed < 0.4 + MARGIN_S


def test_connection_refused_is_unavailable_and_fast(clients):
    c = clients()
    out = timed(lambda: c.get_json(f"http://127.0.0.1:{free_port()}/owner?phone=%2B919876543210", deadline=Deadline(0.5)))
    err = out.raises(ConnectorUnavailable)
    assert "refused" in str(err).lower()
    assert out.elapsed < 0.2


def test_invalid_url_is_bad_response(clients):
    out = timed(lambda: clients().get_json("http://", deadline=Deadline(0.5)))
    assert isinstance(out.error, BadResponse)


def test_expired_deadline_sends_nothing(fault_server, clients):
    out = get(clients(retries=3), fault_server, deadline_s=0.0)
    out.raises(ConnectorTimeout)
    assert fault_server.count() == 0


@pytest.mark.parametrize("mode", ["500", "429", "html", "badjson", "huge", "huge_chunked", "status:400", "status:403",
                                  "401_then_ok", "reset", "close", "garbage", "hang", "trickle"])
def test_errors_never_carry_the_phone_number(fault_server, clients, mode):
    fault_server.mode = mode
    fault_server.trickle_interval = 0.05
    err = get(clients(), fault_server, deadline_s=0.3).error
    assert isinstance(err, ConnectorError)
    for form in PHONE_FORMS:
        assert form not in str(err) and form not in repr(err), f"{form!r} leaked: {err}"


@pytest.mark.parametrize("mode", ["html", "badjson"])
def test_errors_from_json_decoding_name_the_connector(fault_server, clients, mode):
    fault_server.mode = mode
    err = get(clients(), fault_server).raises(BadResponse)
    assert err.connector == "crm"
    assert str(err).startswith("crm:")


# --- the total deadline ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hang", "slow:3000", "trickle"])
def test_total_deadline_holds_however_the_server_stalls(fault_server, clients, mode):
    """Per-attempt timeout (5 s) far above the deadline (0.4 s), retries allowed: the deadline wins."""
    fault_server.mode = mode
    out = get(clients(timeout_s=5.0, retries=2), fault_server, deadline_s=0.4)
    out.raises(ConnectorTimeout)
    assert out.elapsed < 0.4 + MARGIN_S
    assert fault_server.count() == 1, "no retry once the deadline is spent"


def test_trickle_is_cut_at_the_deadline_though_each_read_is_fast(fault_server, clients):
    fault_server.trickle_interval = 0.02  # 50 bytes a second: every single read is quick
    fault_server.mode = "trickle"
    out = get(clients(timeout_s=5.0), fault_server, deadline_s=0.3)
    assert "not complete in time" in str(out.raises(ConnectorTimeout))
    assert out.elapsed < 0.3 + MARGIN_S


def test_per_attempt_timeout_applies_below_the_deadline(fault_server, clients):
    fault_server.mode = "hang"
    out = get(clients(timeout_s=0.2), fault_server, deadline_s=2.0)
    out.raises(ConnectorTimeout)
    assert 0.15 < out.elapsed < 0.2 + MARGIN_S


def test_redirect_with_trickling_body_respects_the_deadline(fault_server, clients):
    fault_server.mode = "redirect_trickle"
    out = get(clients(timeout_s=5.0), fault_server, deadline_s=0.4, stuck_after=1.0)
    assert isinstance(out.error, ConnectorError)
    assert out.elapsed < 0.4 + MARGIN_S


# --- body cap ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["huge", "huge_chunked", "gzip_bomb"])
def test_body_cap_rejects_big_answers_fast_and_without_retry(fault_server, clients, mode):
    fault_server.mode = mode
    out = get(clients(retries=2), fault_server, deadline_s=1.0)
    assert "cap" in str(out.raises(BadResponse))
    assert fault_server.count() == 1
    assert out.elapsed < 0.5


@pytest.mark.parametrize("mode", ["huge", "huge_chunked"])
def test_body_cap_is_the_configured_size(fault_server, clients, mode):
    fault_server.mode = mode
    fault_server.huge_bytes = 1500
    assert isinstance(get(clients(max_body=1024), fault_server).error, BadResponse)
    out = get(clients(max_body=2048), fault_server)
    assert out.error is None and out.value["owner"] is None


# --- retries -----------------------------------------------------------------------------------


def test_retry_after_longer_than_the_deadline_gives_up_at_once(fault_server, clients):
    fault_server.mode = "429"  # Retry-After: 120
    out = get(clients(retries=3), fault_server, deadline_s=2.0)
    err = out.raises(RateLimited)
    assert err.retry_after == 120
    assert fault_server.count() == 1
    assert out.elapsed < 0.5  # a quarter of the 2 s it would wait: it did not sleep for Retry-After


@responses.activate
def test_retry_after_that_fits_is_honoured(clients):
    url = "http://crm.test/owner"
    responses.get(url, status=429, headers={"Retry-After": "0.3"}, json={})
    responses.get(url, status=200, json={"owner": {"id": "u-1"}})
    c = clients(retries=1)
    out = timed(lambda: c.request("GET", url, deadline=Deadline(1.0)))
    assert out.error is None, out.error
    assert out.value.attempts == 2
    assert 0.3 <= out.elapsed < 0.3 + MARGIN_S


@pytest.mark.parametrize("value, gives_up_at_once", [
    ("Wed, 21 Oct 2099 07:28:00 GMT", True),  # an HTTP date far away
    ("soon", False),  # unreadable: ordinary backoff
])
@responses.activate
def test_retry_after_forms(clients, value, gives_up_at_once):
    url = "http://crm.test/owner"
    limited = responses.get(url, status=429, headers={"Retry-After": value}, json={})
    out = timed(lambda: clients(retries=1).get_json(url, deadline=Deadline(1.0)))
    out.raises(RateLimited)
    assert limited.call_count == (1 if gives_up_at_once else 2)
    assert out.elapsed < 0.5


def test_retry_after_zero_is_retried_up_to_the_configured_attempts(fault_server, clients):
    fault_server.mode = "429_short"
    out = get(clients(retries=2), fault_server, deadline_s=2.0)
    assert out.raises(RateLimited).retry_after == 0
    assert fault_server.count() == 3
    assert out.elapsed < 2.0


@pytest.mark.parametrize("mode", ["500", "status:503", "reset", "close"])
def test_retryable_failures_are_retried_with_backoff_inside_the_deadline(fault_server, clients, mode):
    fault_server.mode = mode
    out = get(clients(retries=2), fault_server, deadline_s=2.0)
    assert isinstance(out.error, ConnectorUnavailable)
    assert fault_server.count() == 3
    # waits: 50 ms + jitter, then 100 ms + jitter
    assert 0.15 <= out.elapsed < 0.6


def test_retry_then_success_reports_attempts(fault_server, clients):
    fault_server.mode = "500_then_ok:1"
    c = clients(retries=1)
    out = timed(lambda: c.request("GET", fault_server.owner_url(PHONE), deadline=Deadline(1.0)))
    assert out.error is None, out.error
    assert out.value.status == 200 and out.value.attempts == 2
    assert out.value.json()["owner"]["id"] == "u-17"


def test_retries_stop_when_the_deadline_cannot_fit_another_attempt(fault_server, clients):
    fault_server.mode = "500"
    out = get(clients(retries=5), fault_server, deadline_s=0.25)
    assert isinstance(out.error, ConnectorUnavailable)
    assert out.elapsed < 0.25 + 0.05
    assert 1 < fault_server.count() < 6


def test_retries_zero_means_one_request(fault_server, clients):
    fault_server.mode = "500"
    get(clients(retries=0), fault_server).raises(ConnectorUnavailable)
    assert fault_server.count() == 1


@pytest.mark.parametrize("mode", ["status:400", "status:403", "status:404", "status:409", "status:422", "html", "401_then_ok"])
def test_client_errors_are_not_retried(fault_server, clients, mode):
    fault_server.mode = mode
    get(clients(retries=3), fault_server, deadline_s=1.0)
    assert fault_server.count() == 1


def test_retries_capped_by_max_retries(fault_server, clients):
    c = clients(retries=50)
    assert c.retries == 5


# --- 401 and the token provider ----------------------------------------------------------------


@pytest.fixture
def token():
    issued: list[str] = []

    def fetch(deadline: Deadline):
        issued.append(f"t{len(issued) + 1}")
        return issued[-1], 3600

    provider = CachedToken(fetch)
    provider.issued = issued
    return provider


def test_401_refreshes_the_token_once_then_succeeds(fault_server, clients, token):
    fault_server.mode = "401_then_ok:1"
    out = get(clients(token_provider=token, retries=2), fault_server)
    assert out.error is None, out.error
    assert out.value["owner"]["id"] == "u-17"
    assert token.fetches == 2
    assert fault_server.auth_headers == ["Bearer t1", "Bearer t2"]
    assert fault_server.unauthorized_sent == 1


def test_persistent_401_refreshes_exactly_once_then_auth_error(fault_server, clients, token):
    fault_server.mode = "status:401"
    get(clients(token_provider=token, retries=3), fault_server).raises(AuthError)
    assert token.fetches == 2
    assert fault_server.count() == 2
    assert fault_server.auth_headers == ["Bearer t1", "Bearer t2"]


def test_token_is_reused_across_calls(fault_server, clients, token):
    c = clients(token_provider=token)
    for _ in range(3):
        assert get(c, fault_server).error is None
    assert token.fetches == 1
    assert fault_server.auth_headers == ["Bearer t1"] * 3


def test_403_does_not_refresh(fault_server, clients, token):
    fault_server.mode = "status:403"
    get(clients(token_provider=token, retries=2), fault_server).raises(AuthError)
    assert token.fetches == 1 and fault_server.count() == 1


def test_401_without_provider_is_auth_error_at_once(fault_server, clients):
    fault_server.mode = "401_then_ok:1"
    get(clients(retries=2), fault_server).raises(AuthError)
    assert fault_server.count() == 1


def test_auth_false_sends_no_token(fault_server, clients, token):
    c = clients(token_provider=token)
    out = timed(lambda: c.request("GET", fault_server.owner_url(PHONE), deadline=Deadline(1.0), auth=False))
    assert out.error is None and out.value.status == 200
    assert token.fetches == 0 and fault_server.auth_headers == [None]


# --- which 401s refresh, and how often --------------------------------------------------------------

OWNER_URL = "http://crm.test/owner"


def _vendor_refreshable(resp) -> bool:
    """Like Zoho: only an expired token is cured by a new one, never a missing scope."""
    return b"INVALID_TOKEN" in resp.body


def _warm(token) -> None:
    token.token(Deadline(1.0))  # the first token exists before the call under test
    token.fetches = 0


@responses.activate
def test_a_401_refreshable_says_no_to_is_final_with_no_token_fetch(clients, token):
    _warm(token)
    responses.get(OWNER_URL, status=401, json={"code": "OAUTH_SCOPE_MISMATCH"})
    c = clients(token_provider=token, refreshable=_vendor_refreshable, retries=3)
    err = timed(lambda: c.get_json(OWNER_URL, deadline=Deadline(1.0))).raises(AuthError)
    assert err.status == 401
    assert token.fetches == 0
    assert len(responses.calls) == 1


@responses.activate
def test_a_curable_401_makes_exactly_one_refresh_and_one_retry(clients, token):
    _warm(token)
    responses.get(OWNER_URL, status=401, json={"code": "INVALID_TOKEN"})
    responses.get(OWNER_URL, json={"owner": {"id": "u-17"}})
    seen = []

    def refreshable(resp):
        seen.append(resp.status)
        return _vendor_refreshable(resp)

    c = clients(token_provider=token, refreshable=refreshable, retries=3)
    out = timed(lambda: c.get_json(OWNER_URL, deadline=Deadline(1.0)))
    assert out.error is None and out.value == {"owner": {"id": "u-17"}}
    assert token.fetches == 1
    assert [call.request.headers["Authorization"] for call in responses.calls] == ["Bearer t1", "Bearer t2"]
    assert seen == [401]


@responses.activate
def test_a_curable_401_twice_is_final_after_one_refresh(clients, token):
    _warm(token)
    responses.get(OWNER_URL, status=401, json={"code": "INVALID_TOKEN"})
    c = clients(token_provider=token, refreshable=_vendor_refreshable, classify=lambda r: None, retries=3)
    timed(lambda: c.get_json(OWNER_URL, deadline=Deadline(1.0))).raises(AuthError)
    assert token.fetches == 1
    assert len(responses.calls) == 2


@responses.activate
def test_classify_sees_the_401_that_is_not_refreshed(clients, token):
    _warm(token)
    responses.get(OWNER_URL, status=401, json={"code": "OAUTH_SCOPE_MISMATCH"})
    c = clients(token_provider=token, refreshable=_vendor_refreshable,
                classify=lambda r: AuthError("scope missing: grant X") if r.status == 401 else None)
    err = timed(lambda: c.get_json(OWNER_URL, deadline=Deadline(1.0))).raises(AuthError)
    assert str(err) == "scope missing: grant X" and err.connector == "crm"
    assert token.fetches == 0 and len(responses.calls) == 1


@responses.activate
def test_concurrent_401s_for_one_expired_token_make_one_token_fetch(clients, token):
    """N threads send t1 and all get their 401 together: one refresh serves them all."""
    n = 6
    _warm(token)
    barrier = threading.Barrier(n, timeout=3)

    def answer(request):
        if request.headers["Authorization"] == "Bearer t1":
            barrier.wait()  # every thread has sent the old token before any learns it is refused
            return 401, {}, '{"code": "INVALID_TOKEN"}'
        return 200, {}, '{"owner": {"id": "u-17"}}'

    responses.add_callback(responses.GET, OWNER_URL, callback=answer, content_type="application/json")
    c = clients(token_provider=token, refreshable=_vendor_refreshable)
    results: list = []

    def call() -> None:
        results.append(timed(lambda: c.get_json(OWNER_URL, deadline=Deadline(2.0))))

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert [r.error for r in results] == [None] * n
    assert token.fetches == 1 and token.issued == ["t1", "t2"]
    sent = [call.request.headers["Authorization"] for call in responses.calls]
    assert sorted(sent) == ["Bearer t1"] * n + ["Bearer t2"] * n


def test_cached_token_invalidate_forgets_only_the_refused_token(token):
    assert token.token(Deadline(1.0)) == "t1"
    token.invalidate("t0")  # refused long ago: t1 stays
    assert token.token(Deadline(1.0)) == "t1" and token.fetches == 1
    token.invalidate("t1")
    assert token.token(Deadline(1.0)) == "t2" and token.fetches == 2
    token.invalidate()
    assert token.token(Deadline(1.0)) == "t3"


# --- classify -----------------------------------------------------------------------------------


def _sf_classify(resp):
    if resp.status == 403 and b"REQUEST_LIMIT_EXCEEDED" in resp.body:
        return RateLimited("vendor limit", retry_after=None)
    if resp.status == 200 and b'"error"' in resp.body:
        return BadResponse("vendor error inside a 200")
    return None


@responses.activate
def test_classify_maps_vendor_answers_before_the_generic_mapping(clients):
    url = "http://crm.test/owner"
    responses.get(url, status=403, json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    err = timed(lambda: clients(classify=_sf_classify).get_json(url, deadline=Deadline(1.0))).raises(RateLimited)
    assert err.connector == "crm"


@responses.activate
def test_classify_none_falls_back_to_the_generic_mapping(clients):
    url = "http://crm.test/owner"
    responses.get(url, status=403, json=[{"errorCode": "INSUFFICIENT_ACCESS"}])
    timed(lambda: clients(classify=_sf_classify).get_json(url, deadline=Deadline(1.0))).raises(AuthError)


@responses.activate
def test_classify_sees_ok_statuses_too(clients):
    url = "http://crm.test/owner"
    responses.get(url, status=200, json={"error": "soft failure"})
    timed(lambda: clients(classify=_sf_classify).get_json(url, deadline=Deadline(1.0))).raises(BadResponse)


@responses.activate
def test_classified_retryable_errors_are_retried(clients):
    url = "http://crm.test/owner"
    limit = responses.get(url, status=403, json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    timed(lambda: clients(classify=_sf_classify, retries=2).get_json(url, deadline=Deadline(2.0))).raises(RateLimited)
    assert limit.call_count == 3


@responses.activate
def test_transport_errors_from_requests_are_translated(clients):
    import requests

    url = "http://crm.test/owner"
    responses.get(url, body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.get(url + "2", body=requests.exceptions.ConnectionError("boom"))
    c = clients()
    timed(lambda: c.get_json(url + "?phone=%2B919876543210", deadline=Deadline(1.0))).raises(ConnectorTimeout)
    err = timed(lambda: c.get_json(url + "2?phone=%2B919876543210", deadline=Deadline(1.0))).raises(ConnectorUnavailable)
    assert "9876543210" not in str(err)


def test_classify_receives_the_real_response(fault_server, clients):
    seen = []

    def classify(resp):
        seen.append((resp.status, resp.headers.get("Retry-After"), resp.body[:20]))
        return None

    fault_server.mode = "429"
    get(clients(classify=classify), fault_server).raises(RateLimited)
    assert seen == [(429, "120", b'{"error": "rate limi')]


# --- the fault server itself (benchmarks drive it from outside) -------------------------------


def test_fault_server_control_endpoint_and_counts(fault_server):
    import requests

    assert requests.post(fault_server.url + "/_mode?mode=500").json() == {"mode": "500"}
    assert fault_server.mode == "500"
    assert requests.get(fault_server.owner_url(PHONE), timeout=2).status_code == 500
    assert requests.post(fault_server.url + "/_mode?mode=bogus").status_code == 400
    stats = requests.get(fault_server.url + "/_stats").json()
    assert stats["requests"] == 1 and stats["by_phone"] == {PHONE: 1} and stats["by_path"] == {"/owner": 1}
    requests.post(fault_server.url + "/_owners", json={"+911234567890": {"email": "x@example.com"}})
    requests.post(fault_server.url + "/_mode?mode=ok")
    assert requests.get(fault_server.owner_url("+911234567890")).json() == {"owner": {"email": "x@example.com"}}
    requests.post(fault_server.url + "/_reset")
    assert fault_server.count() == 0


def test_fault_server_stops_at_once_with_stalled_clients():
    import requests

    from faultserver import FaultServer

    srv = FaultServer().start()
    threads = []
    for mode in ("hang", "trickle", "trickle_headers"):
        srv.mode = mode
        t = threading.Thread(target=lambda: timed_out(requests.get, srv.owner_url(PHONE), timeout=10), daemon=True)
        t.start()
        threads.append(t)
        assert srv.wait_for_requests(len(threads))
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 0.5
    for t in threads:
        t.join(2)
        assert not t.is_alive(), "stopping the server ends its stalled connections"


def timed_out(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - the client sees its connection end; that is the point
        return exc


# -- the watchdog that shuts a socket down at its deadline (headers trickled) -------------------


def test_watchdog_shuts_down_at_the_deadline_and_only_what_was_not_cancelled():
    from dialwhom.integrations.transport import Watchdog

    dog = Watchdog()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for _, b in pairs:
            b.settimeout(2.0)
        t0 = time.monotonic()  # before watch(): a busy machine may take a while to get past it
        ids = [dog.watch(0.05, a) for a, _ in pairs]
        dog.cancel(ids[1])  # this call got its headers in time
        assert pairs[0][1].recv(10) == b""  # shut down: the peer sees the end of the stream
        assert 0.05 <= time.monotonic() - t0 < 1.0
        assert pairs[2][1].recv(10) == b""
        pairs[1][0].sendall(b"alive")  # not shut down
        assert pairs[1][1].recv(10) == b"alive"
        assert not dog._live
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_watchdog_wakes_for_a_nearer_deadline_pushed_later():
    from dialwhom.integrations.transport import Watchdog

    dog = Watchdog()
    far, near = socket.socketpair(), socket.socketpair()
    try:
        dog.watch(30.0, far[0])  # the thread now sleeps towards 30 s
        near[1].settimeout(2.0)
        t0 = time.monotonic()
        dog.watch(0.05, near[0])
        assert near[1].recv(10) == b""
        assert time.monotonic() - t0 < 1.0
    finally:
        for a, b in (far, near):
            a.close()
            b.close()
