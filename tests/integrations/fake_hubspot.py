"""A local fake of the HubSpot API for end-to-end tests: real HTTP on 127.0.0.1, any port.

Serves, from an in-memory dataset, the endpoints the `hubspot` connector uses, under both the
date-versioned paths (``/crm/objects/2026-03/...``, ``/crm/owners/2026-03``,
``/crm/properties/2026-03/...``, ``/oauth/2026-03/token``) and the v3 ones (``/crm/v3/...``),
with the payload shapes and failures HubSpot documents (see the vendor documentation cited in
docs/crm/hubspot.md):

- ``POST .../objects/{contacts|companies}/search``: filterGroups (OR) of filters (AND) with
  EQ, NEQ, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN; HubSpot's limits
  (5 groups, 6 filters per group, 18 in total) and unknown properties answer 400
  VALIDATION_ERROR; `properties`, `sorts`, `limit`, `after`; no rate-limit headers (as HubSpot);
  **5 search requests per second per account**: the 6th within a second answers 429 with the
  body HubSpot sends ("You have reached your secondly limit.") and no Retry-After.
- ``GET .../objects/{type}/{id}?properties=...``
- ``GET .../owners/{id}?archived=``: a deactivated (archived) owner is 404 unless
  ``archived=true``; ``GET .../owners?limit=&after=&email=&archived=`` lists active owners, or
  archived ones only with ``archived=true``. Owners may be of type ``QUEUE``.
- ``GET .../properties/{type}``: the portal's property definitions.
- ``GET /settings/v3/users/teams``
- ``POST /oauth/v1/token``, ``/oauth/v3/token``, ``/oauth/2026-03/token`` (refresh_token grant, form body)

Bearer tokens are checked (static tokens given at start, private app tokens or service keys,
or tokens the fake issued; issued tokens expire). A token given a scope list in ``scopes`` is
refused with HubSpot's 403 MISSING_SCOPES shape on endpoints outside it. Records get HubSpot's
calculated phone properties when their stored value parses as one number (national significant
number, portal region): a field holding several numbers ("9876543210, 9123456789") gets none,
and only a token match finds it. Companies get them only with ``company_calculated_phone``.
Every request is recorded in `requests`; `inject` queues canned failures (429, 500, HTML...)
for requests whose path starts with ``path=``. The server, recording and injection are
`fake_crm.FakeCrmServer`'s. Used as::

    with FakeHubSpot(**sample_data()) as hs:
        ... base_url=hs.url ...
        assert hs.calls("POST", "/crm/objects/2026-03/contacts/search") == 1

Run ``python tests/integrations/fake_hubspot.py`` to serve the sample data by hand.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import re
import time
from typing import Any, Callable, Iterable, Mapping

import phonenumbers

from fake_crm import FakeCrmServer, RecordedRequest, Response  # noqa: E402

__all__ = ["FakeHubSpot", "RecordedRequest", "sample_data", "PRIVATE_APP_TOKEN", "SERVICE_KEY", "SECONDLY_LIMIT_BODY"]

PRIVATE_APP_TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
SERVICE_KEY = "sk-na1-66666666-7777-8888-9999-000000000000"
DATE_VERSION = "2026-03"
#: search allows 5 requests per second per account (usage guidelines)
SEARCH_PER_SECOND = 5
#: the 429 search answers past that (message as HubSpot's own client matches it; errorType and
#: category as public 429 bodies show; no policyName and no Retry-After: verify in a sandbox)
SECONDLY_LIMIT_BODY = {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                       "correlationId": "6828d000-3d2f-4701-8d90-b21e53b0d005", "category": "RATE_LIMITS"}
MAX_GROUPS, MAX_PER_GROUP, MAX_FILTERS = 5, 6, 18
# Properties every portal has even when no record holds a value.
STANDARD_PROPERTIES = {
    "contacts": {
        "firstname", "lastname", "email", "phone", "mobilephone", "company", "hubspot_owner_id", "hubspot_team_id",
        "associatedcompanyid", "lastmodifieddate", "createdate", "hs_object_id", "hs_calculated_phone_number",
        "hs_calculated_mobile_number", "hs_calculated_phone_number_country_code",
        "hs_searchable_calculated_phone_number", "hs_searchable_calculated_mobile_number", "account_number",
    },
    "companies": {
        "name", "domain", "phone", "hubspot_owner_id", "hubspot_team_id", "hs_lastmodifieddate", "createdate",
        "hs_object_id", "account_number",
    },
}
ALWAYS_RETURNED = {"contacts": ("hs_object_id", "createdate", "lastmodifieddate"),
                   "companies": ("hs_object_id", "createdate", "hs_lastmodifieddate")}


def sample_data() -> dict[str, Any]:
    """A small portal: two owners in two teams, a departed (archived) owner and a queue; contacts
    (one whose owner left, one owned by the queue, one field holding two numbers) and a company."""
    return {
        "region": "IN",
        "owners": [
            {"id": "41629779", "email": "asha@example.com", "firstName": "Asha", "lastName": "Rao", "userId": 9586504,
             "teams": [{"id": "368389", "name": "North", "primary": True}]},
            {"id": "52740880", "email": "vikram@example.com", "firstName": "Vikram", "lastName": "Shah", "userId": 9586505,
             "teams": [{"id": "368390", "name": "South", "primary": True}, {"id": "368389", "name": "North", "primary": False}]},
            {"id": "60000001", "email": "departed@example.com", "firstName": "Dev", "lastName": "Left", "userId": 9586506,
             "archived": True, "teams": [{"id": "368389", "name": "North", "primary": True}]},
            {"id": "70000001", "type": "QUEUE", "firstName": "Inbound Queue", "lastName": ""},
        ],
        "teams": [
            {"id": "368389", "name": "North", "userIds": ["9586504"], "secondaryUserIds": ["9586505"]},
            {"id": "368390", "name": "South", "userIds": ["9586505"], "secondaryUserIds": []},
        ],
        "contacts": [
            {"id": "51", "properties": {"firstname": "Ana", "lastname": "Gupta", "email": "ana@acme.example",
                                        "phone": "098765 43210", "hubspot_owner_id": "41629779",
                                        "associatedcompanyid": "9001", "lastmodifieddate": "2025-06-01T08:00:00Z"}},
            {"id": "52", "properties": {"firstname": "Ravi", "lastname": "Kumar", "mobilephone": "+91-99887-76655",
                                        "hubspot_owner_id": "52740880", "lastmodifieddate": "2025-05-01T08:00:00Z"}},
            {"id": "53", "properties": {"firstname": "Meena", "lastname": "Iyer", "phone": "+91 99000 11111",
                                        "hubspot_owner_id": "60000001", "lastmodifieddate": "2025-03-01T08:00:00Z"}},
            {"id": "54", "properties": {"firstname": "Joy", "lastname": "Das", "phone": "+91 99000 22222",
                                        "hubspot_owner_id": "70000001", "lastmodifieddate": "2025-03-02T08:00:00Z"}},
            {"id": "55", "properties": {"firstname": "Lata", "lastname": "Nair", "phone": "9845012345, 9845067890",
                                        "hubspot_owner_id": "41629779", "lastmodifieddate": "2025-03-03T08:00:00Z"}},
        ],
        "companies": [
            {"id": "9001", "properties": {"name": "Acme Traders", "phone": "+91 80 4000 1000",
                                          "hubspot_owner_id": "52740880", "account_number": "ACC-1001",
                                          "hs_lastmodifieddate": "2025-04-01T08:00:00Z"}},
        ],
    }


class FakeHubSpot(FakeCrmServer):
    """The fake server; `start()`/`stop()` or use it as a context manager."""

    thread_name = "fake-hubspot"
    keep_blank_values = False

    def __init__(
        self,
        *,
        contacts: Iterable[Mapping[str, Any]] = (),
        companies: Iterable[Mapping[str, Any]] = (),
        owners: Iterable[Mapping[str, Any]] = (),
        teams: Iterable[Mapping[str, Any]] = (),
        region: str = "IN",
        tokens: Iterable[str] = (PRIVATE_APP_TOKEN, SERVICE_KEY),
        scopes: Mapping[str, Iterable[str]] | None = None,
        oauth_client: tuple[str, str, str] | None = None,
        access_token_ttl: int = 1800,
        company_calculated_phone: bool = False,
        search_per_second: int = SEARCH_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.region = region
        self.company_calculated_phone = company_calculated_phone
        self.objects: dict[str, dict[str, dict]] = {"contacts": {}, "companies": {}}
        self.owners: dict[str, dict] = {}
        self.teams = [dict(t) for t in teams]
        self.static_tokens = set(tokens)
        #: token -> the scopes it was granted; a token not listed has every scope
        self.scopes = {t: set(v) for t, v in (scopes or {}).items()}
        self.oauth_client = oauth_client  # (client_id, client_secret, refresh_token)
        self.access_token_ttl = access_token_ttl
        self.search_per_second = search_per_second
        self.clock = clock
        self._searches: list[float] = []  # when recent search requests arrived (the account's bucket)
        for c in contacts:
            self.add_record("contacts", c)
        for c in companies:
            self.add_record("companies", c)
        for o in owners:
            self.add_owner(o)

    # -- dataset ------------------------------------------------------------------------------

    def add_record(self, obj: str, record: Mapping[str, Any]) -> dict:
        props = {k: (None if v is None else str(v)) for k, v in dict(record.get("properties") or {}).items()}
        rid = str(record["id"])
        modified_key = "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"
        props.setdefault(modified_key, "2025-01-01T00:00:00Z")
        props.setdefault("createdate", "2024-01-01T00:00:00Z")
        props["hs_object_id"] = rid
        if obj == "contacts" or self.company_calculated_phone:
            self._calculate_phones(props, mobile=obj == "contacts")
        rec = {"id": rid, "properties": props, "createdAt": props["createdate"], "updatedAt": props[modified_key],
               "archived": False}
        self.objects[obj][rid] = rec
        return rec

    def add_owner(self, owner: Mapping[str, Any]) -> None:
        """An owner; ``archived: True`` for a deactivated user, ``type: "QUEUE"`` for a queue."""
        o = {"type": "PERSON", "archived": False, "createdAt": "2019-12-25T13:01:35.228Z",
             "updatedAt": "2024-01-01T00:00:00Z", "teams": [], **dict(owner)}
        o["id"] = str(o["id"])
        o.setdefault("userIdIncludingInactive", o.get("userId"))
        if o.get("archived"):
            o.pop("userId", None)  # a deactivated user keeps only userIdIncludingInactive
        self.owners[o["id"]] = o

    def properties_of(self, obj: str) -> set[str]:
        """The property names the portal defines for `obj`."""
        known = set(STANDARD_PROPERTIES[obj]) | {k for rec in self.objects[obj].values() for k in rec["properties"]}
        if obj == "companies" and self.company_calculated_phone:
            known |= {"hs_calculated_phone_number", "hs_searchable_calculated_phone_number"}
        return known

    def _calculate_phones(self, props: dict, mobile: bool = True) -> None:
        """What HubSpot derives from a value that parses as one number (portal region for national
        forms): the E.164 form and the national significant number. Several numbers in one value
        do not parse, so they get neither."""
        pairs = [("phone", "hs_calculated_phone_number", "hs_searchable_calculated_phone_number")]
        if mobile:
            pairs.append(("mobilephone", "hs_calculated_mobile_number", "hs_searchable_calculated_mobile_number"))
        for raw_key, calc, searchable in pairs:
            raw = props.get(raw_key)
            if not raw:
                continue
            try:
                n = phonenumbers.parse(raw, self.region)
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_possible_number(n):
                continue
            props.setdefault(calc, phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164))
            props.setdefault(searchable, phonenumbers.national_significant_number(n))
            if raw_key == "phone":
                props.setdefault("hs_calculated_phone_number_country_code", phonenumbers.region_code_for_number(n) or "")

    # -- request handling ---------------------------------------------------------------------

    def _encode(self, body: Any) -> tuple[bytes, str | None]:
        """HubSpot's labels: dicts and lists as JSON, bytes as octet-stream, text as HTML if it starts with '<'."""
        if isinstance(body, (dict, list)):
            return json.dumps(body).encode(), "application/json;charset=utf-8"
        if isinstance(body, bytes):
            return body, "application/octet-stream"
        if body is None:
            return b"", "application/json;charset=utf-8"
        text = str(body)
        return text.encode(), "text/html; charset=utf-8" if text.lstrip().startswith("<") else "text/plain; charset=utf-8"

    def _route(self, r: RecordedRequest) -> Response:
        path = r.path.rstrip("/")
        if r.method == "POST" and path in ("/oauth/v1/token", "/oauth/v3/token", f"/oauth/{DATE_VERSION}/token"):
            return self._token(r)
        token, auth = self._authenticate(r)
        if auth is not None:
            return auth
        segs = path.strip("/").split("/")
        api, rest = _api(segs)
        rate = self._rate_headers()
        scope = _scope_for(api, rest)
        if scope is not None and not self._granted(token, scope):
            return 403, _missing_scopes(scope), rate
        if api == "objects" and r.method == "POST" and len(rest) == 2 and rest[1] == "search":
            return self._search(rest[0], r.json)
        if api == "objects" and r.method == "GET" and len(rest) == 2:
            return self._get_record(rest[0], rest[1], r.query, rate)
        if api == "owners" and r.method == "GET":
            if len(rest) == 1:
                return self._owner(rest[0], r.query, rate)
            if not rest:
                return self._owners(r.query, rate)
        if api == "properties" and r.method == "GET" and len(rest) == 1 and rest[0] in self.objects:
            return 200, {"results": [_property(name) for name in sorted(self.properties_of(rest[0]))]}, rate
        if r.method == "GET" and path == "/settings/v3/users/teams":
            return 200, {"results": self.teams}, rate
        return 404, _error("OBJECT_NOT_FOUND", f"no route for {r.method} {path}"), {}

    def _authenticate(self, r: RecordedRequest) -> tuple[str, Response | None]:
        header = r.headers.get("Authorization") or ""
        token = header[7:] if header.startswith("Bearer ") else ""
        if token in self.static_tokens:
            return token, None
        expiry = self._token_expiry(token)
        if expiry is None:
            return token, (401, _error("INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports OAuth 2.0 "
                                                                 "authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"), {})
        if expiry <= time.monotonic():
            ago = int(time.monotonic() - expiry) or 1
            return token, (401, _error("EXPIRED_AUTHENTICATION", f"The OAuth token used to make this call expired {ago} second(s) ago."), {})
        return token, None

    def _granted(self, token: str, scope: str) -> bool:
        granted = self.scopes.get(token)
        return granted is None or scope in granted

    def _token(self, r: RecordedRequest) -> Response:
        form = {k: v[0] for k, v in r.form.items()}
        if not r.path.startswith("/oauth/v1") and r.query:
            return 400, {"error": "invalid_request", "error_description": "parameters must be in the request body",
                         "status": "BAD_REQUEST", "message": "parameters must be in the request body"}, {}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token",
                         "status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token"}, {}
        if self.oauth_client is None or (form.get("client_id"), form.get("client_secret")) != self.oauth_client[:2]:
            return 400, {"error": "invalid_client", "error_description": "client_id or client_secret is invalid",
                         "status": "BAD_CLIENT_ID", "message": "missing or unknown client id"}, {}
        if form.get("refresh_token") != self.oauth_client[2]:
            return 400, {"error": "invalid_grant", "error_description": "refresh token is invalid, expired or revoked",
                         "status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"}, {}
        token = f"CJSP{next(self._seq):04d}fakeaccesstoken"
        self._issue_token(token, self.access_token_ttl)
        return 200, {"token_type": "bearer", "access_token": token, "refresh_token": self.oauth_client[2],
                     "expires_in": self.access_token_ttl}, {}

    def _rate_headers(self) -> dict[str, str]:
        used = len(self.requests)
        return {
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Remaining": str(max(0, 190 - used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Daily": "625000",
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, 625000 - used)),
        }

    def _search_allowed(self) -> bool:
        """HubSpot's search limit: `search_per_second` requests in any one second, per account."""
        with self._lock:
            now = self.clock()
            self._searches = [t for t in self._searches if now - t < 1.0]
            if len(self._searches) >= self.search_per_second:
                return False
            self._searches.append(now)
            return True

    def _search(self, obj: str, body: Any) -> Response:
        if not self._search_allowed():
            return 429, dict(SECONDLY_LIMIT_BODY), {}  # no Retry-After, no rate-limit headers
        if obj not in self.objects:
            return 400, _error("VALIDATION_ERROR", f"Unable to infer object type from: {obj}"), {}
        if not isinstance(body, dict):
            return 400, _error("VALIDATION_ERROR", "Invalid input JSON on line 1"), {}
        groups = body.get("filterGroups") or []
        if len(groups) > MAX_GROUPS:
            return 400, _error("VALIDATION_ERROR", f"Too many filter groups ({len(groups)}); the maximum is {MAX_GROUPS}"), {}
        total_filters = 0
        known = self.properties_of(obj)
        for g in groups:
            filters = g.get("filters") or []
            total_filters += len(filters)
            if len(filters) > MAX_PER_GROUP:
                return 400, _error("VALIDATION_ERROR", f"Too many filters in a group ({len(filters)}); the maximum is {MAX_PER_GROUP}"), {}
            for f in filters:
                if f.get("propertyName") not in known:
                    return 400, _error("VALIDATION_ERROR", "There was a problem with the request.",
                                       errors=[{"message": f"Property {f.get('propertyName')!r} does not exist", "in": "propertyName"}]), {}
        if total_filters > MAX_FILTERS:
            return 400, _error("VALIDATION_ERROR", f"Too many filters ({total_filters}); the maximum is {MAX_FILTERS}"), {}
        limit = int(body.get("limit") or 10)
        if limit > 200:
            return 400, _error("VALIDATION_ERROR", "limit must be at most 200"), {}
        hits = [rec for rec in self.objects[obj].values() if not groups or any(_group_matches(g, rec) for g in groups)]
        for s in reversed(body.get("sorts") or []):
            key = s.get("propertyName")
            hits.sort(key=lambda rec: (rec["properties"].get(key) is None, rec["properties"].get(key) or ""),
                      reverse=s.get("direction") == "DESCENDING")
        if not body.get("sorts"):
            hits.sort(key=lambda rec: int(rec["id"]) if rec["id"].isdigit() else rec["id"])
        start = int(body.get("after") or 0)
        page = hits[start:start + limit]
        wanted = body.get("properties")
        out = {"total": len(hits), "results": [self._shape(obj, rec, wanted) for rec in page]}
        if start + limit < len(hits):
            out["paging"] = {"next": {"after": str(start + limit), "link": "?after=" + str(start + limit)}}
        return 200, out, {}

    def _shape(self, obj: str, rec: dict, wanted: Iterable[str] | None) -> dict:
        props = rec["properties"]
        names = list(wanted) if wanted else list(props)
        names += [n for n in ALWAYS_RETURNED[obj] if n not in names]
        shaped = copy.deepcopy(rec)
        shaped["properties"] = {n: props.get(n) for n in names}
        return shaped

    def _get_record(self, obj: str, rid: str, query: Mapping[str, list[str]], rate: dict) -> Response:
        rec = self.objects.get(obj, {}).get(rid)
        if rec is None:
            return 404, _error("OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.", context={"id": [rid]}), rate
        wanted = [p for v in query.get("properties", []) for p in v.split(",") if p]
        return 200, self._shape(obj, rec, wanted or None), rate

    def _owner(self, oid: str, query: Mapping[str, list[str]], rate: dict) -> Response:
        id_property = (query.get("idProperty") or ["id"])[0]
        archived = (query.get("archived") or ["false"])[0] == "true"
        for o in self.owners.values():
            key = o["id"] if id_property == "id" else str(o.get("userIdIncludingInactive"))
            if key == oid and bool(o.get("archived")) == archived:
                return 200, o, rate
        return 404, _error("OBJECT_NOT_FOUND", f"No owner found with id {oid}"), rate

    def _owners(self, query: Mapping[str, list[str]], rate: dict) -> Response:
        email = (query.get("email") or [None])[0]
        archived = (query.get("archived") or ["false"])[0] == "true"
        limit = int((query.get("limit") or ["100"])[0])
        if limit > 500:
            return 400, _error("VALIDATION_ERROR", "limit must be at most 500"), rate
        start = int((query.get("after") or ["0"])[0])
        items = [o for o in self.owners.values() if bool(o.get("archived")) == archived and (email is None or o.get("email") == email)]
        out: dict[str, Any] = {"results": items[start:start + limit]}
        if start + limit < len(items):
            out["paging"] = {"next": {"after": str(start + limit), "link": f"?after={start + limit}"}}
        return 200, out, rate


def _api(segs: list[str]) -> tuple[str | None, list[str]]:
    """("objects" | "owners" | "properties", the rest) for /crm/v3/<api>/... and /crm/<api>/2026-03/...;
    (None, []) for any other path (an unknown version included)."""
    if len(segs) >= 3 and segs[0] == "crm" and segs[1] == "v3":
        return segs[2], segs[3:]
    if len(segs) >= 3 and segs[0] == "crm" and segs[2] == DATE_VERSION:
        return segs[1], segs[3:]
    return None, []


def _scope_for(api: str | None, rest: list[str]) -> str | None:
    """The read scope an endpoint needs (HubSpot lists them under each endpoint's requirements)."""
    if api in ("objects", "properties") and rest and rest[0] in ("contacts", "companies"):
        return f"crm.objects.{rest[0]}.read"
    if api == "owners":
        return "crm.objects.owners.read"
    return None


def _missing_scopes(scope: str) -> dict:
    """HubSpot's 403 for a token without a scope (category MISSING_SCOPES)."""
    return {"status": "error", "message": "This app hasn't been granted all required scopes to make this call.",
            "correlationId": "0e8f3b74-59a3-4b63-9a8d-8d1a7c1f0c11", "category": "MISSING_SCOPES",
            "errors": [{"message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]}}]}


def _property(name: str) -> dict:
    """A property definition as the properties API lists it (trimmed)."""
    phone = "phone" in name or "mobile" in name
    return {"name": name, "label": name.replace("_", " ").title(), "type": "string",
            "fieldType": "phonenumber" if phone else "text", "groupName": "contactinformation",
            "hidden": False, "calculated": name.startswith("hs_calculated") or name.startswith("hs_searchable"),
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": True, "readOnlyValue": False}}


def _group_matches(group: Mapping[str, Any], rec: Mapping[str, Any]) -> bool:
    return all(_filter_matches(f, rec["properties"]) for f in group.get("filters") or [])


def _filter_matches(f: Mapping[str, Any], props: Mapping[str, Any]) -> bool:
    value = props.get(f.get("propertyName"))
    op = f.get("operator")
    text = (value or "").lower()
    if op == "HAS_PROPERTY":
        return bool(value)
    if op == "NOT_HAS_PROPERTY":
        return not value
    if op == "EQ":
        return value is not None and text == str(f.get("value", "")).lower()
    if op == "NEQ":
        return text != str(f.get("value", "")).lower()
    if op == "IN":
        return value is not None and text in {str(v).lower() for v in f.get("values") or []}
    if op == "NOT_IN":
        return text not in {str(v).lower() for v in f.get("values") or []}
    if op == "CONTAINS_TOKEN":
        pattern = str(f.get("value", "")).lower()
        return any(fnmatch.fnmatchcase(tok, pattern) for tok in re.split(r"[\s,;/()\-]+", text) if tok)
    return False


def _error(category: str, message: str, **extra: Any) -> dict:
    return {"status": "error", "message": message, "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
            "category": category, **extra}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    hs = FakeHubSpot(**sample_data(), oauth_client=("fake-client", "fake-secret", "fake-refresh")).start(args.port)
    print(f"fake HubSpot at {hs.url}  (private app token: {PRIVATE_APP_TOKEN})", flush=True)
    hs.serve_until_interrupted()

if __name__ == "__main__":
    main()
