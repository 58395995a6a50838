"""`dialwhom.integrations.oauth`: the one token request every CRM connector can use, and the shared token.

Exact requests with `responses`; the vendor-specific behaviour (Zoho's limits) is tested in
test_zoho.py against the fake, this file covers what HubSpot and Salesforce will rely on too.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import responses

from dialwhom.integrations.http import HttpClient
from dialwhom.integrations.oauth import OAuthClient, SharedToken, TokenGrant, TokenRegistry, expires_in_seconds
from dialwhom.integrations.support import CachedToken
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.errors import AuthError, BadResponse, ConnectorUnavailable, RateLimited

TOKEN_URL = "https://login.example.test/oauth2/token"
SECRET = "s3cret-client-secret-value"
REFRESH = "refresh-token-value-0123456789"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def http():
    client = HttpClient("crm", timeout_s=1.0, retries=0)
    yield client
    client.close()


def client(http, **kw) -> OAuthClient:
    options = {"client_id": "cid", "client_secret": SECRET, "refresh_token": REFRESH, **kw}
    return OAuthClient("crm", TOKEN_URL, http=lambda: http, **options)


def test_refresh_token_grant_posts_a_form_and_reads_expires_in(rsps, http):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-1", "expires_in": 1800, "token_type": "bearer",
                                              "instance_url": "https://acme.example.test", "refresh_token": REFRESH})
    grant = client(http).fetch(Deadline(2.0))
    assert grant == TokenGrant("at-1", 1800.0, {"token_type": "bearer", "instance_url": "https://acme.example.test"})
    sent = rsps.calls[0].request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded" and "?" not in sent.url
    assert parse_qs(sent.body) == {"grant_type": ["refresh_token"], "client_id": ["cid"], "client_secret": [SECRET],
                                   "refresh_token": [REFRESH]}


def test_client_credentials_grant_with_scope_and_extra_fields(rsps, http):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-2"})  # Salesforce: no expires_in
    oauth = OAuthClient("crm", TOKEN_URL, http=lambda: http, client_id="cid", client_secret=SECRET,
                        grant="client_credentials", scope="ZohoCRM.modules.ALL", extra={"soid": "ZohoCRM.123"})
    assert oauth(Deadline(2.0)) == ("at-2", None)  # CachedToken's fetch signature
    assert parse_qs(rsps.calls[0].request.body) == {"grant_type": ["client_credentials"], "client_id": ["cid"],
                                                    "client_secret": [SECRET], "scope": ["ZohoCRM.modules.ALL"],
                                                    "soid": ["ZohoCRM.123"]}


def test_a_rotated_refresh_token_is_used_for_the_next_request(rsps, http):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-1", "refresh_token": "rotated-refresh"})
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-2"})
    oauth = client(http)
    oauth.fetch(Deadline(2.0))
    oauth.fetch(Deadline(2.0))
    assert parse_qs(rsps.calls[1].request.body)["refresh_token"] == ["rotated-refresh"]
    assert oauth.fingerprint == client(http).fingerprint  # the credential's identity stays the configured one


@pytest.mark.parametrize("status,body,error,text", [
    (400, {"error": "invalid_grant", "error_description": "expired access/refresh token"}, AuthError, "invalid_grant"),
    (200, {"error": "invalid_client"}, AuthError, "invalid_client"),  # Zoho: HTTP 200
    (401, {"error": "unauthorized", "status": "BAD_CLIENT"}, AuthError, "unauthorized"),
    (400, {"error": "bad request"}, BadResponse, "no access_token"),
    (200, {"token_type": "bearer"}, BadResponse, "no access_token"),
    (200, "<html><body>Sign in</body></html>", BadResponse, "HTML"),
    (429, {"message": "slow down"}, RateLimited, "too many token requests"),
    (200, {"error": "Access Denied", "error_description": "You have made too many requests continuously."}, RateLimited, "too many"),
    (503, {"error": "unavailable"}, ConnectorUnavailable, "HTTP 503"),
])
def test_token_endpoint_answers_map_to_connector_errors(rsps, http, status, body, error, text):
    kw = {"json": body} if isinstance(body, dict) else {"body": body, "content_type": "text/html"}
    rsps.add(responses.POST, TOKEN_URL, status=status, **kw)
    with pytest.raises(error, match=text) as err:
        client(http, hint=lambda e: f"advice for {e}").fetch(Deadline(2.0))
    assert SECRET not in str(err.value) and REFRESH not in str(err.value)
    if error is AuthError:
        assert "advice for" in str(err.value)


def test_retry_after_of_a_throttled_token_request_is_kept(rsps, http):
    rsps.add(responses.POST, TOKEN_URL, status=429, json={"error": "rate_limit_exceeded"}, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as err:
        client(http).fetch(Deadline(2.0))
    assert err.value.retry_after == 7


def test_it_plugs_into_cached_token(rsps, http):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-1", "expires_in": 3600})
    tokens = CachedToken(client(http))
    assert tokens.auth_headers(Deadline(2.0)) == {"Authorization": "Bearer at-1"}
    assert tokens.token(Deadline(2.0)) == "at-1" and len(rsps.calls) == 1


def test_expires_in_is_seconds_whatever_the_vendor_writes():
    assert expires_in_seconds({"expires_in": 3600}) == 3600
    assert expires_in_seconds({"expires_in": "1800"}) == 1800
    assert expires_in_seconds({"expires_in": 3600000, "expires_in_sec": 3600}) == 3600
    assert expires_in_seconds({"expiresIn": 1800}) == 1800
    assert expires_in_seconds({"expires_in": 0}) is None and expires_in_seconds({}) is None


# --- SharedToken without a vendor: what every connector using it gets --------------------------------


def grants():
    """A fetch that hands out at-1, at-2, ... and counts them."""
    minted: list[str] = []

    def fetch(deadline: Deadline) -> TokenGrant:
        minted.append(f"at-{len(minted) + 1}")
        return TokenGrant(minted[-1], 3600.0, {"api_domain": "https://api.example.test"})

    return fetch, minted


def test_shared_token_is_refreshed_shortly_before_expiry_and_forgotten_only_if_still_held():
    fetch, minted = grants()
    now = [1000.0]
    tokens = SharedToken(fetch, key="k", registry=TokenRegistry(), clock=lambda: now[0])
    assert tokens.token(Deadline(1)) == "at-1"
    now[0] += 3600 - 61
    assert tokens.token(Deadline(1)) == "at-1"
    now[0] += 2  # inside the 60 s margin
    assert tokens.token(Deadline(1)) == "at-2"
    tokens.invalidate("at-1")  # a late 401 for the old token does not throw the new one away
    assert tokens.token(Deadline(1)) == "at-2" and minted == ["at-1", "at-2"]


def test_mint_budget_and_throttle_pause_in_one_process():
    calls = {"n": 0}

    def throttled(deadline):
        calls["n"] += 1
        raise RateLimited("crm: too many token requests", retry_after=None)

    now = [0.0]
    tokens = SharedToken(throttled, key="k", registry=TokenRegistry(), clock=lambda: now[0], mint_limit=3, throttle_pause_s=60)
    with pytest.raises(RateLimited, match="pausing token requests for 60 s"):
        tokens.token(Deadline(1))
    with pytest.raises(RateLimited, match="not asking again"):
        tokens.token(Deadline(1))
    now[0] += 61
    with pytest.raises(RateLimited, match="pausing token requests for 120 s"):
        tokens.token(Deadline(1))
    now[0] += 121
    with pytest.raises(RateLimited, match="pausing"):
        tokens.token(Deadline(1))
    now[0] += 241
    with pytest.raises(RateLimited, match="3 access tokens minted in 10 min"):
        tokens.token(Deadline(1))  # the budget: 3 asks within 10 minutes
    assert calls["n"] == 3


def test_a_throttle_seen_by_one_instance_pauses_the_others(redis_client):
    client, prefix = redis_client
    asked = []

    def throttled(deadline):
        asked.append("a")
        raise RateLimited("crm: too many token requests", retry_after=30)

    a = SharedToken(throttled, key="k", redis=client, key_prefix=prefix, registry=TokenRegistry())
    b_fetch, minted = grants()
    b = SharedToken(b_fetch, key="k", redis=client, key_prefix=prefix, registry=TokenRegistry())
    with pytest.raises(RateLimited, match="pausing token requests for 30 s"):
        a.token(Deadline(1))
    with pytest.raises(RateLimited, match="shared pause") as err:
        b.token(Deadline(1))
    assert 0 < err.value.retry_after <= 30 and asked == ["a"] and minted == []


def test_a_token_minted_by_one_instance_is_used_by_the_next(redis_client):
    client, prefix = redis_client
    fa, minted_a = grants()
    fb, minted_b = grants()
    a = SharedToken(fa, key="k", redis=client, key_prefix=prefix, registry=TokenRegistry())
    b = SharedToken(fb, key="k", redis=client, key_prefix=prefix, registry=TokenRegistry())
    assert a.grant(Deadline(1)).access_token == "at-1"
    assert b.grant(Deadline(1)) == TokenGrant("at-1", 3600.0, {"api_domain": "https://api.example.test"})
    b.invalidate("at-1")  # b's 401: gone from Redis too, so a's next miss mints
    assert minted_a == ["at-1"] and minted_b == []
    assert client.get(f"{prefix}oauth:k:token") is None
