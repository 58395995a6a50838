"""Salesforce connector; API reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/

One uncached phone lookup is one SOSL call (``GET {instance_url}/services/data/vNN.N/search/?q=FIND
{digits OR ...} IN PHONE FIELDS RETURNING Contact(...), Lead(...), Account(...)``) whose
relationship fields (``Owner.*``, ``Account.Owner.*``) carry the owner in the same answer. A
second call, a SOQL query on ``User``, is made only for an owner not seen within
``user_cache_ttl_s`` when the team (``team_field``) or a phone is wanted from it. The OAuth
token (client credentials or refresh token) is fetched once and reused until it expires or a 401
says the session died. Admin guide: docs/crm/salesforce.md.
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit

import phonenumbers

from dialwhom.sdk import (
    AuthError,
    BadResponse,
    CachedToken,
    Candidate,
    ConfigError,
    Connector,
    ConnectorContext,
    ConnectorError,
    Deadline,
    Field,
    HttpClient,
    Match,
    Owner,
    Query,
    RateLimited,
    Record,
    Response,
    TTLMemo,
    digits_only,
    error_code,
    mask,
    scrub,
    pick_record,
    same_number,
    to_e164,
)

__all__ = ["SalesforceConnector", "search_terms", "build_sosl", "soql_literal"]

OBJECTS = ("Contact", "Lead", "Account")
TEAM_FIELDS = ("UserRole.Name", "Department", "Division", "none")
#: login hosts that refuse the client-credentials flow (it needs the org's My Domain)
GENERIC_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
#: rows per object in one search; ordered by LastModifiedDate so the tie-break sees the newest
PER_OBJECT_LIMIT = 5
MIN_TERM_DIGITS = 6

#: phone fields returned (and re-checked client-side) per object
PHONE_FIELDS = {
    "Contact": ("Phone", "MobilePhone", "HomePhone", "OtherPhone", "AssistantPhone"),
    "Lead": ("Phone", "MobilePhone"),
    "Account": ("Phone",),
}
_USER_OWNER = ("OwnerId", "Owner.Name", "Owner.Email", "Owner.Phone", "Owner.MobilePhone", "Owner.IsActive")
#: Lead.Owner is polymorphic (User or Queue): it resolves to the `Name` object, which has
#: Phone, Email, Type and IsActive but no MobilePhone.
_LEAD_OWNER = ("OwnerId", "Owner.Name", "Owner.Email", "Owner.Phone", "Owner.Type", "Owner.IsActive")
_ACCOUNT_OWNER = (
    "AccountId", "Account.Name", "Account.OwnerId", "Account.Owner.Name", "Account.Owner.Email",
    "Account.Owner.Phone", "Account.Owner.MobilePhone", "Account.Owner.IsActive",
)
RETURNING_FIELDS = {
    "Contact": ("Id", "Name", *PHONE_FIELDS["Contact"], *_USER_OWNER, *_ACCOUNT_OWNER, "LastModifiedDate"),
    "Lead": ("Id", "Name", "Company", *PHONE_FIELDS["Lead"], *_LEAD_OWNER, "LastModifiedDate"),
    "Account": ("Id", "Name", *PHONE_FIELDS["Account"], *_USER_OWNER, "LastModifiedDate"),
}
RETURNING_FILTER = {"Lead": "WHERE IsConverted = false "}
USER_FIELDS = "Id, Name, Email, Phone, MobilePhone, IsActive, Department, Division, UserRole.Name"

_VERSION = re.compile(r"^v?(\d{2,3})\.0$")
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_SF_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
#: account values allowed into SOQL: nothing with quote, backslash or wildcard meaning
_ACCOUNT_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,79}$")
#: token-endpoint errors that mean "these credentials or this app setup are refused"
OAUTH_REFUSALS = {
    "invalid_grant", "invalid_client", "invalid_client_id", "invalid_client_credentials",
    "unauthorized_client", "unsupported_grant_type", "invalid_scope", "inactive_user", "inactive_org",
    "invalid_app_access",
}


def search_terms(value: str, region: str = "IN") -> list[str]:
    """The digit-only forms of a caller's number to put inside SOSL ``FIND {...}``.

    Only ASCII digits survive, so no SOSL reserved character or operator from the input can
    reach the query. Forms: national significant number, country code + national, and the
    national number with a trunk ``0``; each at least 6 digits.

        >>> search_terms("+919876543210")
        ['9876543210', '919876543210', '09876543210']
        >>> search_terms("+91} OR {x") == []
        True
    """
    e164 = to_e164(value, region)
    if e164 is None:
        return []
    try:
        n = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return []
    national = digits_only(phonenumbers.national_significant_number(n))
    forms = (national, digits_only(e164), "0" + national)
    out: list[str] = []
    for form in forms:
        if len(form) >= MIN_TERM_DIGITS and form not in out:
            out.append(form)
    return out


def build_sosl(terms: list[str], objects: tuple[str, ...] | list[str]) -> str:
    """The SOSL for one phone search; `terms` must be digit strings (see `search_terms`)."""
    if not terms or any(not t.isascii() or not t.isdigit() for t in terms):
        raise ValueError("SOSL search terms must be non-empty ASCII digit strings")
    clauses = []
    for obj in objects:
        fields = ", ".join(RETURNING_FIELDS[obj])
        clauses.append(f"{obj}({fields} {RETURNING_FILTER.get(obj, '')}ORDER BY LastModifiedDate DESC LIMIT {PER_OBJECT_LIMIT})")
    return f"FIND {{{' OR '.join(terms)}}} IN PHONE FIELDS RETURNING {', '.join(clauses)}"


def soql_literal(value: str) -> str:
    """A SOQL string literal for an already validated value (escapes ``\\`` and ``'`` anyway)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"



def _json(resp: Response, connector: str) -> Any:
    """`resp.json()` whose error names no query string: the SOSL in it holds the caller's digits."""
    try:
        return resp.json()
    except BadResponse as exc:
        text = str(exc).replace(resp.url, resp.url.split("?", 1)[0])
        raise BadResponse(f"{connector}: {scrub(text)}", connector=connector, status=resp.status) from None


def _error_codes(resp: Response) -> list[tuple[str, str]]:
    """``[(errorCode, message)]`` from Salesforce's JSON-array error body; [] if not that shape."""
    try:
        body = resp.json()
    except BadResponse:
        return []
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        return []
    return [
        (str(e.get("errorCode") or ""), str(e.get("message") or ""))
        for e in body
        if isinstance(e, dict) and e.get("errorCode")
    ]


def _get(record: Mapping[str, Any] | None, path: str) -> Any:
    """A dotted relationship path (``Account.Owner.Name``) from a search/query row."""
    cur: Any = record
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


class SalesforceConnector(Connector):
    """Finds the caller's Contact, Lead or Account with one SOSL search and returns its owner."""

    type_name = "salesforce"
    config_schema = (
        Field("login_url", str, default="https://login.salesforce.com",
              help="OAuth host: https://login.salesforce.com, https://test.salesforce.com (sandbox) or your My Domain https://<name>.my.salesforce.com"),
        Field("auth", str, required=True, choices=("client_credentials", "refresh_token"),
              help="OAuth flow: client_credentials (needs the My Domain login_url) or refresh_token"),
        Field("client_id", str, required=True, help="the connected app's consumer key"),
        Field("client_secret", str, secret=True, help="the connected app's consumer secret (required for client_credentials)"),
        Field("refresh_token", str, secret=True, help="refresh token from a one-time consent (auth: refresh_token)"),
        Field("api_version", str, default="v62.0", help="REST API version, e.g. v62.0 (37.0 or later)"),
        Field("objects", list, default=["Contact", "Lead", "Account"],
              help="objects searched, in tie-break priority order (Contact, Lead, Account)"),
        Field("owner_preference", str, default="record", choices=("record", "account"),
              help="record: the matched record's owner; account: a Contact's Account owner when it has one"),
        Field("queue_owner", str, default="team", choices=("team", "skip"),
              help="Leads owned by a queue: team = answer with the queue's team (queue_teams) or none; skip = ignore such Leads"),
        Field("queue_teams", dict, default=None, help="queue name or id -> team name, for queue-owned Leads"),
        Field("team_field", str, default="UserRole.Name", choices=TEAM_FIELDS,
              help="User field reported as the owner's team (one cached User query per owner); none to skip"),
        Field("account_field", str, default="AccountNumber",
              help="text field of Account matched for account lookups (CustomField / digits)"),
        Field("user_cache_ttl_s", float, default=3600.0, min=60, max=86400,
              help="how long owner details from User are reused"),
        Field("token_ttl_s", float, default=3600.0, min=60, max=86400,
              help="how long an access token is reused (Salesforce does not say; a 401 refreshes earlier)"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        self.login_url = self._check_login_url(o["login_url"], o["auth"])
        self.auth_flow: str = o["auth"]
        if self.auth_flow == "client_credentials" and not o.get("client_secret"):
            raise ConfigError("client_secret", "required for auth: client_credentials (set it from an environment variable: client_secret: ${SALESFORCE_CLIENT_SECRET})")
        if self.auth_flow == "refresh_token" and not o.get("refresh_token"):
            raise ConfigError("refresh_token", "required for auth: refresh_token (set it from an environment variable: refresh_token: ${SALESFORCE_REFRESH_TOKEN})")
        m = _VERSION.match(str(o["api_version"]).strip())
        if not m or int(m.group(1)) < 37:
            raise ConfigError("api_version", f"{o['api_version']!r} is not a usable API version; write it like v62.0 (37.0 or later)")
        self.api_version = f"v{m.group(1)}.0"
        objects = list(o["objects"] or [])
        bad = [x for x in objects if x not in OBJECTS]
        if not objects or bad or len(set(objects)) != len(objects):
            raise ConfigError("objects", f"list some of {', '.join(OBJECTS)}, each once, in priority order (got {objects!r})")
        self.objects: tuple[str, ...] = tuple(objects)
        queue_teams = o.get("queue_teams") or {}
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in queue_teams.items()):
            raise ConfigError("queue_teams", "map each queue name or id to a team name (text)")
        self.queue_teams = {k.lower(): v for k, v in queue_teams.items()}
        if not _API_NAME.match(o["account_field"]):
            raise ConfigError("account_field", f"{o['account_field']!r} is not a Salesforce field API name (e.g. AccountNumber, Customer_Id__c)")
        self.account_field: str = o["account_field"]
        self.team_field: str = o["team_field"]
        self._refresh_token = str(o["refresh_token"]) if o.get("refresh_token") else None
        self._instance_url: str | None = None
        self._identity: str | None = None
        self.token = CachedToken(self._fetch_token, default_ttl_s=float(o["token_ttl_s"]))
        self.users: TTLMemo[dict] = TTLMemo(maxsize=2048, ttl_s=float(o["user_cache_ttl_s"]))

    @staticmethod
    def _check_login_url(value: str, flow: str) -> str:
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local) or not parts.hostname or parts.path or parts.query:
            raise ConfigError("login_url", f"{value!r} is not a Salesforce login URL; use https://login.salesforce.com, https://test.salesforce.com or https://<MyDomain>.my.salesforce.com")
        if flow == "client_credentials" and parts.hostname in GENERIC_LOGIN_HOSTS:
            raise ConfigError("login_url", f"auth: client_credentials is refused by {parts.hostname}; use your org's My Domain login URL, e.g. https://acme.my.salesforce.com (sandbox: https://acme--uat.sandbox.my.salesforce.com)")
        return url

    def make_http(self) -> HttpClient:
        return HttpClient(
            self.id, timeout_s=self.context.timeout_s, retries=self.context.retries,
            token_provider=self.token, classify=self._classify, refreshable=self._refreshable,
        )

    # -- auth -----------------------------------------------------------------------------------

    def _fetch_token(self, deadline: Deadline) -> tuple[str, float | None]:
        """POST the token endpoint (form-encoded); remember `instance_url` for data calls."""
        form = {"grant_type": self.auth_flow, "client_id": str(self.options["client_id"])}
        if self.options.get("client_secret"):
            form["client_secret"] = str(self.options["client_secret"])
        if self.auth_flow == "refresh_token":
            form["refresh_token"] = self._refresh_token or ""
        resp = self.http.request(
            "POST", f"{self.login_url}/services/oauth2/token", deadline=deadline, data=form,
            auth=False, ok=(200, 400, 401, 403),
        )
        if resp.status != 200:
            try:
                body = resp.json()
            except BadResponse:
                body = {}
            body = body if isinstance(body, dict) else {}
            err = error_code(body.get("error") or f"HTTP_{resp.status}")
            desc = error_code(body.get("error_description")) if body.get("error_description") else ""
            message = f"{self.id}: Salesforce refused the {self.auth_flow} token request: {err}: {desc}".rstrip(": ")
            if resp.status in (401, 403) or err in OAUTH_REFUSALS:
                raise AuthError(message, connector=self.id, status=resp.status)
            raise BadResponse(message, connector=self.id, status=resp.status)
        body = _json(resp, self.id)
        token = body.get("access_token") if isinstance(body, dict) else None
        instance = body.get("instance_url") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(instance, str):
            raise BadResponse(f"{self.id}: token answer lacks access_token/instance_url", connector=self.id)
        parts = urlsplit(instance)
        login_scheme = urlsplit(self.login_url).scheme
        if parts.scheme not in ("https", login_scheme) or not parts.hostname:
            raise BadResponse(f"{self.id}: token answer has an unusable instance_url", connector=self.id)
        self._instance_url = instance.rstrip("/")
        self._identity = body.get("id") if isinstance(body.get("id"), str) else None
        rotated = body.get("refresh_token")
        if self.auth_flow == "refresh_token" and isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            # Refresh-token rotation is on: the configured token is now spent. Keep the new one
            # in memory; after a restart the config's token fails (documented).
            self.log.warning("connector=%s: Salesforce rotated the refresh token; turn rotation off on the connected app or the configured token stops working after a restart", self.id)
            self._refresh_token = rotated
        expires = body.get("expires_in")
        return token, float(expires) if isinstance(expires, (int, float)) and expires > 0 else None

    def _api(self, deadline: Deadline, path: str) -> str:
        """A data-API URL on the org's instance (authenticating first if needed)."""
        self.token.token(deadline)
        assert self._instance_url is not None
        return f"{self._instance_url}/services/data/{self.api_version}/{path}"

    @staticmethod
    def _refreshable(resp: Response) -> bool:
        """A 401 INVALID_SESSION_ID (expired or revoked session) is cured by a new token; a 401
        with another Salesforce error code is not. An answer without a code gets the one refresh."""
        names = {c for c, _ in _error_codes(resp)}
        return not names or "INVALID_SESSION_ID" in names

    def _classify(self, resp: Response) -> ConnectorError | None:
        """Salesforce's own error codes, before the generic status mapping."""
        if resp.status < 400:
            return None
        codes = _error_codes(resp)
        names = {c for c, _ in codes}
        detail = "; ".join(f"{error_code(c)}: {error_code(m)}" for c, m in codes[:2])
        limit = resp.headers.get("Sforce-Limit-Info")
        if "REQUEST_LIMIT_EXCEEDED" in names:
            # The org's rolling 24-hour API allowance is spent: retrying within this call
            # cannot help, so the error is marked not retryable (the breaker backs off).
            err = RateLimited(f"{self.id}: Salesforce API request limit exceeded ({detail}{'; ' + limit if limit else ''})", status=resp.status)
            err.retryable = False
            return err
        if resp.status == 401 and "INVALID_SESSION_ID" in names:
            return AuthError(f"{self.id}: session refused even after re-authenticating ({detail}); check the connected app's policies and the user's API access", status=401)
        if resp.status == 404 and "/services/data/" in resp.url:
            return BadResponse(f"{self.id}: HTTP 404 from Salesforce ({detail or 'not found'}); is api_version {self.api_version} offered by this org?", status=404)
        if resp.status in (400, 401, 403) and codes:
            kind = AuthError if resp.status in (401, 403) else BadResponse
            return kind(f"{self.id}: HTTP {resp.status} from Salesforce: {detail}", status=resp.status)
        return None

    # -- lookups --------------------------------------------------------------------------------

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        if query.kind == "account":
            return self._lookup_account(query.value, deadline)
        return self._lookup_phone(query.value, deadline)

    def _lookup_phone(self, value: str, deadline: Deadline) -> Match | None:
        e164 = to_e164(value, self.context.region)
        terms = search_terms(value, self.context.region)
        if e164 is None or not terms:
            self.log.info("connector=%s: %s is not a phone number; not searched", self.id, mask(value))
            return None
        url = self._api(deadline, "search/")
        resp = self.http.request("GET", url, deadline=deadline, params={"q": build_sosl(terms, self.objects)}, ok=(200,))
        body = _json(resp, self.id)
        rows = body.get("searchRecords") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise BadResponse(f"{self.id}: search answer has no searchRecords list", connector=self.id, status=resp.status)
        notes: list[str] = []
        candidates: list[Candidate] = []
        dropped = skipped_queue = 0
        for row in rows:
            if not isinstance(row, dict):
                raise BadResponse(f"{self.id}: search answer holds a non-object record", connector=self.id)
            obj = _get(row, "attributes.type")
            if obj not in self.objects or not isinstance(row.get("Id"), str):
                continue
            if not any(same_number(row.get(f) if isinstance(row.get(f), str) else None, e164, self.context.region) for f in PHONE_FIELDS[obj]):
                dropped += 1  # search over-matched (token/suffix): not this caller's number
                continue
            if self.options["queue_owner"] == "skip" and self._is_queue(row, ""):
                skipped_queue += 1
                continue
            candidates.append(Candidate(obj, row["Id"], str(row.get("LastModifiedDate") or ""), row))
        if dropped:
            notes.append(f"ignored {dropped} search hit(s) whose phone fields are a different number")
        if skipped_queue:
            notes.append(f"ignored {skipped_queue} queue-owned Lead(s) (queue_owner: skip)")
        winner, tie_note = pick_record(candidates, self.objects)
        if tie_note:
            notes.append(tie_note)
        self._limit_note(resp, notes)
        if winner is None:
            self.log.info("connector=%s: no Salesforce record for %s (%d hit(s))", self.id, mask(e164), len(rows))
            return None
        return self._match(winner.object_type, winner.data, notes, deadline)

    def _lookup_account(self, value: str, deadline: Deadline) -> Match | None:
        value = value.strip()
        if not _ACCOUNT_VALUE.match(value):
            self.log.info("connector=%s: account value with unsupported characters not queried", self.id)
            return None
        fields = ", ".join(("Id", "Name", *_USER_OWNER, "LastModifiedDate"))
        soql = (f"SELECT {fields} FROM Account WHERE {self.account_field} = {soql_literal(value)} "
                f"ORDER BY LastModifiedDate DESC LIMIT {PER_OBJECT_LIMIT}")
        resp = self.http.request("GET", self._api(deadline, "query/"), deadline=deadline, params={"q": soql}, ok=(200,))
        records = self._records(resp)
        notes: list[str] = [f"Account matched on {self.account_field}"]
        winner, tie_note = pick_record(
            [Candidate("Account", r["Id"], str(r.get("LastModifiedDate") or ""), r) for r in records if isinstance(r.get("Id"), str)],
            ("Account",),
        )
        if tie_note:
            notes.append(tie_note)
        self._limit_note(resp, notes)
        if winner is None:
            return None
        return self._match("Account", winner.data, notes, deadline)

    def _records(self, resp: Response) -> list[dict]:
        body = _json(resp, self.id)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadResponse(f"{self.id}: query answer has no records list", connector=self.id, status=resp.status)
        return records

    @staticmethod
    def _limit_note(resp: Response, notes: list[str]) -> None:
        info = resp.headers.get("Sforce-Limit-Info")
        if info:
            notes.append(f"Sforce-Limit-Info: {info[:120]}")

    # -- owners ---------------------------------------------------------------------------------

    def _is_queue(self, row: Mapping[str, Any], prefix: str) -> bool:
        owner_id = _get(row, f"{prefix}OwnerId") or ""
        return str(owner_id).startswith("00G") or _get(row, f"{prefix}Owner.Type") == "Queue"

    def _match(self, obj: str, row: Mapping[str, Any], notes: list[str], deadline: Deadline) -> Match | None:
        record = Record(type=obj, id=row.get("Id"), name=row.get("Name"))
        prefix = ""
        if obj == "Contact" and self.options["owner_preference"] == "account":
            if _get(row, "Account.OwnerId"):
                prefix = "Account."
                notes.append(f"owner taken from the Contact's Account {_get(row, 'Account.Name') or _get(row, 'AccountId')} (owner_preference: account)")
            else:
                notes.append("Contact has no Account; using the Contact owner")
        owner_id = _get(row, f"{prefix}OwnerId")
        if not owner_id:
            self.log.warning("connector=%s: %s/%s has no owner", self.id, obj, record.id)
            return None
        if self._is_queue(row, prefix):
            name = _get(row, f"{prefix}Owner.Name")
            team = self.queue_teams.get(str(owner_id).lower()) or (self.queue_teams.get(name.lower()) if isinstance(name, str) else None)
            notes.append(f"{obj} owned by queue {name or owner_id!s}; " + (f"team {team} from queue_teams" if team else "no queue_teams entry, so no owner: line team / fallback"))
            return Match(owner=Owner(id=str(owner_id), name=name, team=team), team=team, record=record, notes=tuple(notes))
        owner = self._user_owner(str(owner_id), row, prefix, notes, deadline)
        notes.append(f"owner {owner.id} from {obj}.{prefix}Owner")
        return Match(owner=owner, record=record, notes=tuple(notes))

    def _phone(self, *values: Any) -> str | None:
        for v in values:
            if isinstance(v, str) and v.strip():
                e164 = to_e164(v, self.context.region)
                if e164:
                    return e164
        return None

    def _user_owner(self, owner_id: str, row: Mapping[str, Any], prefix: str, notes: list[str], deadline: Deadline) -> Owner:
        o = lambda f: _get(row, f"{prefix}Owner.{f}")  # noqa: E731
        email, name = o("Email"), o("Name")
        phone = self._phone(o("MobilePhone"), o("Phone"))
        if o("IsActive") is False:
            notes.append(f"owner {owner_id} is an inactive user")
        team = None
        if (self.team_field != "none" or phone is None) and _SF_ID.match(owner_id):
            user = self._user_details(owner_id, notes, deadline)
            if user:
                phone = phone or self._phone(user.get("MobilePhone"), user.get("Phone"))
                email = email or user.get("Email")
                name = name or user.get("Name")
                if self.team_field != "none":
                    team = _get(user, self.team_field)
                    team = team if isinstance(team, str) and team else None
                    if team:
                        notes.append(f"owner team {team!r} from User.{self.team_field}")
        return Owner(id=owner_id, email=email if isinstance(email, str) else None,
                     name=name if isinstance(name, str) else None, phone=phone, team=team)

    def _user_details(self, user_id: str, notes: list[str], deadline: Deadline) -> dict:
        """The owner's User row (role, department, phones), cached for `user_cache_ttl_s`.

        A failure here costs the extras, not the answer: the owner's id and email are enough
        to find the rep.
        """
        if deadline.expired:
            return {}

        def load() -> dict:
            soql = f"SELECT {USER_FIELDS} FROM User WHERE Id = {soql_literal(user_id)} LIMIT 1"
            resp = self.http.request("GET", self._api(deadline, "query/"), deadline=deadline, params={"q": soql}, ok=(200,))
            records = self._records(resp)
            return records[0] if records else {}

        try:
            return self.users.get_or_load(user_id, load)
        except ConnectorError as exc:
            notes.append(f"owner details unavailable ({exc.kind})")
            self.log.info("connector=%s: User %s not read: %s", self.id, user_id, exc)
            return {}

    # -- check ----------------------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        """Authenticate, then GET /services/data/<api_version>/ (proves token and version)."""
        self.token.invalidate()
        url = self._api(deadline, "")
        resp = self.http.request("GET", url, deadline=deadline, ok=(200,))
        body = _json(resp, self.id)
        if not isinstance(body, dict) or "search" not in body:
            raise BadResponse(f"{self.id}: {self.api_version} resource list lacks 'search'", connector=self.id)
        host = urlsplit(self._instance_url or "").hostname
        user = (self._identity or "").rstrip("/").rsplit("/", 1)[-1] or "?"
        usage = resp.headers.get("Sforce-Limit-Info")
        return f"{self.auth_flow} token ok (user {user}) at {host}; API {self.api_version} available" + (f"; {usage}" if usage else "")
