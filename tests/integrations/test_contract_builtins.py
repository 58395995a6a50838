"""The contract kit (dialwhom.testing) run on the built-in connectors, as plugin authors run it."""

from __future__ import annotations

import sample
from urllib.parse import quote

import pytest

from responses import matchers

from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.integrations.connectors.hubspot import HubSpotConnector
from dialwhom.integrations.connectors.http_json import HttpJsonConnector
from dialwhom.integrations.connectors.salesforce import SalesforceConnector
from dialwhom.testing import ConnectorContract
from dialwhom.routing.model import Owner

OWNERS_URL = "https://owners.example.test/owner"

class TestDirectoryContract(ConnectorContract):
    connector_class = DirectoryConnector
    makes_http_calls = False
    expected_owner = Owner(id="asha@example.com", email="asha@example.com")
    bad_options = [({"path": "missing.csv"}, "path")]

    def make_options(self, tmp_path):
        # the kit's found caller, +919876543210, written the way people type it
        (tmp_path / "accounts.csv").write_text(
            "account_id,account_name,phones,owner\n"
            "A-1,Acme,098765 43210;+91 80 4111 2233,asha@example.com\n"
            "A-2,Globex,+919800000555,vikram@example.com\n",
            encoding="utf-8",
        )
        return {"path": "accounts.csv"}


class TestHttpContract(ConnectorContract):
    connector_class = HttpJsonConnector
    options = {
        "url": OWNERS_URL + "?phone={phone}&kind={kind}",
        "bearer_token": "tok-abcdefgh-12345678",
        "headers": {"X-Team": "sales"},
    }
    expected_owner = Owner(id="u-17", email="asha@example.com", name="Asha", phone=sample.ASHA)
    bad_options = [
        ({"url": "ftp://owners.example.test/{phone}"}, "url"),
        ({"url": "https://owners.example.test/owner"}, "url"),
        ({"url": "https://owners.example.test/{caller}"}, "url"),
        ({"url": "https://owners.example.test/{phone"}, "url"),
    ]
    wrong_shapes = [
        {"owner": "asha@example.com"},
        {"owner": {}},
        {"owner": {"name": "Asha"}},
        {"owner": ["u-17"]},
    ]

    def answer_found(self, fake_http, query):
        fake_http.get(
            OWNERS_URL,
            match=[
                matchers.query_param_matcher({"phone": query.phone, "kind": "phone"}),
                matchers.header_matcher({"Authorization": "Bearer tok-abcdefgh-12345678", "X-Team": "sales"}),
            ],
            json={
                "owner": {"id": "u-17", "email": "asha@example.com", "name": "Asha", "phone": sample.ASHA},
                "team": "north",
                "record": {"type": "account", "id": "A-1", "name": "Acme"},
            },
        )

    def answer_not_found(self, fake_http, query):
        fake_http.get(OWNERS_URL, match=[matchers.query_param_matcher({"phone": query.phone, "kind": "phone"})], status=404)


class TestHttpNullOwnerContract(TestHttpContract):
    """Same connector, a store that says not-found with ``{"owner": null}`` instead of 404."""

    def answer_not_found(self, fake_http, query):
        fake_http.get(OWNERS_URL, json={"owner": None})


class TestHttpPathTemplateContract(ConnectorContract):
    """The caller's number in the URL path rather than the query string."""

    connector_class = HttpJsonConnector
    options = {"url": "https://owners.example.test/owners/{phone}"}
    expected_owner = Owner(email="asha@example.com")

    def test_secrets_and_numbers_are_masked(self, connector, fake_http, contract_options, caplog):
        super().test_secrets_and_numbers_are_masked(connector, fake_http, contract_options, caplog)

    def answer_found(self, fake_http, query):
        fake_http.get(f"https://owners.example.test/owners/{quote(query.phone)}", json={"owner": {"email": "asha@example.com"}})

    def answer_not_found(self, fake_http, query):
        fake_http.get(f"https://owners.example.test/owners/{quote(query.phone)}", status=404)


# --- HubSpot ----------------------------------------------------------------------------------------

HS = "https://api.hubapi.com"
HS_TOKEN = "pat-na1-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
HS_OWNER = {"id": "41629779", "email": "asha@example.com", "firstName": "Asha", "lastName": "Rao", "archived": False,
            "teams": [{"id": "368389", "name": "North", "primary": True}]}
HS_EMPTY = {"total": 0, "results": []}


class TestHubSpotContract(ConnectorContract):
    connector_class = HubSpotConnector
    # the kit's eight simultaneous lookups fit 2 s only at HubSpot's full 5 searches a second
    options = {"access_token": HS_TOKEN, "search_rate_per_s": 5}
    expected_owner = Owner(id="41629779", email="asha@example.com")
    wrong_shapes = [
        {"total": 1, "results": "none"},
        {"total": 1, "results": [42]},
        {"status": "error"},
    ]

    @pytest.fixture(autouse=True)
    def _no_background_warm_up(self, monkeypatch):
        """The owners-directory load a first lookup starts would land among the requests the kit
        counts; test_hubspot.py tests it."""
        monkeypatch.setattr(HubSpotConnector, "_start_thread", lambda self, fn: None)

    def answer_found(self, fake_http, query):
        contact = {"id": "51", "archived": False, "properties": {
            "hs_object_id": "51", "firstname": "Ana", "lastname": "Gupta", "hubspot_owner_id": "41629779",
            "lastmodifieddate": "2025-06-01T08:00:00Z", "phone": "098765 43210",
            "hs_searchable_calculated_phone_number": "9876543210", "hs_calculated_phone_number": query.phone,
        }}
        fake_http.post(f"{HS}/crm/objects/2026-03/contacts/search", match=[matchers.header_matcher({"Authorization": f"Bearer {HS_TOKEN}"})],
                       json={"total": 1, "results": [contact]})
        fake_http.get(f"{HS}/crm/owners/2026-03/41629779", json=HS_OWNER)

    def answer_not_found(self, fake_http, query):
        fake_http.post(f"{HS}/crm/objects/2026-03/contacts/search", json=HS_EMPTY)
        fake_http.post(f"{HS}/crm/objects/2026-03/companies/search", json=HS_EMPTY)


class TestHubSpotOAuthContract(TestHubSpotContract):
    """The same, with an OAuth refresh token: the token endpoint is one more store to fail."""

    options = {"client_id": "cid-0123456789", "client_secret": "csecret-0123456789", "refresh_token": "rtok-0123456789",
               "search_rate_per_s": 5}
    waive = {"fault:http-400": "OAuth token endpoints answer a refused refresh token with 400 invalid_grant: AuthError is right"}

    def answer_found(self, fake_http, query):
        fake_http.post(f"{HS}/oauth/2026-03/token", json={"access_token": HS_TOKEN, "expires_in": 1800})
        super().answer_found(fake_http, query)

    def answer_not_found(self, fake_http, query):
        fake_http.post(f"{HS}/oauth/2026-03/token", json={"access_token": HS_TOKEN, "expires_in": 1800})
        super().answer_not_found(fake_http, query)


# --- Salesforce -------------------------------------------------------------------------------------

SF = "https://acme.my.salesforce.com"
SF_SECRET = "s3cr3t-consumer-value"
SF_ASHA = "0055g00000AshaAAAQ"
SF_TOKEN = {"access_token": "00D5g000004FAKE!AQ.contract-token", "instance_url": SF, "token_type": "Bearer",
            "issued_at": "1718000000000", "scope": "api"}


def _sf_user(uid: str = SF_ASHA) -> dict:
    return {"attributes": {"type": "User", "url": f"/services/data/v62.0/sobjects/User/{uid}"}, "Name": "Asha Rao",
            "Email": "asha@example.com", "Phone": None, "MobilePhone": "+91 98000 00001", "IsActive": True}


class TestSalesforceContract(ConnectorContract):
    connector_class = SalesforceConnector
    options = {"login_url": SF, "auth": "client_credentials", "client_id": "3MVG9.consumer-key", "client_secret": SF_SECRET}
    expected_owner = Owner(id=SF_ASHA, email="asha@example.com")
    wrong_shapes = [{"searchRecords": "none"}, {"searchRecords": [42]}, {"records": []}]

    def answer_found(self, fake_http, query):
        fake_http.post(f"{SF}/services/oauth2/token", json=SF_TOKEN)
        fake_http.get(f"{SF}/services/data/v62.0/search/", json={"searchRecords": [{
            "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/0035g00000MeeraAAQ"},
            "Id": "0035g00000MeeraAAQ", "Name": "Meera Shah", "Phone": "098765 43210", "MobilePhone": None,
            "HomePhone": None, "OtherPhone": None, "AssistantPhone": None, "OwnerId": SF_ASHA, "Owner": _sf_user(),
            "AccountId": None, "Account": None, "LastModifiedDate": "2024-06-01T09:30:00.000+0000",
        }]})
        fake_http.get(f"{SF}/services/data/v62.0/query/", json={"totalSize": 1, "done": True, "records": [{
            **_sf_user(), "Id": SF_ASHA, "Department": "Sales", "Division": "North",
            "UserRole": {"attributes": {"type": "UserRole", "url": "/x"}, "Name": "North Sales"},
        }]})

    def answer_not_found(self, fake_http, query):
        fake_http.post(f"{SF}/services/oauth2/token", json=SF_TOKEN)
        fake_http.get(f"{SF}/services/data/v62.0/search/", json={"searchRecords": []})
