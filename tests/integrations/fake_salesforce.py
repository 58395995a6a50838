"""A local fake of the Salesforce APIs dialwhom uses, for end-to-end tests.

Real HTTP on 127.0.0.1 (port 0 = any free port), served from a thread::

    with FakeSalesforce() as sf:                  # the sample org below, or dataset=...
        config = {"type": "salesforce", "login_url": sf.url, "auth": "client_credentials",
                  "client_id": sf.client_id, "client_secret": sf.client_secret}
        ...
        sf.requests                               # every request, in order (RecordedRequest)

What it serves, with Salesforce's payload shapes (docs/crm/salesforce.md):

- ``POST /services/oauth2/token`` (form): ``client_credentials`` and ``refresh_token`` grants;
  answers ``access_token``, ``instance_url`` (this server), ``id``, ``token_type``, ``issued_at``,
  ``signature``, ``scope``; no ``expires_in``. Bad credentials: 400 ``invalid_client`` /
  ``invalid_grant``.
- ``GET /services/data/`` (versions, no auth) and ``GET /services/data/vNN.N/`` (resources).
- ``GET /services/data/vNN.N/sobjects/<Object>/describe``: ``{"name", "fields": [{"name", "type",
  "relationshipName", "referenceTo"}]}``. A field the integration user cannot read
  (``hidden_fields={"Contact.HomePhone", "User.MobilePhone"}``: field-level security) is simply
  absent, as Salesforce documents; ``extra_fields`` adds custom or Person Account fields.
- ``GET /services/data/vNN.N/search/?q=FIND {..} IN PHONE FIELDS RETURNING Obj(fields [WHERE
  F = v] [ORDER BY F ASC|DESC] [LIMIT n]), ...``: a SOSL subset. Relationship fields
  (``Owner.Name``, ``Owner.UserRole.Name``, ``Account.Owner.Phone``) are resolved;
  ``Lead.Owner`` resolves to the polymorphic ``Name`` object (no ``MobilePhone``). Asking for a
  field that does not exist or that the user cannot read is ``400 INVALID_FIELD`` with
  Salesforce's message (``No such column 'X' on entity 'Y'`` / ``Didn't understand
  relationship 'R'``). An unescaped reserved character in the search term is
  ``MALFORMED_SEARCH``. Matching follows the documented tokenisation: stored values split on
  spaces and punctuation into tokens; a word matches a token, a quoted phrase matches
  consecutive tokens, so ``+91 98765 43210`` is found by ``"98765 43210"`` but not by
  ``9876543210``. Every readable phone-type field is searched (Fax and custom ones too).
- ``GET /services/data/vNN.N/query/?q=SELECT f, .. FROM Obj WHERE F = 'v'|true|false [ORDER BY ..]
  [LIMIT n]``, in batches of ``query_batch`` rows with ``nextRecordsUrl`` (``/query/01g...-N``)
- ``GET /services/data/vNN.N/sobjects/User/<id>?fields=..``

Every data response carries ``Sforce-Limit-Info: api-usage=N/LIMIT``; over the limit it is
403 ``REQUEST_LIMIT_EXCEEDED``. A bad or expired bearer token is 401 ``INVALID_SESSION_ID``.
`fail_next` scripts raw answers (5xx, HTML, broken JSON) for the next requests whose path starts
with a prefix; `expire_tokens` ends every session; ``calls(prefix)`` lists the requests whose
path starts with it (query and form parameters hold their last value). The server, recording
and injection are `fake_crm.FakeCrmServer`'s.

Run it by hand: ``python tests/integrations/fake_salesforce.py [port]``.
"""

from __future__ import annotations

import copy
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import fake_crm  # noqa: E402
from fake_crm import FakeCrmServer, Response  # noqa: E402

__all__ = ["FakeSalesforce", "RecordedRequest", "sample_dataset", "describe_body", "ORG_ID"]

ORG_ID = "00D5g000004FAKEEA0"
VERSIONS = ("58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0", "65.0", "66.0")
SOSL_RESERVED = set("?&|!{}[]()^~*:\\\"'+-")

#: phone-type fields per object (what IN PHONE FIELDS searches)
PHONE_FIELDS = {
    "Contact": ("Phone", "MobilePhone", "HomePhone", "OtherPhone", "AssistantPhone", "Fax"),
    "Lead": ("Phone", "MobilePhone", "Fax"),
    "Account": ("Phone", "Fax"),
}
#: fields each object exposes (others are INVALID_FIELD); relationships listed separately
FIELDS = {
    "Contact": {"Id", "Name", "FirstName", "LastName", "Email", "OwnerId", "AccountId", "LastModifiedDate", *PHONE_FIELDS["Contact"]},
    "Lead": {"Id", "Name", "FirstName", "LastName", "Company", "Email", "OwnerId", "IsConverted", "Status", "LastModifiedDate", *PHONE_FIELDS["Lead"]},
    "Account": {"Id", "Name", "AccountNumber", "OwnerId", "Type", "LastModifiedDate", *PHONE_FIELDS["Account"]},
    "User": {"Id", "Name", "FirstName", "LastName", "Email", "Username", "Phone", "MobilePhone", "Extension", "Title",
             "Department", "Division", "IsActive", "UserRoleId", "ManagerId", "LastModifiedDate"},
    "Name": {"Id", "Name", "FirstName", "LastName", "Alias", "Email", "Phone", "Title", "Type", "IsActive",
             "UserRoleId", "ProfileId", "Username"},
    "UserRole": {"Id", "Name"},
    "Group": {"Id", "Name", "Type", "Email", "DeveloperName"},
}
#: relationship name -> (id field, target object) per object
RELATIONS = {
    "Contact": {"Owner": ("OwnerId", "User"), "Account": ("AccountId", "Account")},
    "Lead": {"Owner": ("OwnerId", "Name")},
    "Account": {"Owner": ("OwnerId", "User")},
    "User": {"UserRole": ("UserRoleId", "UserRole"), "Manager": ("ManagerId", "User")},
}
#: what describe says each reference field points to (Lead.OwnerId is polymorphic)
REFERENCE_TO = {("Lead", "OwnerId"): ["Group", "User"]}
NAME_FIELDS_VISIBLE = frozenset(FIELDS["Name"])
DESCRIBABLE = ("Contact", "Lead", "Account", "User", "UserRole", "Group")
NO_COLUMN = ("No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field, be sure to "
             "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
             "appropriate names.")
NO_RELATION = ("Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
               "relationship, be sure to append the '__r' after the custom relationship name. Please reference your "
               "WSDL or the describe call for the appropriate names.")


def readable_fields(obj: str, hidden: Iterable[str] = (), extra_fields: Mapping[str, Mapping[str, str]] | None = None) -> set[str]:
    """The fields of `obj` an integration user can read when `hidden` ("Obj.Field") are not."""
    names = set(FIELDS.get(obj, ())) | set((extra_fields or {}).get(obj, {}))
    return {f for f in names if f"{obj}.{f}" not in set(hidden)}


def readable_phone_fields(obj: str, hidden: Iterable[str] = (), extra_fields: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Readable phone-type fields of `obj` (what IN PHONE FIELDS searches)."""
    custom = [f for f, t in (extra_fields or {}).get(obj, {}).items() if t == "phone"]
    return [f for f in (*PHONE_FIELDS.get(obj, ()), *custom) if f"{obj}.{f}" not in set(hidden)]


def describe_body(obj: str, hidden: Iterable[str] = (), extra_fields: Mapping[str, Mapping[str, str]] | None = None) -> dict:
    """``GET /sobjects/<obj>/describe`` as Salesforce shapes it (trimmed): unreadable fields absent."""
    rel_by_id = {id_field: (name, target) for name, (id_field, target) in RELATIONS.get(obj, {}).items()}
    phones = set(readable_phone_fields(obj, hidden, extra_fields))
    out = []
    for name in sorted(readable_fields(obj, hidden, extra_fields)):
        rel = rel_by_id.get(name)
        ftype = "id" if name == "Id" else "phone" if name in phones else "reference" if rel else (
            (extra_fields or {}).get(obj, {}).get(name) or ("boolean" if name.startswith("Is") else "string"))
        out.append({"name": name, "type": ftype, "label": name, "nillable": name != "Id",
                    "relationshipName": rel[0] if rel else None,
                    "referenceTo": REFERENCE_TO.get((obj, name), [rel[1]] if rel else [])})
    return {"name": obj, "label": obj, "queryable": True, "searchable": obj != "User", "fields": out}


def sample_dataset() -> dict[str, Any]:
    """A small org: two sales users with roles, a queue, Contacts/Leads/Accounts (Indian numbers)."""
    return {
        "UserRole": [
            {"Id": "00E5g000000NORTHAQ", "Name": "North Sales"},
            {"Id": "00E5g000000SOUTHAQ", "Name": "South Sales"},
        ],
        "User": [
            {"Id": "0055g00000AshaAAAQ", "Name": "Asha Rao", "Email": "asha@example.com", "Phone": "+91 80 4000 0001",
             "MobilePhone": "+91 98000 00001", "IsActive": True, "Department": "Sales", "Division": "North",
             "UserRoleId": "00E5g000000NORTHAQ", "ManagerId": None, "LastModifiedDate": "2024-01-01T00:00:00.000+0000"},
            {"Id": "0055g00000RaviAAAQ", "Name": "Ravi Iyer", "Email": "ravi@example.com", "Phone": None,
             "MobilePhone": "+91 98000 00009", "IsActive": True, "Department": "Sales", "Division": "South",
             "UserRoleId": "00E5g000000SOUTHAQ", "ManagerId": "0055g00000AshaAAAQ", "LastModifiedDate": "2024-01-01T00:00:00.000+0000"},
            {"Id": "0055g00000GitaAAAQ", "Name": "Gita Nair", "Email": "gita@example.com", "Phone": None,
             "MobilePhone": "+91 98000 00007", "IsActive": False, "Department": "Sales", "Division": "North",
             "UserRoleId": "00E5g000000NORTHAQ", "ManagerId": None, "LastModifiedDate": "2024-01-01T00:00:00.000+0000"},
        ],
        "Group": [
            {"Id": "00G5g000001InbQAAQ", "Name": "Inbound Queue", "Type": "Queue", "Email": None, "DeveloperName": "Inbound_Queue"},
        ],
        "Account": [
            {"Id": "0015g00000AcmeAAAQ", "Name": "Acme Traders", "AccountNumber": "ACME-001", "Phone": "080 4000 1000",
             "OwnerId": "0055g00000RaviAAAQ", "LastModifiedDate": "2024-05-01T10:00:00.000+0000"},
        ],
        "Contact": [
            {"Id": "0035g00000MeeraAAQ", "Name": "Meera Shah", "Phone": "098765 43210", "MobilePhone": None,
             "OwnerId": "0055g00000AshaAAAQ", "AccountId": "0015g00000AcmeAAAQ", "LastModifiedDate": "2024-06-01T09:30:00.000+0000"},
            {"Id": "0035g00000JohnAAAQ", "Name": "John Roe", "Phone": "+1 987-654-3210",
             "OwnerId": "0055g00000RaviAAAQ", "AccountId": None, "LastModifiedDate": "2024-06-02T09:30:00.000+0000"},
            {"Id": "0035g00000PriyaAAQ", "Name": "Priya Menon", "Phone": "9000011111, 080 4000 2000 (W)",
             "OwnerId": "0055g00000GitaAAAQ", "AccountId": None, "LastModifiedDate": "2024-06-05T09:30:00.000+0000"},
        ],
        "Lead": [
            {"Id": "00Q5g00000KiranAAQ", "Name": "Kiran Das", "Company": "Das & Co", "Phone": "+91-91234-56789",
             "MobilePhone": None, "OwnerId": "00G5g000001InbQAAQ", "IsConverted": False, "LastModifiedDate": "2024-06-03T12:00:00.000+0000"},
            {"Id": "00Q5g00000OldLdAAQ", "Name": "Meera Shah", "Company": "Acme Traders", "Phone": "9876543210",
             "OwnerId": "0055g00000RaviAAAQ", "IsConverted": True, "LastModifiedDate": "2024-06-04T12:00:00.000+0000"},
        ],
    }


@dataclass
class RecordedRequest(fake_crm.RecordedRequest):
    """One request as the fake saw it; query and form parameters hold their last value."""

    query: dict[str, str]  # type: ignore[assignment]
    form: dict[str, str] = field(default_factory=dict)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.query = {k: v[-1] if isinstance(v, list) else v for k, v in self.query.items()}
        self.form = {k: v[-1] if isinstance(v, list) else v for k, v in self.form.items()}

    def arg(self, name: str) -> str | None:
        return self.query[name] if name in self.query else self.form.get(name)


class _SoqlError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class FakeSalesforce(FakeCrmServer):
    """The fake org and its HTTP server (listening from construction: `url` before `start()`)."""

    thread_name = "fake-salesforce"
    request_class = RecordedRequest

    def __init__(self, dataset: Mapping[str, Any] | None = None, *, client_id: str = "3MVG9fake.consumer.key",
                 client_secret: str = "fake-consumer-secret-123", refresh_token: str = "5Aep861fake.refresh.token",
                 run_as_user: str = "0055g00000AshaAAAQ", api_limit: int = 15000, hidden_fields: Iterable[str] = (),
                 extra_fields: Mapping[str, Mapping[str, str]] | None = None, query_batch: int = 2000,
                 host: str = "127.0.0.1", port: int = 0):
        super().__init__()
        self.data: dict[str, list[dict]] = copy.deepcopy(dict(dataset or sample_dataset()))
        #: "Object.Field" the integration user cannot read (field-level security)
        self.hidden: set[str] = set(hidden_fields)
        #: Object -> {custom field: type}, e.g. {"Contact": {"Mobile2__c": "phone"}}
        self.extra_fields = {obj: dict(f) for obj, f in (extra_fields or {}).items()}
        self.query_batch = query_batch
        self._cursors: dict[str, list[dict]] = {}
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.run_as_user = run_as_user
        self.api_limit = api_limit
        self.api_usage = 0
        self._listen(host, port)

    # -- test controls --------------------------------------------------------------------------

    def fail_next(self, path_prefix: str, status: int, body: str | bytes | Any = "", *, headers: Mapping[str, str] | None = None, times: int = 1) -> None:
        """Answer the next `times` requests whose path starts with `path_prefix` with this."""
        self.inject(status, body, path=path_prefix, headers=headers, times=times)

    def calls(self, path_prefix: str = "") -> list[RecordedRequest]:  # type: ignore[override]
        """The requests whose path starts with `path_prefix`, in order (a list, unlike the other fakes)."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    # -- request handling -----------------------------------------------------------------------

    def _route(self, rec: RecordedRequest) -> Response:
        try:
            if rec.path == "/services/oauth2/token" and rec.method == "POST":
                return self._token(rec)
            if rec.path.rstrip("/") == "/services/data" and rec.method == "GET":
                return self._json(200, [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS])
            m = re.match(r"^/services/data/v(\d+\.\d)(/.*)?$", rec.path)
            if m and rec.method == "GET":
                return self._data(rec, m.group(1), (m.group(2) or "/").rstrip("/") or "/")
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        except _SoqlError as exc:
            return self._error(exc.status, exc.code, exc.message)

    @staticmethod
    def _json(status: int, body: Any, extra: Mapping[str, str] | None = None) -> Response:
        return status, body, dict(extra or {})

    def _error(self, status: int, code: str, message: str, extra: Mapping[str, str] | None = None):
        return self._json(status, [{"message": message, "errorCode": code}], extra)

    def _token(self, rec: RecordedRequest):
        f = rec.form
        grant = f.get("grant_type")
        if f.get("client_id") != self.client_id:
            return self._json(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
        if grant == "client_credentials":
            if f.get("client_secret") != self.client_secret:
                return self._json(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        elif grant == "refresh_token":
            if "client_secret" in f and f["client_secret"] != self.client_secret:
                return self._json(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
            if f.get("refresh_token") != self.refresh_token:
                return self._json(400, {"error": "invalid_grant", "error_description": "expired access/refresh token"})
        else:
            return self._json(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        token = f"{ORG_ID}!AQ{secrets.token_urlsafe(24)}"
        self._issue_token(token, None)  # no expiry: sessions end by expire_tokens here
        body = {
            "access_token": token,
            "signature": secrets.token_urlsafe(32),
            "scope": "api" if grant == "client_credentials" else "api refresh_token",
            "instance_url": self.url,
            "id": f"{self.url}/id/{ORG_ID}/{self.run_as_user}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
        }
        if grant == "client_credentials":
            body["token_format"] = "opaque"
        return self._json(200, body)

    def _data(self, rec: RecordedRequest, version: str, path: str):
        auth = rec.headers.get("Authorization") or ""
        if not (auth.startswith("Bearer ") and self._token_valid(auth[7:])):
            return self._error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if version not in VERSIONS:
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        with self._lock:
            self.api_usage += 1
            usage = self.api_usage
        limit = {"Sforce-Limit-Info": f"api-usage={usage}/{self.api_limit}"}
        if usage > self.api_limit:
            return self._error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", limit)
        base = f"/services/data/v{version}"
        if path == "/":
            return self._json(200, {k: f"{base}/{k}" for k in ("sobjects", "search", "query", "limits", "parameterizedSearch")}, limit)
        if path == "/search":
            return self._json(200, {"searchRecords": self._sosl(rec.query.get("q", ""), base)}, limit)
        if path == "/query":
            return self._json(200, self._batch(self._soql(rec.query.get("q", ""), base), base), limit)
        m = re.match(r"^/query/(01g[\w-]+)$", path)
        if m:
            with self._lock:
                rows = self._cursors.pop(m.group(1), None)
            if rows is None:
                return self._error(400, "INVALID_QUERY_LOCATOR", "invalid query locator", limit)
            return self._json(200, self._batch(rows, base), limit)
        m = re.match(r"^/sobjects/(\w+)/describe$", path)
        if m:
            if m.group(1) not in DESCRIBABLE:
                return self._error(404, "NOT_FOUND", "The requested resource does not exist", limit)
            return self._json(200, self.describe(m.group(1)), limit)
        m = re.match(r"^/sobjects/(\w+)/(\w+)$", path)
        if m:
            obj, rid = m.groups()
            row = self._find(obj, rid)
            if row is None:
                return self._error(404, "NOT_FOUND", "The requested resource does not exist", limit)
            fields = [x.strip() for x in rec.query.get("fields", "").split(",") if x.strip()] or sorted(FIELDS.get(obj, ()))
            return self._json(200, self._project(obj, row, fields, base), limit)
        return self._error(404, "NOT_FOUND", "The requested resource does not exist", limit)

    # -- the org --------------------------------------------------------------------------------

    def fields_of(self, obj: str) -> set[str]:
        """The fields of `obj` the integration user can read."""
        return readable_fields(obj, self.hidden, self.extra_fields)

    def phone_fields_of(self, obj: str) -> list[str]:
        """Readable phone-type fields (what IN PHONE FIELDS searches)."""
        return readable_phone_fields(obj, self.hidden, self.extra_fields)

    def describe(self, obj: str) -> dict:
        return describe_body(obj, self.hidden, self.extra_fields)

    def _batch(self, rows: list[dict], base: str) -> dict:
        """One page of a query answer; the rest waits behind ``nextRecordsUrl``."""
        page, rest = rows[: self.query_batch], rows[self.query_batch:]
        body: dict[str, Any] = {"totalSize": len(rows), "done": not rest, "records": page}
        if rest:
            locator = f"01gFAKE{next(self._seq)}-{len(page)}"
            with self._lock:
                self._cursors[locator] = rest
            body["nextRecordsUrl"] = f"{base}/query/{locator}"
        return body

    def _find(self, obj: str, rid: Any) -> dict | None:
        if not rid:
            return None
        if obj == "Name":  # polymorphic owner: a User or a Group (queue)
            user = self._find("User", rid)
            if user is not None:
                return {**user, "Type": "User"}
            group = self._find("Group", rid)
            return dict(group) if group is not None else None
        return next((r for r in self.data.get(obj, []) if r.get("Id") == rid), None)

    def _project(self, obj: str, row: Mapping[str, Any], fields: list[str], base: str) -> dict:
        """A row with only `fields` (relationship paths resolved), as the REST API shapes it."""
        out: dict[str, Any] = {"attributes": {"type": obj, "url": f"{base}/sobjects/{obj}/{row.get('Id')}"}}
        for path in fields:
            self._put(obj, row, path.split("."), out, base)
        return out

    def _put(self, obj: str, row: Mapping[str, Any], parts: list[str], out: dict, base: str) -> None:
        name = parts[0]
        visible = NAME_FIELDS_VISIBLE if obj == "Name" else self.fields_of(obj)
        if len(parts) == 1:
            if name not in visible:
                raise _SoqlError("INVALID_FIELD", NO_COLUMN.format(field=name, entity=obj))
            out[name] = row.get(name)
            return
        rel = RELATIONS.get(obj, {}).get(name)
        if rel is None or rel[0] not in visible:
            raise _SoqlError("INVALID_FIELD", NO_RELATION.format(name=name))
        id_field, target = rel
        related = self._find(target, row.get(id_field))
        if related is None:
            self._check_path(target, parts[1:])  # an unreadable field is refused even on a null lookup
            out[name] = None
            return
        if not isinstance(out.get(name), dict):
            out[name] = {"attributes": {"type": target, "url": f"{base}/sobjects/{'User' if related.get('Type', 'User') == 'User' else 'Group'}/{related.get('Id')}"}}
        self._put(target, related, parts[1:], out[name], base)

    def _check_path(self, obj: str, parts: list[str]) -> None:
        visible = NAME_FIELDS_VISIBLE if obj == "Name" else self.fields_of(obj)
        if len(parts) == 1:
            if parts[0] not in visible:
                raise _SoqlError("INVALID_FIELD", NO_COLUMN.format(field=parts[0], entity=obj))
            return
        rel = RELATIONS.get(obj, {}).get(parts[0])
        if rel is None or rel[0] not in visible:
            raise _SoqlError("INVALID_FIELD", NO_RELATION.format(name=parts[0]))
        self._check_path(rel[1], parts[1:])

    def _sosl(self, q: str, base: str) -> list[dict]:
        m = re.match(r"^FIND \{(?P<term>(?:[^}\\]|\\.)*)\} IN PHONE FIELDS RETURNING (?P<ret>.+)$", q.strip(), re.S)
        if not m:
            raise _SoqlError("MALFORMED_SEARCH", "unexpected token in search")
        words = [w for w in re.split(r"\s+OR\s+", m.group("term").strip()) if w]
        phrases: list[list[str]] = []
        for w in words:
            inner = w[1:-1] if len(w) > 2 and w[0] == w[-1] == '"' else w
            if not inner.strip() or any(ch in SOSL_RESERVED for ch in inner):
                raise _SoqlError("MALFORMED_SEARCH", "unexpected token in search query")
            if len(inner.strip()) < 2:
                raise _SoqlError("INVALID_SEARCH", "search term must be longer than one character")
            phrases.append(_tokens(inner))
        found: list[dict] = []
        for clause in _split_top(m.group("ret")):
            cm = re.match(r"^\s*(\w+)\s*\((.*)\)\s*$", clause, re.S)
            if not cm:
                raise _SoqlError("MALFORMED_SEARCH", "unexpected token in RETURNING")
            obj, inner = cm.groups()
            if obj not in PHONE_FIELDS:
                raise _SoqlError("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
            fields, where, order, limit = _parse_clause(inner)
            if where is not None and where[0] not in self.fields_of(obj):
                raise _SoqlError("INVALID_FIELD", NO_COLUMN.format(field=where[0], entity=obj))
            searched = self.phone_fields_of(obj)
            rows = [r for r in self.data.get(obj, []) if _matches(where, r)
                    and any(_contains(_tokens(r.get(f)), p) for f in searched for p in phrases)]
            rows = _order(rows, order)[:limit]
            for f in fields:  # refused even when nothing matched, as Salesforce compiles the query first
                self._check_path(obj, f.split("."))
            found.extend(self._project(obj, r, fields, base) for r in rows)
        return found

    def _soql(self, q: str, base: str) -> list[dict]:
        m = re.match(
            r"^SELECT (?P<fields>.+?) FROM (?P<obj>\w+) WHERE (?P<field>\w+) = (?:'(?P<val>(?:[^'\\]|\\.)*)'|(?P<bool>true|false))"
            r"(?: ORDER BY (?P<order>\w+(?: ASC| DESC)?))?(?: LIMIT (?P<limit>\d+))?$", q.strip())
        if not m:
            raise _SoqlError("MALFORMED_QUERY", "unexpected token")
        obj = m.group("obj")
        if obj not in FIELDS or obj == "Name":
            raise _SoqlError("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        if m.group("field") not in self.fields_of(obj):
            raise _SoqlError("INVALID_FIELD", NO_COLUMN.format(field=m.group("field"), entity=obj))
        fields = [f.strip() for f in m.group("fields").split(",")]
        for f in fields:
            self._check_path(obj, f.split("."))
        if m.group("bool"):
            want: Any = m.group("bool") == "true"
            rows = [r for r in self.data.get(obj, []) if bool(r.get(m.group("field"))) is want]
        else:
            value = re.sub(r"\\(.)", r"\1", m.group("val"))
            rows = [r for r in self.data.get(obj, []) if str(r.get(m.group("field"))) == value]
        rows = _order(rows, m.group("order"))[: int(m.group("limit") or 50000)]
        return [self._project(obj, r, fields, base) for r in rows]


def _tokens(value: Any) -> list[str]:
    """How the search index splits a stored value: on spaces and punctuation (digits only here)."""
    return re.findall(r"\d+", str(value or ""))


def _contains(tokens: list[str], phrase: list[str]) -> bool:
    """Whether `phrase` (one word or several) occurs as consecutive tokens."""
    n = len(phrase)
    return n > 0 and any(tokens[i:i + n] == phrase for i in range(len(tokens) - n + 1))


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def _parse_clause(inner: str) -> tuple[list[str], tuple[str, Any] | None, str | None, int]:
    m = re.match(r"^(?P<fields>.*?)(?:\s+WHERE\s+(?P<wf>\w+)\s*=\s*(?P<wv>\S+))?(?:\s+ORDER BY\s+(?P<order>\w+(?:\s+(?:ASC|DESC))?))?(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", inner.strip(), re.S)
    if not m:
        raise _SoqlError("MALFORMED_SEARCH", "unexpected token in RETURNING clause")
    fields = [f.strip() for f in m.group("fields").split(",") if f.strip()]
    where = None
    if m.group("wf"):
        raw = m.group("wv")
        value: Any = {"true": True, "false": False, "null": None}.get(raw.lower(), raw.strip("'"))
        where = (m.group("wf"), value)
    return fields, where, m.group("order"), int(m.group("limit") or 2000)


def _matches(where: tuple[str, Any] | None, row: Mapping[str, Any]) -> bool:
    return where is None or row.get(where[0], False if isinstance(where[1], bool) else None) == where[1]


def _order(rows: list[dict], order: str | None) -> list[dict]:
    if not order:
        return rows
    name, _, direction = order.partition(" ")
    return sorted(rows, key=lambda r: str(r.get(name) or ""), reverse=direction.strip().upper() == "DESC")


if __name__ == "__main__":  # pragma: no cover - manual use
    fake = FakeSalesforce(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(f"fake Salesforce at {fake.url} client_id={fake.client_id} client_secret={fake.client_secret} "
          f"refresh_token={fake.refresh_token}", flush=True)
    fake.serve_until_interrupted()
