"""Salesforce connector; API reference: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/

One uncached phone lookup on a warm connector is one SOSL call (``GET {instance_url}/services/
data/vNN.N/search/?q=FIND {digits OR "digit groups" ...} IN PHONE FIELDS RETURNING Contact(...),
Lead(...), Account(...)``) whose relationship fields (``Owner.Email``, ``Owner.IsActive``,
``Owner.UserRole.Name`` ...) carry the owner and the owner's team in the same answer.

What the integration user can read decides the RETURNING lists: the objects' ``describe`` is
read once (at first use, in parallel) and cached for ``describe_ttl_s``, then refreshed in the
background. A field Salesforce still refuses (``INVALID_FIELD``) is left out from then on, the
search is repeated once without it when time allows, and describe is re-read in the
background. Lead owners (the polymorphic ``Name`` object has no mobile, department or role)
get their details from a cached directory of active users, loaded in the background. The OAuth
token (client credentials or refresh token) is fetched once and reused until it expires or a
401 says the session died. Admin guide: docs/crm/salesforce.md.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar
from urllib.parse import urlsplit

import phonenumbers

from dialwhom.sdk import (
    AuthError,
    BadResponse,
    CachedToken,
    OAuthClient,
    Candidate,
    ConfigError,
    Connector,
    ConnectorContext,
    ConnectorError,
    Deadline,
    Field,
    HttpClient,
    Match,
    MIN_ATTEMPT_S,
    Owner,
    Query,
    RateLimited,
    Record,
    Response,
    digits_only,
    error_code,
    mask,
    scrub,
    pick_record,
    same_number,
    to_e164,
)

__all__ = ["SalesforceConnector", "search_terms", "phrase_terms", "build_sosl", "soql_literal", "WARN"]

T = TypeVar("T")

#: a `check()` note starting with this is printed as a warning by ``dialwhom check``
WARN = "warn: "
#: the number `check()` searches for: the contract kit's "nobody has it" caller
CHECK_PHONE = "+919811122233"
OBJECTS = ("Contact", "Lead", "Account")
TEAM_FIELDS = ("UserRole.Name", "Department", "Division", "none")
#: login hosts that refuse the client-credentials flow (it needs the org's My Domain)
GENERIC_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
#: rows per object in one search; ordered by LastModifiedDate so the tie-break sees the newest
PER_OBJECT_LIMIT = 5
MIN_TERM_DIGITS = 6

#: standard phone fields returned and re-checked per object (describe adds the org's other
#: phone-type fields, `phone_fields` adds any the admin names); Fax is never a caller's number
PHONE_FIELDS = {
    "Contact": ("Phone", "MobilePhone", "HomePhone", "OtherPhone", "AssistantPhone"),
    "Lead": ("Phone", "MobilePhone"),
    "Account": ("Phone",),
}
#: owner fields wanted from a User owner (plus the `team_field`)
USER_OWNER_FIELDS = ("Email", "Name", "Phone", "MobilePhone", "IsActive")
#: Lead.Owner is polymorphic (User or Queue): it resolves to the `Name` object, which has
#: Email, Phone, Type and IsActive but no MobilePhone, Department, Division or role name.
NAME_OWNER_FIELDS = ("Email", "Name", "Phone", "Type", "IsActive")
#: the Name object's fields (it cannot be described over REST; object reference, "Name")
NAME_OBJECT_FIELDS = frozenset({"Id", "Name", "FirstName", "LastName", "Alias", "Email", "Phone", "Title", "Type",
                                "IsActive", "UserRoleId", "ProfileId", "Username"})
#: objects whose fields are always readable when their relationship is (never described)
FIXED_FIELDS = {"Name": NAME_OBJECT_FIELDS, "UserRole": frozenset({"Id", "Name"})}
#: relationships assumed when describe could not be read
DEFAULT_REFS = {
    "Contact": {"Owner": ("User",), "Account": ("Account",)},
    "Lead": {"Owner": ("Group", "User")},
    "Account": {"Owner": ("User",)},
    "User": {"UserRole": ("UserRole",)},
}
#: largest answer read (describe of a big org's Account is over a megabyte)
DESCRIBE_MAX_BODY = 16 * 1024 * 1024
#: pages of the active-user directory read at most (2,000 users a page)
DIRECTORY_MAX_PAGES = 25
#: how long a background load (describe, directory) may take
BACKGROUND_S = 15.0
#: how soon a failed describe or directory load is tried again
RETRY_LOAD_S = 60.0

_VERSION = re.compile(r"^v?(\d{2,3})\.0$")
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_PHRASE = re.compile(r"^\d+(?: \d+)+$")
#: account values allowed into SOQL: nothing with quote, backslash or wildcard meaning
_ACCOUNT_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,79}$")
#: what INVALID_FIELD names (the first refused field only, per Salesforce's messages)
_NO_COLUMN = re.compile(r"No such column '(\w+)' on entity '(\w+)'")
_NO_RELATION = re.compile(r"Didn't understand relationship '(\w+)'")


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
    n = _parsed(value, region)
    if n is None:
        return []
    national = digits_only(phonenumbers.national_significant_number(n))
    forms = (national, str(n.country_code) + national, "0" + national)
    out: list[str] = []
    for form in forms:
        if len(form) >= MIN_TERM_DIGITS and form not in out:
            out.append(form)
    return out


def phrase_terms(value: str, region: str = "IN") -> list[str]:
    """Digit groups of the caller's number as people write them, for SOSL phrase search.

    The search index splits stored values on spaces and punctuation, so ``+91 98765 43210``
    is the tokens ``91 98765 43210``: a bare ``9876543210`` need not find it, the phrase
    ``"98765 43210"`` does. Groups come from the number's international and national formats
    (digits and single spaces only, so nothing reserved reaches the query).

        >>> phrase_terms("+919876543210")
        ['98765 43210', '098765 43210']
        >>> phrase_terms("+14155550123", "US")
        ['415 555 0123']
    """
    n = _parsed(value, region)
    if n is None:
        return []
    intl = phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.NATIONAL)
    groups = [g for g in re.split(r"\D+", intl) if g][1:]  # without the country code
    out: list[str] = []
    for form in (" ".join(groups), " ".join(g for g in re.split(r"\D+", national) if g)):
        if _PHRASE.match(form) and len(digits_only(form)) >= MIN_TERM_DIGITS and form not in out:
            out.append(form)
    return out


def _parsed(value: str, region: str) -> phonenumbers.PhoneNumber | None:
    e164 = to_e164(value, region)
    if e164 is None:
        return None
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None


def build_sosl(terms: list[str], returning: Mapping[str, str]) -> str:
    """The SOSL for one phone search.

    `terms` are digit strings (`search_terms`) or digit groups (`phrase_terms`, sent as quoted
    phrases); `returning` maps each object to its clause body (fields, filter, order, limit).
    """
    if not terms or any(not t.isascii() or not (t.isdigit() or _PHRASE.match(t)) for t in terms):
        raise ValueError("SOSL search terms must be ASCII digit strings or digit groups")
    find = " OR ".join(t if t.isdigit() else f'"{t}"' for t in terms)
    clauses = ", ".join(f"{obj}({body})" for obj, body in returning.items())
    return f"FIND {{{find}}} IN PHONE FIELDS RETURNING {clauses}"


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


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class InvalidField(BadResponse):
    """400 INVALID_FIELD: a field the integration user cannot read (or that does not exist)."""

    def __init__(self, message: str, *, refused: tuple[str, str] | None, status: int = 400):
        super().__init__(message, status=status)
        #: (entity, field) or ("*", relationship) named by Salesforce, when it names one
        self.refused = refused


@dataclass(frozen=True)
class Described:
    """What describe says the integration user can read on one object."""

    fields: frozenset[str]
    #: relationship name -> the objects it can point to (``Owner`` -> ``("User",)``)
    refs: Mapping[str, tuple[str, ...]]
    #: fields of type phone, Fax excluded
    phones: tuple[str, ...]

    @classmethod
    def from_json(cls, body: Any) -> "Described":
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list):
            raise BadResponse("describe answer has no fields list")
        names: set[str] = set()
        refs: dict[str, tuple[str, ...]] = {}
        phones: list[str] = []
        for f in fields:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                continue
            names.add(f["name"])
            rel, targets = f.get("relationshipName"), f.get("referenceTo")
            if isinstance(rel, str) and isinstance(targets, list) and targets:
                refs[rel] = tuple(str(t) for t in targets)
            if f.get("type") == "phone" and "fax" not in f["name"].lower():
                phones.append(f["name"])
        return cls(frozenset(names), refs, tuple(phones))


class Refreshed(Generic[T]):
    """A value loaded at first use, then reloaded in the background once `ttl_s` old.

    Only a first load can make a caller wait (``get(wait=True)``); later loads run in the
    background while the old value is served. A failed load is tried again after `retry_s`.
    """

    def __init__(self, name: str, load: Callable[[Deadline], T], *, ttl_s: float, log, retry_s: float = RETRY_LOAD_S,
                 clock: Callable[[], float] = time.monotonic):
        self.name, self._load, self.ttl_s, self.retry_s, self._log = name, load, ttl_s, retry_s, log
        self.clock = clock
        #: runs a background load; tests replace it to run loads in line
        self.spawn: Callable[[Callable[[], None]], Any] = self._thread
        self.value: T | None = None
        self.error: ConnectorError | None = None
        self._due = 0.0
        self._load_lock = threading.Lock()  # one load at a time
        self._flag_lock = threading.Lock()  # guards _busy only: never held during a load
        self._busy = False
        self._threads: list[threading.Thread] = []
        self.closed = False

    def get(self, deadline: Deadline, *, wait: bool) -> T | None:
        """The current value; loads in line only if there is none yet and `wait`."""
        if self.clock() < self._due:
            return self.value
        if self.value is None and wait:
            return self.load(deadline)
        self.refresh()
        return self.value

    def load(self, deadline: Deadline, *, force: bool = False) -> T | None:
        """Load now (one load at a time; a concurrent caller gets the fresh result)."""
        with self._load_lock:
            if not force and self.clock() < self._due:
                return self.value
            try:
                self.value, self.error = self._load(deadline), None
                self._due = self.clock() + self.ttl_s
            except ConnectorError as exc:
                self.error = exc
                self._due = self.clock() + self.retry_s
                self._log.info("%s not loaded (%s); trying again in %.0f s", self.name, exc.kind, self.retry_s)
            return self.value

    def expire(self) -> None:
        self._due = 0.0

    def seed(self, value: T) -> None:
        """Use `value` as if it had just been loaded (a warm start; tests)."""
        with self._load_lock:
            self.value, self.error, self._due = value, None, self.clock() + self.ttl_s

    def refresh(self) -> None:
        """Reload in the background unless a load is already running; never waits."""
        with self._flag_lock:
            if self._busy or self.closed:
                return
            self._busy = True

        def run() -> None:
            try:
                self.load(Deadline(BACKGROUND_S), force=True)
            except Exception:  # noqa: BLE001 - a background load must never kill its thread noisily
                self._log.exception("%s: background load failed", self.name)
            finally:
                with self._flag_lock:
                    self._busy = False

        self.spawn(run)

    def _thread(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, name=f"dialwhom-{self.name}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def close(self) -> None:
        """Stop scheduling loads; wait briefly for one that is running."""
        self.closed = True
        for t in self._threads:
            t.join(2.0)


@dataclass(frozen=True)
class _Returning:
    """One object's part of the search: readable fields, phone fields, what was left out."""

    fields: tuple[str, ...]
    phones: tuple[str, ...]
    missing: tuple[str, ...]
    where: str

    def clause(self) -> str:
        return f"{', '.join(self.fields)} {self.where}ORDER BY LastModifiedDate DESC LIMIT {PER_OBJECT_LIMIT}"


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
              help="owner's User field reported as the team (read in the same search; none to skip)"),
        Field("phone_fields", dict, default=None,
              help="extra phone fields re-checked per object, e.g. {Contact: [Mobile2__c], Account: [PersonMobilePhone]}"),
        Field("account_field", str, default="AccountNumber",
              help="text field of Account matched for account lookups (CustomField / digits)"),
        Field("user_cache_ttl_s", float, default=3600.0, min=60, max=86400,
              help="how long the directory of active users (Lead owners' details) is used before a background refresh"),
        Field("describe_ttl_s", float, default=3600.0, min=60, max=86400,
              help="how long what describe says the user can read is used before a background refresh"),
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
        self.extra_phones = self._check_phone_fields(o.get("phone_fields") or {})
        if not _API_NAME.match(o["account_field"]):
            raise ConfigError("account_field", f"{o['account_field']!r} is not a Salesforce field API name (e.g. AccountNumber, Customer_Id__c)")
        self.account_field: str = o["account_field"]
        self.team_field: str = o["team_field"]
        # Refresh-token rotation on the connected app spends the configured token: the client
        # keeps the new one in memory and warns (after a restart the config's token fails).
        self.oauth = OAuthClient(
            self.id, f"{self.login_url}/services/oauth2/token", http=lambda: self.http,
            client_id=str(o["client_id"]), client_secret=str(o["client_secret"]) if o.get("client_secret") else None,
            refresh_token=str(o["refresh_token"]) if o.get("refresh_token") else None, grant=self.auth_flow,
            hint=lambda error: f"Salesforce refused the {self.auth_flow} token request; check the connected app's client_id/client_secret, the user and login_url",
        )
        self._instance_url: str | None = None
        self._identity: str | None = None
        self.token = CachedToken(self._fetch_token, default_ttl_s=float(o["token_ttl_s"]))
        #: object -> what the user can read (objects whose describe failed are absent)
        self.schema: Refreshed[dict[str, Described]] = Refreshed(
            f"{self.id}-describe", self._describe_all, ttl_s=float(o["describe_ttl_s"]), log=self.log)
        #: active users by id, for Lead owners (the Name object lacks mobile and team)
        self.directory: Refreshed[dict[str, dict]] = Refreshed(
            f"{self.id}-users", self._load_directory, ttl_s=float(o["user_cache_ttl_s"]), log=self.log)
        #: (entity, field) Salesforce refused with INVALID_FIELD: left out until restart
        self.refused: set[tuple[str, str]] = set()
        self._layout_lock = threading.Lock()
        self._layout_key: tuple | None = None
        self._layout: dict[str, "_Returning"] = {}

    @staticmethod
    def _check_phone_fields(value: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for obj, fields in value.items():
            if obj not in OBJECTS:
                raise ConfigError("phone_fields", f"{obj!r} is not one of {', '.join(OBJECTS)}; write phone_fields: {{Contact: [Mobile2__c]}}")
            if not isinstance(fields, list) or not all(isinstance(f, str) and _API_NAME.match(f) and "." not in f for f in fields):
                raise ConfigError("phone_fields", f"phone_fields.{obj} must be a list of field API names, e.g. [MobilePhone__c, PersonMobilePhone]")
            out[obj] = tuple(dict.fromkeys(fields))
        return out

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
            max_body=DESCRIBE_MAX_BODY,  # a big org's describe of Account runs to a megabyte or more
        )

    # -- auth -----------------------------------------------------------------------------------

    def _fetch_token(self, deadline: Deadline) -> tuple[str, float | None]:
        """The shared OAuth client's grant; remember `instance_url` for data calls."""
        grant = self.oauth.fetch(deadline)
        instance = grant.body.get("instance_url")
        if not isinstance(instance, str):
            raise BadResponse(f"{self.id}: token answer lacks instance_url", connector=self.id)
        parts = urlsplit(instance)
        login_scheme = urlsplit(self.login_url).scheme
        if parts.scheme not in ("https", login_scheme) or not parts.hostname:
            raise BadResponse(f"{self.id}: token answer has an unusable instance_url", connector=self.id)
        self._instance_url = instance.rstrip("/")
        self._identity = grant.body.get("id") if isinstance(grant.body.get("id"), str) else None
        return grant.access_token, grant.expires_in

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
        if resp.status == 400 and "INVALID_FIELD" in names:
            message = next(m for c, m in codes if c == "INVALID_FIELD")
            column, relation = _NO_COLUMN.search(message), _NO_RELATION.search(message)
            refused = (column.group(2), column.group(1)) if column else ("*", relation.group(1)) if relation else None
            return InvalidField(f"{self.id}: HTTP 400 from Salesforce: {detail}", refused=refused)
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

    def close(self) -> None:
        self.schema.close()
        self.directory.close()
        super().close()

    # -- what the user can read -----------------------------------------------------------------

    def _described_objects(self) -> tuple[str, ...]:
        wanted = list(self.objects)
        if "Contact" in wanted and self.options["owner_preference"] == "account" and "Account" not in wanted:
            wanted.append("Account")
        return (*wanted, "User")

    def _describe_all(self, deadline: Deadline) -> dict[str, Described]:
        """GET sobjects/<Object>/describe for every object the lookup touches, in parallel.

        An object whose describe fails is left out (its fields are then assumed readable and
        INVALID_FIELD is the safety net); if every one fails, the first error is raised.
        """
        objects = self._described_objects()
        self.token.token(deadline)  # authenticate once, not once per thread

        def one(obj: str) -> Described:
            resp = self.http.request("GET", self._api(deadline, f"sobjects/{obj}/describe"), deadline=deadline, ok=(200,))
            try:
                return Described.from_json(_json(resp, self.id))
            except BadResponse as exc:
                raise BadResponse(f"{self.id}: {obj} {exc}", connector=self.id, status=resp.status) from None

        out: dict[str, Described] = {}
        errors: list[ConnectorError] = []
        with ThreadPoolExecutor(max_workers=len(objects), thread_name_prefix=f"dialwhom-{self.id}-describe") as pool:
            futures = {obj: pool.submit(one, obj) for obj in objects}
            for obj, fut in futures.items():
                try:
                    out[obj] = fut.result()
                except ConnectorError as exc:
                    errors.append(exc)
                    self.log.info("connector=%s: describe of %s failed: %s", self.id, obj, exc)
        if errors and not out:
            raise errors[0]
        return out

    def _readable(self, schema: Mapping[str, Described] | None, obj: str, path: str) -> bool:
        """Whether the integration user can read `path` (``Owner.UserRole.Name``) from `obj`."""
        return self._resolve(schema, obj, path)[0]

    def _resolve(self, schema: Mapping[str, Described] | None, obj: str, path: str) -> tuple[bool, str]:
        """(readable, the ``Entity.Field`` that decides it) for `path` on `obj`."""
        entity = obj
        parts = path.split(".")
        for hop in parts[:-1]:
            known = schema.get(entity) if schema else None
            targets = known.refs.get(hop) if known else DEFAULT_REFS.get(entity, {}).get(hop)
            if not targets or ("*", hop) in self.refused:
                return False, f"{entity}.{hop}"
            entity = "Name" if len(targets) > 1 else targets[0]
        field = parts[-1]
        if (entity, field) in self.refused:
            return False, f"{entity}.{field}"
        if entity in FIXED_FIELDS:
            return field in FIXED_FIELDS[entity], f"{entity}.{field}"
        known = schema.get(entity) if schema else None
        return known is None or field in known.fields, f"{entity}.{field}"

    def _owner_paths(self, obj: str, prefix: str = "") -> list[str]:
        if obj == "Lead":
            return [f"{prefix}OwnerId", *(f"{prefix}Owner.{f}" for f in NAME_OWNER_FIELDS)]
        team = () if self.team_field == "none" else (self.team_field,)
        return [f"{prefix}OwnerId", *(f"{prefix}Owner.{f}" for f in (*USER_OWNER_FIELDS, *team))]

    def _wanted(self, obj: str, schema: Mapping[str, Described] | None) -> tuple[list[str], list[str]]:
        """(every field path wanted from `obj`, its phone fields), before readability."""
        phones = list(PHONE_FIELDS[obj])
        if schema and obj in schema:
            phones += [f for f in schema[obj].phones if f not in phones]
        phones += [f for f in self.extra_phones.get(obj, ()) if f not in phones]
        paths = ["Id", "Name", *(["Company"] if obj == "Lead" else []), *phones, *self._owner_paths(obj)]
        if obj == "Contact" and self.options["owner_preference"] == "account":
            paths += ["AccountId", "Account.Name", *self._owner_paths("Account", "Account.")]
        return paths + ["LastModifiedDate"], phones

    def layout(self, schema: Mapping[str, Described] | None) -> dict[str, "_Returning"]:
        """Per object: the readable fields, phone fields and filter of its RETURNING clause."""
        with self._layout_lock:
            if self._layout_key is not None and self._layout_key[0] is schema and self._layout_key[1] == len(self.refused):
                return self._layout
        out: dict[str, _Returning] = {}
        for obj in self.objects:
            paths, phones = self._wanted(obj, schema)
            fields = tuple(p for p in paths if p == "Id" or self._readable(schema, obj, p))
            where = "WHERE IsConverted = false " if obj == "Lead" and self._readable(schema, "Lead", "IsConverted") else ""
            missing = tuple(dict.fromkeys(self._resolve(schema, obj, p)[1] for p in paths if p not in fields))
            out[obj] = _Returning(fields, tuple(p for p in phones if p in fields), missing, where)
        with self._layout_lock:
            self._layout_key, self._layout = (schema, len(self.refused)), out
        return out

    def _refuse(self, exc: InvalidField) -> str | None:
        """Leave out the field INVALID_FIELD named; re-read describe in the background."""
        self.schema.expire()
        self.schema.refresh()
        if exc.refused is None or exc.refused in self.refused:
            return None
        self.refused.add(exc.refused)
        entity, field = exc.refused
        self.log.warning("connector=%s: Salesforce refused %s.%s (INVALID_FIELD): left out from now on; "
                         "grant the integration user Read on it to use it", self.id, entity if entity != "*" else "?", field)
        return f"{entity}.{field}" if entity != "*" else field

    # -- lookups --------------------------------------------------------------------------------

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        if query.kind == "account":
            return self._lookup_account(query.value, deadline)
        return self._lookup_phone(query.value, deadline)

    def _with_fields(self, deadline: Deadline, notes: list[str], call: Callable[[dict[str, _Returning]], Response]) -> Response:
        """`call` with the RETURNING lists of the moment; after an INVALID_FIELD, once more
        without the refused field when the deadline leaves time for it."""
        self.token.token(deadline)  # authenticate before describe, once
        # only a cold connector reads describe in line, with at most half the time left
        schema = self.schema.get(deadline.child(deadline.remaining() / 2), wait=True)
        if "Lead" in self.objects:
            self.directory.get(deadline, wait=False)  # (re)loads in the background when due
        try:
            return call(self.layout(schema))
        except InvalidField as exc:
            dropped = self._refuse(exc)
            if dropped is None or deadline.remaining() < 2 * MIN_ATTEMPT_S:
                raise
            notes.append(f"Salesforce refused {dropped} (INVALID_FIELD); asked again without it")
            return call(self.layout(schema))

    def _lookup_phone(self, value: str, deadline: Deadline) -> Match | None:
        e164 = to_e164(value, self.context.region)
        terms = search_terms(value, self.context.region)
        if e164 is None or not terms:
            self.log.info("connector=%s: %s is not a phone number; not searched", self.id, mask(value))
            return None
        notes: list[str] = []
        resp, layout = self._search(terms + phrase_terms(value, self.context.region), deadline, notes)
        rows = self._rows(resp)
        candidates: list[Candidate] = []
        dropped = skipped_queue = 0
        for row in rows:
            if not isinstance(row, dict):
                raise BadResponse(f"{self.id}: search answer holds a non-object record", connector=self.id)
            obj = _get(row, "attributes.type")
            if obj not in layout or not isinstance(row.get("Id"), str):
                continue
            if not any(same_number(_text(row.get(f)), e164, self.context.region) for f in layout[obj].phones):
                dropped += 1  # search over-matched (token/phrase): not this caller's number
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

    def _rows(self, resp: Response) -> list:
        body = _json(resp, self.id)
        rows = body.get("searchRecords") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise BadResponse(f"{self.id}: search answer has no searchRecords list", connector=self.id, status=resp.status)
        return rows

    def _search(self, terms: list[str], deadline: Deadline, notes: list[str]) -> tuple[Response, dict[str, _Returning]]:
        used: dict[str, _Returning] = {}

        def call(layout: dict[str, _Returning]) -> Response:
            used.clear()
            used.update(layout)
            sosl = build_sosl(terms, {obj: r.clause() for obj, r in layout.items()})
            return self.http.request("GET", self._api(deadline, "search/"), deadline=deadline, params={"q": sosl}, ok=(200,))

        resp = self._with_fields(deadline, notes, call)
        left_out = sorted({m for r in used.values() for m in r.missing})
        if left_out:
            notes.append(f"fields the integration user cannot read, left out: {', '.join(left_out[:6])}" + (" ..." if len(left_out) > 6 else ""))
        if "Lead" in used and not used["Lead"].where:
            notes.append("Lead.IsConverted is not readable: converted Leads may match too")
        return resp, used

    def _lookup_account(self, value: str, deadline: Deadline) -> Match | None:
        value = value.strip()
        if not _ACCOUNT_VALUE.match(value):
            self.log.info("connector=%s: account value with unsupported characters not queried", self.id)
            return None
        notes: list[str] = [f"Account matched on {self.account_field}"]

        def call(_: dict[str, _Returning]) -> Response:  # Account's fields, not the search layout
            schema = self.schema.value
            fields = ", ".join(p for p in ("Id", "Name", *self._owner_paths("Account"), "LastModifiedDate")
                               if p == "Id" or self._readable(schema, "Account", p))
            soql = (f"SELECT {fields} FROM Account WHERE {self.account_field} = {soql_literal(value)} "
                    f"ORDER BY LastModifiedDate DESC LIMIT {PER_OBJECT_LIMIT}")
            return self.http.request("GET", self._api(deadline, "query/"), deadline=deadline, params={"q": soql}, ok=(200,))

        resp = self._with_fields(deadline, notes, call)
        records = self._records(resp)
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
        owner = self._user_owner(str(owner_id), _get(row, f"{prefix}Owner"), obj == "Lead" and not prefix, notes, deadline)
        notes.append(f"owner {owner.id} from {obj}.{prefix}Owner")
        return Match(owner=owner, record=record, notes=tuple(notes))

    def _phone(self, *values: Any) -> str | None:
        for v in values:
            text = _text(v)
            e164 = to_e164(text, self.context.region) if text else None
            if e164:
                return e164
        return None

    def _user_owner(self, owner_id: str, rel: Any, polymorphic: bool, notes: list[str], deadline: Deadline) -> Owner:
        """The owner from the search's relationship fields; a Lead's user owner (the Name
        object) is completed from the directory of active users, never by another call."""
        rel = rel if isinstance(rel, Mapping) else {}
        user: Mapping[str, Any] = {}
        if polymorphic:
            user = (self.directory.get(deadline, wait=False) or {}).get(owner_id) or {}
            if not user:
                notes.append("Lead owner not in the directory of active users (yet): no mobile or team from it")
        active = rel.get("IsActive") if isinstance(rel.get("IsActive"), bool) else None
        if active is False:
            notes.append(f"owner {owner_id} is an inactive user")
        team = None
        if self.team_field != "none":
            team = _text(_get(rel, self.team_field)) or _text(_get(user, self.team_field))
            if team:
                notes.append(f"owner team {team!r} from User.{self.team_field}")
        return Owner(id=owner_id, email=_text(rel.get("Email")) or _text(user.get("Email")),
                     name=_text(rel.get("Name")) or _text(user.get("Name")),
                     phone=self._phone(rel.get("MobilePhone"), user.get("MobilePhone"), rel.get("Phone"), user.get("Phone")),
                     team=team, active=active)

    def _load_directory(self, deadline: Deadline) -> dict[str, dict]:
        """Every active user (id, name, email, phones, team field), page by page."""
        for attempt in (0, 1):
            schema = self.schema.get(deadline, wait=True)
            fields = [f for f in ("Id", *USER_OWNER_FIELDS, *(() if self.team_field == "none" else (self.team_field,)))
                      if f == "Id" or self._readable(schema, "User", f)]
            soql = f"SELECT {', '.join(fields)} FROM User WHERE IsActive = true ORDER BY Id"
            try:
                resp = self.http.request("GET", self._api(deadline, "query/"), deadline=deadline, params={"q": soql}, ok=(200,))
                break
            except InvalidField as exc:
                if attempt or self._refuse(exc) is None:
                    raise
        users: dict[str, dict] = {}
        for _ in range(DIRECTORY_MAX_PAGES):
            body = _json(resp, self.id)
            for r in self._records(resp):
                if isinstance(r.get("Id"), str):
                    users[r["Id"]] = r
            nxt = body.get("nextRecordsUrl") if isinstance(body, dict) and body.get("done") is False else None
            if not isinstance(nxt, str) or not nxt.startswith(f"/services/data/{self.api_version}/query/"):
                break
            self.token.token(deadline)
            resp = self.http.request("GET", f"{self._instance_url}{nxt}", deadline=deadline, ok=(200,))
        return users

    # -- check ----------------------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        """Sign in afresh, read describe, run the real search for a number nobody should have,
        and read the directory of active users.

        A field the integration user cannot read, or a part that could not be run, makes the
        note start with `WARN` (``dialwhom check`` prints it as a warning); a failed sign-in
        or search raises.
        """
        self.token.invalidate()
        self.token.token(deadline)
        warnings: list[str] = []
        schema = self.schema.load(deadline, force=True)
        if self.schema.error is not None:
            warnings.append(f"describe could not be read ({self.schema.error.kind}: {scrub(str(self.schema.error))}); "
                            "the user needs Read on " + ", ".join(self._described_objects()))
        else:
            unread = [o for o in self._described_objects() if o not in (schema or {})]
            if unread:
                warnings.append(f"describe of {', '.join(unread)} could not be read: give the integration user Read on them")
        layout = self.layout(schema)
        missing = sorted({m for r in layout.values() for m in r.missing})
        if missing:
            warnings.append(f"the integration user cannot read {', '.join(missing)}: grant Read on them (field-level "
                            "security, in its profile or a permission set); until then they are not searched or returned")
        if "Lead" in layout and not layout["Lead"].where:
            warnings.append("Lead.IsConverted is not readable: converted Leads are not filtered out")
        users = self.directory.load(deadline, force=True) if "Lead" in self.objects else None
        if "Lead" in self.objects and self.directory.error is not None:
            warnings.append(f"the directory of active users could not be read ({self.directory.error.kind}): "
                            "Lead owners' mobile and team stay unknown; the user needs Read on User")
        notes: list[str] = []
        terms = search_terms(CHECK_PHONE, self.context.region) + phrase_terms(CHECK_PHONE, self.context.region)
        resp, _ = self._search(terms, deadline, notes)
        rows = self._rows(resp)
        warnings += [n for n in notes if "INVALID_FIELD" in n]
        host = urlsplit(self._instance_url or "").hostname
        user = (self._identity or "").rstrip("/").rsplit("/", 1)[-1] or "?"
        parts = [f"{self.auth_flow} token ok (user {user}) at {host}",
                 f"describe read for {len(schema or {})} object(s)",
                 f"search ok ({len(rows)} hit(s) for {mask(CHECK_PHONE)}, API {self.api_version})"]
        if users is not None:
            parts.append(f"{len(users)} active user(s) in the owner directory")
        usage = resp.headers.get("Sforce-Limit-Info")
        if usage:
            parts.append(usage[:120])
        return (WARN + "; ".join(warnings) + " | " if warnings else "") + "; ".join(parts)
