"""A local fake of Zoho's accounts server and CRM API for end-to-end tests: real HTTP on 127.0.0.1.

Serves, from an in-memory dataset, what the `zoho` connector uses, with the payload shapes of
Zoho's docs (see the vendor documentation cited in docs/crm/):

- ``POST /oauth/v2/token``: refresh_token grant, parameters in the form body or the query
  string (Zoho accepts both). Answers ``{access_token, api_domain, token_type, expires_in,
  scope}``; errors are HTTP 200 with ``{"error": "invalid_client" | "invalid_code"}``. The token
  limits Zoho documents (docs/crm/zoho.md, "Token limits"): at most `active_token_cap` (10) live
  access tokens per refresh token, the next mint silently invalidates the oldest (a request with
  it: 401 INVALID_TOKEN); more than 10 mints in 10 minutes answers Zoho's throttle, HTTP 200
  ``{"error": "Access Denied", "error_description": "You have made too many requests
  continuously...", "status": "failure"}``, until that window has passed.
- ``GET /crm/{version}/{Module}/search`` with ``phone=`` (every phone-type field, digits
  *contained*, like Zoho's index), ``email=``, ``word=`` or ``criteria=`` (``(Field:equals|
  starts_with:value)`` joined by ``and``/``or``; ``equals`` behaves like *contains*, as Zoho
  documents for search); ``page``, ``per_page``, ``converted`` (Leads: non-converted by default).
  No match: 204 with an empty body.
- ``GET /crm/{version}/{Module}/{id}``, ``GET /crm/{version}/users/{id}``,
  ``GET /crm/{version}/users?type=CurrentUser|AllUsers|ActiveUsers|DeactiveUsers`` (paged:
  ``page``, ``per_page`` up to 200, ``info.more_records``), ``GET /crm/{version}/settings/roles``,
  ``GET /crm/{version}/settings/fields?module=`` (``{fields: [{api_name, data_type, ...}]}``).
- Phone fields may hold several numbers ("080 2345 6789, 98111 22244"): ``phone=`` matches each.
- Scopes: the refresh token carries `scopes`; a call whose scope it lacks answers 401
  ``OAUTH_SCOPE_MISMATCH`` with Zoho's body, which names no scope.

Access tokens are checked (``Authorization: Zoho-oauthtoken <token>``; issued tokens expire).
Errors use Zoho's body ``{"code", "details", "message", "status": "error"}``: 401
INVALID_TOKEN, 400 INVALID_MODULE, 404 INVALID_URL_PATTERN. Every request is recorded in
`requests` (path %-decoded); `inject` queues canned answers (429 TOO_MANY_REQUESTS, 500,
HTML...) for requests whose method and path match ``method=``/``path=`` (fnmatch patterns). The
server, recording and injection are `fake_crm.FakeCrmServer`'s. Used as::

    with FakeZoho(**sample_data()) as zoho:
        ... accounts_url=zoho.url, api_url=zoho.url ...
        assert zoho.calls("GET", "/crm/v8/Contacts/search") == 1

Run ``python tests/integrations/fake_zoho.py`` to serve the sample data by hand.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import re
import secrets
import time
from collections import deque
from typing import Any, Iterable, Mapping

from fake_crm import FakeCrmServer, RecordedRequest, Response  # noqa: E402

__all__ = ["FakeZoho", "RecordedRequest", "sample_data", "CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN"]

CLIENT_ID = "1000.FAKE0CLIENT0ID0ZOHO0DIALWHOM"
CLIENT_SECRET = "fake-client-secret-0123456789abcdef"
REFRESH_TOKEN = "1000.fakerefresh0123456789.abcdef0123456789"
SCOPE = ("ZohoCRM.modules.contacts.READ ZohoCRM.modules.leads.READ ZohoCRM.modules.accounts.READ "
         "ZohoSearch.securesearch.READ ZohoCRM.users.READ")
MODULES = ("Contacts", "Leads", "Accounts", "Deals")
PHONE_FIELDS = {
    "Contacts": ("Phone", "Mobile", "Home_Phone", "Other_Phone", "Asst_Phone"),
    "Leads": ("Phone", "Mobile"),
    "Accounts": ("Phone",),
    "Deals": (),
}
EMAIL_FIELDS = ("Email", "Secondary_Email")
MINT_LIMIT, MINT_WINDOW_S = 10, 600.0
#: live access tokens per refresh token (Zoho: the 11th mint drops the oldest; docs/crm/zoho.md)
ACTIVE_TOKEN_CAP = 10
_SEVERAL = re.compile(r"\s*(?:[,;/|]|\bor\b)\s*", re.I)


def sample_data() -> dict[str, Any]:
    """A small Indian org: three users in two roles, contacts, a lead and an account."""
    raj = {"name": "Raj Iyer", "id": "5725767000000185005", "email": "raj@acme.example"}
    meera = {"name": "Meera Rao", "id": "5725767000000185011", "email": "meera@acme.example"}
    priya = {"name": "Priya Nair", "id": "5725767000000185017", "email": "priya@acme.example"}
    kiran = {"name": "Kiran Shah", "id": "5725767000000185023", "email": "kiran@acme.example"}  # left the company
    return {
        "roles": [
            {"id": "5725767000000026005", "name": "CEO", "reporting_to": None},
            {"id": "5725767000000231001", "name": "Sales Manager", "reporting_to": {"id": "5725767000000026005", "name": "CEO"}},
            {"id": "5725767000000231007", "name": "Sales Rep - South", "reporting_to": {"id": "5725767000000231001", "name": "Sales Manager"}},
        ],
        "users": [
            {**_user(raj, "+91 80 4000 0001", "+91 98450 00001", "Sales Rep - South", "5725767000000231007"),
             "Reporting_To": {"name": meera["name"], "id": meera["id"]}},
            _user(meera, "+91 80 4000 0002", "+91 98450 00002", "Sales Manager", "5725767000000231001"),
            {**_user(priya, None, "098450 00003", "Sales Rep - South", "5725767000000231007"),
             "Reporting_To": {"name": meera["name"], "id": meera["id"]}},
            {**_user(kiran, None, "098450 00004", "Sales Rep - South", "5725767000000231007"), "status": "inactive"},
        ],
        "current_user": raj["id"],
        "records": {
            "Contacts": [
                {"id": "5725767000000411001", "Full_Name": "Ana Ruiz", "First_Name": "Ana", "Last_Name": "Ruiz",
                 "Email": "ana@customer.example", "Phone": "+91 98765 43210", "Mobile": None, "Home_Phone": None,
                 "Owner": raj, "Account_Name": {"name": "Acme Traders", "id": "5725767000000402001"},
                 "Modified_Time": "2025-06-01T13:00:00+05:30", "Created_Time": "2025-01-10T10:00:00+05:30"},
                {"id": "5725767000000411007", "Full_Name": "Ravi Kumar", "First_Name": "Ravi", "Last_Name": "Kumar",
                 "Email": "ravi@customer.example", "Phone": None, "Mobile": "099887 76655",
                 "Owner": priya, "Account_Name": None,
                 "Modified_Time": "2025-05-01T09:30:00+05:30", "Created_Time": "2025-02-01T10:00:00+05:30"},
                {"id": "5725767000000411013", "Full_Name": "Vikram Rao", "First_Name": "Vikram", "Last_Name": "Rao",
                 "Email": "vikram@customer.example", "Phone": "080 2345 6789, 98111 22244", "Mobile": None,
                 "Owner": raj, "Account_Name": None,
                 "Modified_Time": "2025-05-02T09:30:00+05:30", "Created_Time": "2025-02-02T10:00:00+05:30"},
                {"id": "5725767000000411019", "Full_Name": "Divya Menon", "First_Name": "Divya", "Last_Name": "Menon",
                 "Email": "divya@customer.example", "Phone": None, "Mobile": "+91 99000 11122",
                 "Owner": kiran, "Account_Name": None,
                 "Modified_Time": "2025-05-03T09:30:00+05:30", "Created_Time": "2025-02-03T10:00:00+05:30"},
            ],
            "Leads": [
                {"id": "5725767000000512003", "Full_Name": "Sunita Das", "Last_Name": "Das", "Company": "Das Exports",
                 "Phone": "080-2222-3333", "Mobile": "+91-91234-56789", "Owner": priya, "$converted": False,
                 "Modified_Time": "2025-06-10T11:00:00+05:30", "Created_Time": "2025-06-01T10:00:00+05:30"},
            ],
            "Accounts": [
                {"id": "5725767000000402001", "Account_Name": "Acme Traders", "Account_Number": "ACC-1001",
                 "Phone": "+91 80 4000 1000", "Owner": meera,
                 "Modified_Time": "2025-04-01T08:00:00+05:30", "Created_Time": "2024-12-01T10:00:00+05:30"},
            ],
        },
    }


def _user(ref: Mapping[str, str], phone: str | None, mobile: str | None, role: str, role_id: str) -> dict:
    first, last = ref["name"].split(" ", 1)
    return {
        "id": ref["id"], "full_name": ref["name"], "first_name": first, "last_name": last, "email": ref["email"],
        "phone": phone, "mobile": mobile, "role": {"name": role, "id": role_id},
        "profile": {"name": "Standard", "id": "5725767000000026014"}, "status": "active",
        "zuid": str(60000000 + int(ref["id"][-3:])), "confirm": True, "time_zone": "Asia/Kolkata",
        "Modified_Time": "2025-01-01T10:00:00+05:30",
    }


class FakeZoho(FakeCrmServer):
    """The fake accounts server + CRM API; `start()`/`stop()` or use it as a context manager."""

    thread_name = "fake-zoho"
    unquote_path = True

    def __init__(
        self,
        *,
        records: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        users: Iterable[Mapping[str, Any]] = (),
        roles: Iterable[Mapping[str, Any]] = (),
        current_user: str | None = None,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        refresh_token: str = REFRESH_TOKEN,
        access_token_ttl: int = 3600,
        api_domain: str | None = None,
        credits_remaining: int | None = None,
        scopes: str = SCOPE + " ZohoCRM.settings.fields.READ",
        active_token_cap: int = ACTIVE_TOKEN_CAP,
    ):
        super().__init__()
        self.records: dict[str, list[dict]] = {m: [] for m in MODULES}
        for module, items in (records or {}).items():
            self.records.setdefault(module, [])
            for rec in items:
                self.records[module].append(copy.deepcopy(dict(rec)))
        self.users = {str(u["id"]): copy.deepcopy(dict(u)) for u in users}
        self.roles = [copy.deepcopy(dict(r)) for r in roles]
        self.current_user = current_user
        self.client = (client_id, client_secret, refresh_token)
        self.access_token_ttl = access_token_ttl
        self._api_domain = api_domain
        self.credits_remaining = credits_remaining
        self.mints: deque[float] = deque()
        self.scopes = scopes
        self.active_token_cap = active_token_cap
        self.active: deque[str] = deque()  # live access tokens, oldest first
        self.evicted: list[str] = []

    def _listen(self, host: str, port: int) -> None:
        super()._listen(host, port)
        assert self._server is not None
        self._server.socket.listen(128)  # many connectors connecting at once: no SYN dropped (a 1 s retransmit)
        # Headers and body in one write: two small writes meet Nagle and delayed ACK (40 ms a request).
        self._server.RequestHandlerClass.wbufsize = 64 * 1024

    # -- control ------------------------------------------------------------------------------

    def _path_matches(self, pattern: str, path: str) -> bool:
        """`inject(path=...)` is an fnmatch pattern here ("/crm/*/Contacts/search")."""
        return fnmatch.fnmatchcase(path, pattern)

    @property
    def api_domain(self) -> str:
        return self._api_domain or self.url

    def connector_options(self) -> dict[str, Any]:
        """The `zoho` connector keys that point at this fake."""
        cid, secret, refresh = self.client
        return {"client_id": cid, "client_secret": secret, "refresh_token": refresh,
                "accounts_url": self.url, "api_url": self.url}

    # -- HTTP ---------------------------------------------------------------------------------

    def _route(self, r: RecordedRequest) -> Response:
        try:
            return self._answer(r)
        except Exception as exc:  # a bug in the fake must show up as a 500, not a hang
            return 500, _error("INTERNAL_ERROR", f"fake_zoho: {type(exc).__name__}: {exc}"), {}

    def _answer(self, r: RecordedRequest) -> Response:
        if r.path == "/oauth/v2/token":
            return (200, *self._token(r)) if r.method == "POST" else (405, {"error": "invalid_request"}, {})
        m = re.match(r"^/crm/(v[0-9]+(?:\.[0-9])?)/(.+)$", r.path)
        if not m or r.method != "GET":
            return 404, _error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"), {}
        denied = self._authenticate(r)
        if denied is not None:
            return denied
        rate = self._rate_headers()
        rest = m.group(2).strip("/").split("/")
        needed = _scope_needed(rest)
        if not _granted(self.scopes, needed):
            return 401, _error("OAUTH_SCOPE_MISMATCH", "Unauthorized"), {}
        if rest == ["settings", "fields"]:
            return self._fields(r.arg("module") or "", rate)
        if rest == ["users"]:
            return self._users(r, rate)
        if len(rest) == 2 and rest[0] == "users":
            user = self.users.get(rest[1])
            return (200, {"users": [copy.deepcopy(user)]}, rate) if user else (204, None, rate)
        if rest == ["settings", "roles"]:
            return 200, {"roles": copy.deepcopy(self.roles)}, rate
        module = rest[0]
        if module not in self.records:
            return 400, _error("INVALID_MODULE", "the module name given seems to be invalid", resource_path_index=0), rate
        if rest[1:] == ["search"]:
            return self._search(module, r, rate)
        if len(rest) == 2 and rest[1].isdigit():
            rec = next((x for x in self.records[module] if x.get("id") == rest[1]), None)
            if rec is None:
                return 204, None, rate
            fields = (r.arg("fields") or "").split(",") if r.arg("fields") else None
            return 200, {"data": [_shape(rec, fields)]}, rate
        return 404, _error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"), rate

    def _token(self, r: RecordedRequest) -> tuple[Any, dict[str, str]]:
        cid, secret, refresh = self.client
        if r.arg("grant_type") != "refresh_token":
            return {"error": "unsupported_grant_type"}, {}
        if r.arg("client_id") != cid or r.arg("client_secret") != secret:
            return {"error": "invalid_client"}, {}
        if r.arg("refresh_token") != refresh:
            return {"error": "invalid_code"}, {}
        now = time.monotonic()
        with self._lock:
            while self.mints and now - self.mints[0] >= MINT_WINDOW_S:
                self.mints.popleft()
            if len(self.mints) >= MINT_LIMIT:
                return {"error_description": "You have made too many requests continuously. Please try again after some time.",
                        "error": "Access Denied", "status": "failure"}, {}
            self.mints.append(now)
        token = f"1000.{secrets.token_hex(16)}.{next(self._seq):04d}{secrets.token_hex(14)}"
        self._issue_token(token, self.access_token_ttl)
        with self._lock:
            self.active = deque(t for t in self.active if self.tokens.get(t, 0) > now)
            self.active.append(token)
            while len(self.active) > self.active_token_cap:
                oldest = self.active.popleft()  # Zoho drops it without a word
                self.tokens.pop(oldest, None)
                self.evicted.append(oldest)
        return {"access_token": token, "scope": self.scopes, "api_domain": self.api_domain,
                "token_type": "Bearer", "expires_in": self.access_token_ttl}, {}

    def _authenticate(self, r: RecordedRequest) -> Response | None:
        header = r.headers.get("Authorization") or r.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme != "Zoho-oauthtoken" or not token:
            return 401, _error("AUTHENTICATION_FAILURE", "Authentication failed"), {}
        if not self._token_valid(token):
            return 401, _error("INVALID_TOKEN", "invalid oauth token"), {}
        return None

    def _rate_headers(self) -> dict[str, str]:
        # Zoho sends the credits header only once half of the day's credits are spent.
        if self.credits_remaining is None:
            return {}
        with self._lock:
            self.credits_remaining = max(0, self.credits_remaining - 1)
            return {"X-API-CREDITS-REMAINING": str(self.credits_remaining)}

    def _users(self, r: RecordedRequest, rate: dict[str, str]) -> Response:
        kind = r.arg("type") or "AllUsers"
        if kind == "CurrentUser":
            found = [self.users[self.current_user]] if self.current_user in self.users else []
        elif kind in ("ActiveUsers", "AllActiveUsers"):
            found = [u for u in self.users.values() if u.get("status") == "active"]
        elif kind == "DeactiveUsers":
            found = [u for u in self.users.values() if u.get("status") == "inactive"]
        else:
            found = list(self.users.values())
        page = max(1, int(r.arg("page") or 1))
        per_page = min(200, max(1, int(r.arg("per_page") or 200)))
        chunk = found[(page - 1) * per_page: page * per_page]
        if not chunk:
            return 204, None, rate
        return 200, {"users": copy.deepcopy(chunk),
                     "info": {"per_page": per_page, "count": len(chunk), "page": page,
                              "more_records": page * per_page < len(found)}}, rate

    def _fields(self, module: str, rate: dict[str, str]) -> Response:
        if module not in self.records:
            return 400, _error("INVALID_MODULE", "the module name given seems to be invalid", param_name="module"), rate
        phones = set(PHONE_FIELDS.get(module, ()))
        names = dict.fromkeys(["Owner", *phones, *(k for rec in self.records[module] for k in rec if not k.startswith("$"))])
        names.pop("id", None)
        fields = [{"api_name": n, "field_label": n.replace("_", " "), "id": str(6000 + i),
                   "data_type": "phone" if n in phones else "ownerlookup" if n == "Owner" else "text",
                   "visible": True, "read_only": False} for i, n in enumerate(names)]
        return 200, {"fields": fields}, rate

    def _search(self, module: str, r: RecordedRequest, rate: dict[str, str]) -> Response:
        criteria, email, phone, word = (r.arg(k) for k in ("criteria", "email", "phone", "word"))
        # Zoho's precedence when several are given: criteria, email, phone, word.
        if criteria:
            match = _criteria(criteria)
            if match is None:
                return 400, _error("INVALID_QUERY", "invalid query formed", api_name="criteria"), rate
        elif email:
            match = lambda rec: any(str(rec.get(f) or "").lower() == email.lower() for f in EMAIL_FIELDS)  # noqa: E731
        elif phone:
            digits = "".join(ch for ch in phone if ch.isdigit())
            if len(digits) < 2 or not re.fullmatch(r"[0-9+\-() ]+", phone):
                return 400, _error("INVALID_DATA", "The search value contains special characters or does not contain at least two characters"), rate
            fields = PHONE_FIELDS.get(module, ("Phone",))
            # Each number of a field is indexed on its own ("080 2345 6789, 98111 22244").
            match = lambda rec: any(digits in "".join(ch for ch in part if ch.isdigit())  # noqa: E731
                                    for f in fields if rec.get(f) for part in _SEVERAL.split(str(rec.get(f))))
        elif word:
            match = lambda rec: any(word.lower() in str(v).lower() for v in rec.values() if isinstance(v, str))  # noqa: E731
        else:
            return 400, _error("EXPECTED_PARAM_MISSING", "mandatory param missing", param="criteria/email/phone/word"), rate
        converted = (r.arg("converted") or "false").lower()
        found = []
        for rec in self.records[module]:
            if module == "Leads" and converted != "both" and bool(rec.get("$converted")) != (converted == "true"):
                continue
            if match(rec):
                found.append(rec)
        if not found:
            return 204, None, rate
        found.sort(key=lambda x: x.get("id") or "", reverse=True)  # Zoho: sort_by id, desc
        page = max(1, int(r.arg("page") or 1))
        per_page = min(200, max(1, int(r.arg("per_page") or 200)))
        chunk = found[(page - 1) * per_page: page * per_page]
        fields = (r.arg("fields") or "").split(",") if r.arg("fields") else None
        return 200, {"data": [_shape(x, fields) for x in chunk],
                     "info": {"per_page": per_page, "count": len(chunk), "page": page,
                              "more_records": page * per_page < len(found)}}, rate


def _shape(rec: Mapping[str, Any], fields: list[str] | None) -> dict:
    if not fields:
        return copy.deepcopy(dict(rec))
    return {k: copy.deepcopy(rec.get(k)) for k in ["id", *fields]}


def _criteria(text: str):
    """A predicate for ``(F:op:v)`` conditions joined by and/or (left to right), or None if malformed."""
    tokens = re.findall(r"\((?:[^()\\]|\\.)+\)|and|or|\(|\)", text.replace(" ", ""))
    conds, joins = [], []
    for tok in tokens:
        if tok in ("and", "or"):
            joins.append(tok)
        elif tok not in ("(", ")"):
            m = re.fullmatch(r"\(([A-Za-z][A-Za-z0-9_]*):(equals|starts_with|not_equal):((?:[^()\\]|\\.)+)\)", tok)
            if not m:
                return None
            conds.append((m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))))
    if not conds or len(joins) != len(conds) - 1 or len(conds) > 10:
        return None

    def test(rec: Mapping[str, Any], cond: tuple[str, str, str]) -> bool:
        name, op, value = cond
        raw = rec.get(name)
        stored = str(raw.get("name") if isinstance(raw, dict) else raw or "").lower()
        if op == "equals":
            return value.lower() in stored  # Zoho documents "equals" in search as "contains"
        if op == "starts_with":
            return stored.startswith(value.lower())
        return value.lower() != stored

    def match(rec: Mapping[str, Any]) -> bool:
        result = test(rec, conds[0])
        for join, cond in zip(joins, conds[1:]):
            result = (result and test(rec, cond)) if join == "and" else (result or test(rec, cond))
        return result

    return match


def _scope_needed(rest: list[str]) -> str:
    """The scope a CRM path needs, as Zoho's scope list names it."""
    if rest[0] == "users":
        return "ZohoCRM.users.READ"
    if rest[0] == "settings":
        return f"ZohoCRM.settings.{rest[1] if len(rest) > 1 else 'ALL'}.READ"
    module = f"ZohoCRM.modules.{rest[0].lower()}.READ"
    return f"{module} ZohoSearch.securesearch.READ" if rest[1:] == ["search"] else module


def _granted(scopes: str, needed: str) -> bool:
    """Whether the granted scopes cover each needed one (``ZohoCRM.modules.ALL`` covers ``...contacts.READ``)."""
    have = {s.lower() for s in re.split(r"[\s,]+", scopes) if s}
    for need in needed.lower().split():
        parts = need.split(".")
        ok = {need, ".".join(parts[:-1] + ["all"])}
        if len(parts) == 4:
            ok |= {".".join(parts[:2] + ["all"]), ".".join(parts[:2] + [parts[3]])}
        if not ok & have:
            return False
    return True


def _error(code: str, message: str, **details: Any) -> dict:
    return {"code": code, "details": details, "message": message, "status": "error"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Zoho CRM (accounts + API) with sample data.")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    fake = FakeZoho(**sample_data()).start(args.port)
    print(f"fake Zoho at {fake.url}: accounts_url and api_url; client_id={CLIENT_ID}", flush=True)
    fake.serve_until_interrupted()


if __name__ == "__main__":
    main()
