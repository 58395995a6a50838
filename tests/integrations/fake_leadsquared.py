"""A local fake of the LeadSquared API for end-to-end tests: real HTTP on 127.0.0.1, any port.

Serves, from an in-memory dataset, what the `leadsquared` connector uses, as
https://apidocs.leadsquared.com/ documents it (see docs/crm/leadsquared.md for the pages):

- ``GET /v2/LeadManagement.svc/RetrieveLeadByPhoneNumber?phone=``: searches the Phone and Mobile
  fields only, the number with or without its country code but with no spaces, hyphens or other
  characters (anything else matches nothing); answers a JSON array holding the one lead with the
  most recent activity, ``[]`` when none;
- ``POST /v2/LeadManagement.svc/Leads.Get``: criteria search, ``SqlOperator`` ``=`` only here;
- ``GET /v2/OpportunityManagement.svc/GetOpportunityDetails?OpportunityId=``;
- ``GET /v2/UserManagement.svc/Users.Get``: every user, ``StatusCode`` 0 active / 1 inactive;
- ``GET /v2/UserManagement.svc/User/Retrieve/ByUserId?userId=``: one user with team and manager,
  ``[]`` for an inactive or unknown user.

Keys are read from the ``x-LSQ-AccessKey``/``x-LSQ-SecretKey`` headers or the ``accessKey``/
``secretKey`` query parameters (both documented); wrong keys are a 401, a path the user may not
call (``forbidden``) a 403, both with LeadSquared's ``{"Status": "Error", "ExceptionType",
"ExceptionMessage"}`` body. More than ``calls_per_5s`` calls in 5 seconds is a 429 "API calls
exceeded the limit of N in 5 second(s)" with no rate-limit headers (LeadSquared documents none).
A path the API does not have is a 404 HTML page. `inject` (from `fake_crm.FakeCrmServer`) queues
canned failures. Run ``python tests/integrations/fake_leadsquared.py`` to serve the sample data.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from typing import Any, Iterable, Mapping

import phonenumbers

from fake_crm import FakeCrmServer, RecordedRequest, Response

__all__ = ["FakeLeadSquared", "sample_data", "ACCESS_KEY", "SECRET_KEY", "ASHA", "RAVI", "GONE"]

ACCESS_KEY = "u$r1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
SECRET_KEY = "0123456789abcdef0123456789abcdef01234567"
ASHA = "718ae557-9d0b-11e7-b0ab-02e89b2fb8f4"
RAVI = "3b1041fb-8374-11e7-8758-0a106ee76b21"
GONE = "9c2d0e11-5b1c-11f0-a986-06c72fc46c23"
V2 = "/v2/"


def sample_data() -> dict[str, Any]:
    """A small account: Asha (team North, manager Ravi) owns two leads; Gone has left."""
    return {
        "users": [
            {"UserId": ASHA, "FirstName": "Asha", "LastName": "Rao", "EmailAddress": "asha@example.com", "Role": "Sales_User",
             "StatusCode": 0, "TeamName": "North", "TeamId": "8bfd8940-0f53-11e8-871e-02bf1924461c",
             "ManagerUserId": RAVI, "ManagerName": "Ravi Kumar", "PhoneMobile": "+91-9800000001", "PhoneMain": ""},
            {"UserId": RAVI, "FirstName": "Ravi", "LastName": "Kumar", "EmailAddress": "ravi@example.com", "Role": "Sales_Manager",
             "StatusCode": 0, "TeamName": "South", "ManagerUserId": None, "ManagerName": "", "PhoneMobile": "+91-9800000011"},
            {"UserId": GONE, "FirstName": "Old", "LastName": "Rep", "EmailAddress": "old.rep@example.com", "Role": "Sales_User",
             "StatusCode": 1, "TeamName": "North", "PhoneMobile": "+91-9800000099"},
        ],
        "leads": [
            {"ProspectID": "1bfdec89-f91b-46a3-85bd-fda3f3712518", "FirstName": "Meera", "LastName": "Shah",
             "Phone": "+91-9876543210", "Mobile": None, "OwnerId": ASHA, "mx_Account_Number": "ACC-1001",
             "ProspectActivityDate_Max": "2025-11-25 07:47:26.000"},
            {"ProspectID": "6f75b09d-0187-45d6-86dd-f848bd5a0aca", "FirstName": "Meera", "LastName": "S (old)",
             "Phone": None, "Mobile": "9876543210", "OwnerId": RAVI,
             "ProspectActivityDate_Max": "2024-01-02 10:00:00.000"},
            {"ProspectID": "bd595fc2-3678-4004-9ac6-65bfd1caadb5", "FirstName": "Kiran", "LastName": "Das",
             "Phone": "+91-9988776655", "Mobile": None, "OwnerId": RAVI,
             "ProspectActivityDate_Max": "2025-10-01 09:00:00.000"},
            {"ProspectID": "a368678f-1e81-4fb8-af0a-4b896f6330e1", "FirstName": "Dev", "LastName": "Nair",
             "Phone": "+91-9123456780", "Mobile": None, "OwnerId": GONE,
             "ProspectActivityDate_Max": "2025-09-01 09:00:00.000"},
        ],
        "opportunities": [
            {"ID": "4597c076-be5a-4ba2-9b08-ecd21626750f", "Name": "Loan", "DisplayName": "Home loan", "Owner": RAVI,
             "RelatedProspectId": "bd595fc2-3678-4004-9ac6-65bfd1caadb5"},
        ],
    }


class FakeLeadSquared(FakeCrmServer):
    """The fake server; `start()`/`stop()` or use it as a context manager."""

    thread_name = "fake-leadsquared"

    def __init__(
        self,
        *,
        users: Iterable[Mapping[str, Any]] = (),
        leads: Iterable[Mapping[str, Any]] = (),
        opportunities: Iterable[Mapping[str, Any]] = (),
        keys: tuple[str, str] = (ACCESS_KEY, SECRET_KEY),
        calls_per_5s: int = 25,
        default_country: str = "IN",
        forbidden: Iterable[str] = (),
    ):
        super().__init__()
        self.users = {str(u["UserId"]): dict(u) for u in users}
        self.leads = [dict(lead) for lead in leads]
        self.opportunities = {str(o["ID"]): dict(o) for o in opportunities}
        self.keys = keys
        self.calls_per_5s = calls_per_5s
        self.default_country = default_country
        self.forbidden = set(forbidden)  # paths (after /v2/) the keys' user may not call
        self._window: collections.deque[float] = collections.deque()
        self._window_lock = threading.Lock()

    def _listen(self, host: str, port: int) -> None:
        super()._listen(host, port)
        assert self._server is not None
        # A hang test's client is gone when the late answer is written: not worth a traceback.
        self._server.handle_error = lambda request, address: None

    # -- request handling ---------------------------------------------------------------------

    def _route(self, r: RecordedRequest) -> Response:
        if not r.path.startswith(V2):
            return _not_found()
        access = r.headers.get("x-LSQ-AccessKey") or r.arg("accessKey")
        secret = r.headers.get("x-LSQ-SecretKey") or r.arg("secretKey")
        if (access, secret) != self.keys:
            return 401, _error("MXUnAuthorizedAccessException", "Invalid Access Key or Secret Key"), {}
        if self._over_limit():
            return 429, _error("MXAPIRateLimitExceededException", f"API calls exceeded the limit of {self.calls_per_5s} in 5 second(s)"), {}
        path = r.path[len(V2):]
        if path in self.forbidden:
            return 403, _error("MXUnAuthorizedAccessException", "You do not have the permission to perform this action"), {}
        routes = {
            ("GET", "LeadManagement.svc/RetrieveLeadByPhoneNumber"): self._by_phone,
            ("POST", "LeadManagement.svc/Leads.Get"): self._leads_get,
            ("GET", "OpportunityManagement.svc/GetOpportunityDetails"): self._opportunity,
            ("GET", "UserManagement.svc/Users.Get"): self._users,
            ("GET", "UserManagement.svc/User/Retrieve/ByUserId"): self._user,
        }
        handler = routes.get((r.method, path))
        return handler(r) if handler else _not_found()

    def _over_limit(self) -> bool:
        """Sliding 5-second window over every authenticated call (LeadSquared counts per account)."""
        now = time.monotonic()
        with self._window_lock:
            while self._window and now - self._window[0] >= 5.0:
                self._window.popleft()
            if len(self._window) >= self.calls_per_5s:
                return True
            self._window.append(now)
            return False

    def _by_phone(self, r: RecordedRequest) -> Response:
        phone = r.arg("phone") or ""
        if not phone:
            return 500, _error("MXMandatoryAttributeMissingException", "'phone' is mandatory"), {}
        if not phone.isdigit():  # the docs: no spaces, hyphens or any other character
            return 200, [], {}
        hits = [lead for lead in self.leads if any(phone in self._stored_forms(lead.get(f)) for f in ("Phone", "Mobile"))]
        hits.sort(key=lambda lead: str(lead.get("ProspectActivityDate_Max") or ""), reverse=True)
        return 200, [self._shape(lead) for lead in hits[:1]], {}

    def _stored_forms(self, value: Any) -> set[str]:
        """The digit strings a stored number answers to: with and without its country code."""
        if not value:
            return set()
        try:
            n = phonenumbers.parse(str(value), self.default_country)
        except phonenumbers.NumberParseException:
            return set()
        national = str(n.national_number)
        return {national, f"{n.country_code}{national}"}

    def _leads_get(self, r: RecordedRequest) -> Response:
        body = r.json if isinstance(r.json, dict) else None
        param = (body or {}).get("Parameter")
        if not isinstance(param, dict) or not param.get("LookupName"):
            return 400, _error("MXInvalidInputException", "Invalid request body"), {}
        if param.get("SqlOperator") != "=":
            return 400, _error("MXInvalidInputException", "Only '=' is served by this fake"), {}
        name, value = str(param["LookupName"]), str(param.get("LookupValue") or "")
        if name not in {"ProspectID", "Phone", "Mobile", "EmailAddress"} and not any(name in lead for lead in self.leads):
            return 500, _error("MXInvalidInputException", f"Invalid lookup field {name}"), {}
        hits = [lead for lead in self.leads if str(lead.get(name) or "").lower() == value.lower()]
        columns = [c.strip() for c in str(((body or {}).get("Columns") or {}).get("Include_CSV") or "").split(",") if c.strip()]
        return 200, [self._shape(lead, columns or None) for lead in hits], {}

    def _opportunity(self, r: RecordedRequest) -> Response:
        opp = self.opportunities.get(r.arg("OpportunityId") or "")
        if opp is None:
            return 500, _error("MXInvalidEntityReferenceException", "Opportunity does not exist"), {}
        fields = [{"SchemaName": k, "InternalName": k, "DisplayName": k, "Value": v, "DataType": "String"}
                  for k, v in opp.items() if k not in ("ID", "Name", "DisplayName")]
        return 200, {"ID": opp["ID"], "Name": opp["Name"], "DisplayName": opp.get("DisplayName"), "Fields": fields}, {}

    def _users(self, r: RecordedRequest) -> Response:
        keep = ("FirstName", "LastName", "EmailAddress", "Role", "StatusCode")
        return 200, [{"ID": uid, **{k: u.get(k) for k in keep}, "MemberOfGroups": [], "Tag": None, "IsPhoneCallAgent": False}
                     for uid, u in self.users.items()], {}

    def _user(self, r: RecordedRequest) -> Response:
        user = self.users.get(r.arg("userId") or "")
        if user is None or user.get("StatusCode") != 0:
            return 200, [], {}
        return 200, [dict(user)], {}

    def _shape(self, lead: Mapping[str, Any], columns: list[str] | None = None) -> dict:
        """A lead as LeadSquared answers it, owner companion fields filled from the users."""
        owner = self.users.get(str(lead.get("OwnerId") or ""), {})
        out = {**lead, "OwnerIdName": f"{owner.get('FirstName', '')} {owner.get('LastName', '')}".strip() or None,
               "OwnerIdEmailAddress": owner.get("EmailAddress")}
        return out if columns is None else {c: out.get(c) for c in columns}


def _error(kind: str, message: str) -> dict:
    return {"Status": "Error", "ExceptionType": kind, "ExceptionMessage": message}


def _not_found() -> Response:
    return 404, "<!DOCTYPE html><html><head><title>404 - Not Found</title></head><body>Not Found</body></html>", {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeLeadSquared(**sample_data()).start(args.port)
    print(f"fake LeadSquared at {fake.url}  (access key {ACCESS_KEY}, secret key {SECRET_KEY})", flush=True)
    fake.serve_until_interrupted()


if __name__ == "__main__":
    main()
