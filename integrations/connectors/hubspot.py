"""HubSpot CRM connector. API reference: https://developers.hubspot.com/docs/api-reference/2026-03/overview

Finds the caller among HubSpot contacts (then companies) with one CRM search per object type,
re-checks every hit on our side, tries the hits (owned ones first) until one resolves to an
owner, and answers with that owner from a cached owners directory. Admin guide: docs/crm/hubspot.md.

Requests per uncached lookup on a warm connector (owners directory and company properties
loaded, token valid; `test_warm_connector_request_counts` asserts these):

- phone, contact hit: 1 (contact search);
- phone, no contact, company hit: 2 (contact search, company search);
- not found: 1 search per entry of ``objects`` (2 by default);
- ``owner_preference: company`` and the contact has a primary company: +1 company GET the
  first time that company is seen within ``owner_cache_s``;
- an owner missing from the directory (created since the last reload): +1 owner GET (+1 more
  with ``archived=true`` when the first answers 404);
- OAuth mode: +1 token refresh when the cached access token has expired (about every 30 min).

The directory (every owner, active and archived) and the companies' property list are loaded
in the background on first use, or by `warm()`, and reloaded every ``owners_refresh_s``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import phonenumbers

from dialwhom.sdk import (
    AuthError,
    BadResponse,
    CachedToken,
    OAuthClient,
    ConfigError,
    Connector,
    ConnectorContext,
    ConnectorError,
    ConnectorTimeout,
    Deadline,
    Field,
    HttpClient,
    KeySearch,
    Match,
    Owner,
    Query,
    RateLimited,
    RateLimiter,
    Record,
    Response,
    TTLMemo,
    as_utc,
    digits_only,
    error_code,
    mask,
    retry_after_seconds,
    same_number,
    variants,
)

__all__ = ["HubSpotConnector"]

DEFAULT_BASE_URL = "https://api.hubapi.com"
#: "2026-03": the date-versioned paths (/crm/objects/2026-03/...); "v3": /crm/v3/..., which
#: HubSpot stops supporting in September 2027.
API_VERSIONS = ("2026-03", "v3")
OBJECTS = ("contacts", "companies")
DEFAULT_CONTACT_PHONE_PROPERTIES = [
    "hs_searchable_calculated_phone_number",
    "hs_searchable_calculated_mobile_number",
    "phone",
    "mobilephone",
]
#: Only `phone` is confirmed on companies; the calculated property is added when the portal's
#: properties API lists it (a filter on a missing property is a 400 for the whole search).
DEFAULT_COMPANY_PHONE_PROPERTIES = ("phone",)
COMPANY_CALCULATED_PHONE = "hs_searchable_calculated_phone_number"
#: HubSpot's search limits (current docs: 5 groups, 6 filters per group, 18 in total). Every
#: phone property is one group holding one filter; a spare group holds a CONTAINS_TOKEN filter.
MAX_FILTER_GROUPS = 5
SEARCH_LIMIT = 10
#: The HubSpot-derived international form next to each digits-only searchable property.
CALCULATED_TWIN = {
    "hs_searchable_calculated_phone_number": "hs_calculated_phone_number",
    "hs_searchable_calculated_mobile_number": "hs_calculated_mobile_number",
}
MODIFIED_PROPERTY = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate"}
NAME_PROPERTIES = {"contacts": ("firstname", "lastname"), "companies": ("name",)}
SINGULAR = {"contacts": "contact", "companies": "company"}
#: What a 429 without Retry-After means, by HubSpot's policy (usage guidelines; HubSpot's own
#: client waits 1 s for "You have reached your secondly limit." and 10 s for
#: TEN_SECONDLY_ROLLING). Within a caller's 2 s none of these is worth waiting for: the lookup
#: fails at once, and the framework holds the connector back for this long.
SECONDLY_WAIT_S = 1.0
TEN_SECONDLY_WAIT_S = 10.0
DAILY_LIMIT_WAIT_S = 3600.0
#: Search allows 5 requests/s per account, shared by every integration in the portal. 3/s with
#: a burst of 2 (what is left of 5) never sends more than 5 in a second, leaves 2/s to the
#: portal's other integrations, and lets a lookup's contact and company searches go back to
#: back when the bucket is idle (a burst of 1 would make the second wait 150-250 ms).
DEFAULT_SEARCH_RATE = 3.0
MAX_SEARCH_RATE = 5.0
OWNERS_PAGE = 500
#: the background load of the owners directory and the properties list: its own time budget,
#: and how long to wait after a failed load before trying again
WARM_BUDGET_S = 30.0
WARM_RETRY_S = 60.0
#: a number no portal should hold (NANP 555-01xx is reserved for fiction), for `check`
CHECK_NUMBER = "+12025550143"
RATE_HEADERS = (
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
)

_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")
_NUMERIC_ID = re.compile(r"^[0-9]{1,20}$")
_NUMBER_SEPARATORS = re.compile(r"[,;/|]| or ", re.IGNORECASE)
_SCOPE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class Paths:
    """The endpoints of one API version."""

    objects: str
    owners: str
    properties: str
    token: str

    @classmethod
    def of(cls, version: str) -> "Paths":
        if version == "v3":
            return cls("/crm/v3/objects", "/crm/v3/owners", "/crm/v3/properties", "/oauth/v3/token")
        return cls(f"/crm/objects/{version}", f"/crm/owners/{version}", f"/crm/properties/{version}", f"/oauth/{version}/token")


class HubSpotConnector(KeySearch, Connector):
    """Caller -> HubSpot contact/company -> owner (cached owners directory), one search per object type."""

    type_name = "hubspot"
    config_schema = (
        Field("service_key", str, secret=True, help="account service key (Development > Keys > Service keys): a bearer token"),
        Field("access_token", str, secret=True, help="legacy private app access token"),
        Field("client_id", str, help="OAuth app client id (with client_secret and refresh_token)"),
        Field("client_secret", str, secret=True, help="OAuth app client secret"),
        Field("refresh_token", str, secret=True, help="OAuth refresh token from installing the app in the account"),
        Field("token_url", str, help="OAuth token endpoint (default: <base_url>/oauth/<api_version>/token)"),
        Field("base_url", str, default=DEFAULT_BASE_URL, help="HubSpot API root"),
        Field("api_version", str, default=API_VERSIONS[0], choices=API_VERSIONS,
              help="2026-03: date-versioned paths (/crm/objects/2026-03/...); v3: /crm/v3/... (unsupported from September 2027)"),
        Field("objects", list, default=list(OBJECTS), help="object types searched, in priority order: contacts, companies"),
        Field("owner_preference", str, default="contact", choices=("contact", "company"),
              help="for a contact: its own owner first, or the owner of its primary company first"),
        Field("phone_properties", list, default=list(DEFAULT_CONTACT_PHONE_PROPERTIES),
              help="contact properties searched for the caller's number (at most 5)"),
        Field("company_phone_properties", list,
              help="company properties searched (at most 5); default: phone, plus hs_searchable_calculated_phone_number when the portal has it"),
        Field("account_property", str, help="property holding the account id for CustomField/digits lookups; unset = no account lookups"),
        Field("account_object", str, default="companies", choices=OBJECTS, help="object type that carries account_property"),
        Field("owner_cache_s", float, default=3600.0, min=0, max=86400,
              help="how long an owner fetched by id (not in the directory) and a company's owner are cached"),
        Field("owners_refresh_s", float, default=900.0, min=30, max=86400, help="how often the owners directory is reloaded, in the background"),
        Field("queue_teams", dict, help="team for a record owned by a HubSpot queue, by queue id or name (default: the queue's name)"),
        Field("search_rate_per_s", float, default=DEFAULT_SEARCH_RATE, min=0.1, max=MAX_SEARCH_RATE,
              help="search requests per second this portal's dialwhom instances may make together (HubSpot allows 5 for all integrations)"),
        Field("portal_id", str, help="HubSpot account id: instances with the same portal_id share one search limit (default: those with the same credential)"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        base = (o.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ConfigError("base_url", f"'{base}' is not an http(s) URL; the default is {DEFAULT_BASE_URL}")
        self.base_url = base
        self.api_version = o.get("api_version") or API_VERSIONS[0]
        self.paths = Paths.of(self.api_version)
        self.auth_mode = self._auth_mode(o)
        self._oauth = self.auth_mode == "oauth"
        self._token_url = (o.get("token_url") or f"{base}{self.paths.token}").strip()
        self.oauth = OAuthClient(
            self.id, self._token_url, http=lambda: self.http, client_id=str(o["client_id"]),
            client_secret=str(o["client_secret"]), refresh_token=str(o["refresh_token"]),
            hint=lambda error: "check client_id, client_secret and refresh_token, or re-install the app",
        ) if self._oauth else None
        self.objects = self._objects(o.get("objects"))
        self._company_auto = o.get("company_phone_properties") is None
        self.phone_properties = {
            "contacts": self._properties("phone_properties", o.get("phone_properties")),
            "companies": self._properties("company_phone_properties", o.get("company_phone_properties") or list(DEFAULT_COMPANY_PHONE_PROPERTIES)),
        }
        account_property = o.get("account_property")
        if account_property is not None and not _PROPERTY_NAME.match(account_property):
            raise ConfigError("account_property", f"'{account_property}' is not a HubSpot property's internal name (letters, digits, '_')")
        self.account_property = account_property
        self.account_object = o.get("account_object") or "companies"
        self.owner_preference = o.get("owner_preference") or "contact"
        self.queue_teams = self._queue_teams(o.get("queue_teams"))
        cache_s = float(o.get("owner_cache_s", 3600.0))
        self._owners: TTLMemo[dict | None] = TTLMemo(maxsize=4096, ttl_s=max(cache_s, 0.001))
        self._company_owners: TTLMemo[str | None] = TTLMemo(maxsize=4096, ttl_s=max(cache_s, 0.001))
        self.token: CachedToken | None = CachedToken(self.oauth, margin_s=60.0, default_ttl_s=1800.0) if self.oauth else None
        self.search_rate = float(o.get("search_rate_per_s") or DEFAULT_SEARCH_RATE)
        # A bucket admits `burst` + `rate` requests in any one second; HubSpot counts 5 per
        # second, so the burst is what is left of 5 (at least 1).
        self.search_limiter = RateLimiter(
            self._limit_name(o), self.search_rate, 1.0, burst=max(1.0, MAX_SEARCH_RATE - self.search_rate),
            redis=context.redis, key_prefix=context.key_prefix,
        )
        self.directory = OwnersDirectory(self._load_owner_pages, float(o.get("owners_refresh_s") or 900.0))
        #: how background work is started (a daemon thread); tests swap in something synchronous
        self.spawn: Callable[[Callable[[], None]], None] = self._start_thread
        self._closed = False
        self._warm_lock = threading.Lock()
        self._warming = False
        self._warm_failed_at: float | None = None
        self._threads: list[threading.Thread] = []

    # -- config -------------------------------------------------------------------------------

    @staticmethod
    def _auth_mode(o: Mapping[str, Any]) -> str:
        """'service_key', 'private_app' or 'oauth'; ConfigError for anything else."""
        trio = ("client_id", "client_secret", "refresh_token")
        given = [k for k in trio if o.get(k)]
        static = [k for k in ("service_key", "access_token") if o.get(k)]
        if len(static) > 1:
            raise ConfigError("access_token", "set either service_key or access_token (a legacy private app token), not both")
        if static:
            if given:
                raise ConfigError(given[0], f"set either {static[0]} or client_id/client_secret/refresh_token (OAuth), not both")
            return "service_key" if static[0] == "service_key" else "private_app"
        if not given:
            raise ConfigError("service_key", "required: an account service key (service_key: ${HUBSPOT_SERVICE_KEY}), "
                                             "a legacy private app token (access_token), or the OAuth trio client_id, client_secret and refresh_token")
        missing = [k for k in trio if not o.get(k)]
        if missing:
            raise ConfigError(missing[0], f"required for OAuth (with {', '.join(k for k in trio if k != missing[0])}); "
                                          "or use a service_key instead")
        return "oauth"

    @staticmethod
    def _objects(value: Any) -> tuple[str, ...]:
        items = [str(x).strip().lower() for x in (value or [])]
        if not items:
            raise ConfigError("objects", f"list at least one of {', '.join(OBJECTS)}")
        for i, item in enumerate(items):
            if item not in OBJECTS:
                raise ConfigError(f"objects[{i}]", f"'{item}' is not one of {', '.join(OBJECTS)}")
        if len(set(items)) != len(items):
            raise ConfigError("objects", "each object type may appear once")
        return tuple(items)

    @staticmethod
    def _properties(key: str, value: Any) -> tuple[str, ...]:
        items = [str(x).strip() for x in (value or [])]
        if not items:
            raise ConfigError(key, "list at least one phone property")
        if len(items) > MAX_FILTER_GROUPS:
            raise ConfigError(key, f"{len(items)} properties; HubSpot allows {MAX_FILTER_GROUPS} filter groups per search, one per property")
        for i, item in enumerate(items):
            if not _PROPERTY_NAME.match(item):
                raise ConfigError(f"{key}[{i}]", f"'{item}' is not a HubSpot property's internal name (letters, digits, '_')")
        if len(set(items)) != len(items):
            raise ConfigError(key, "each property may appear once")
        return tuple(items)

    @staticmethod
    def _queue_teams(value: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in dict(value or {}).items():
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"queue_teams.{k}", "the team name (a key under 'teams')")
            out[str(k).strip().lower()] = v.strip()
        return out

    def _limit_name(self, o: Mapping[str, Any]) -> str:
        """The shared search bucket's name: per portal when portal_id is set, else per credential."""
        portal = str(o.get("portal_id") or "").strip()
        if portal:
            if not re.match(r"^[0-9]{1,20}$", portal):
                raise ConfigError("portal_id", f"'{portal}' is not a HubSpot account id (digits)")
            return f"hubspot-search:portal-{portal}"
        secret = str(o.get("service_key") or o.get("access_token") or f"{o.get('client_id')}:{o.get('refresh_token')}")
        return "hubspot-search:cred-" + hashlib.sha256(secret.encode()).hexdigest()[:16]

    # -- HTTP ---------------------------------------------------------------------------------

    def make_http(self) -> HttpClient:
        static = self.options.get("service_key") or self.options.get("access_token")
        headers = {"Authorization": f"Bearer {static}"} if static else {}
        return HttpClient(
            self.id,
            timeout_s=self.context.timeout_s,
            retries=self.context.retries,
            headers=headers,
            token_provider=self.token,
            classify=self._classify,
            refreshable=self._refreshable,
        )

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @staticmethod
    def _refreshable(resp: Response) -> bool:
        """A 401 is an expired or revoked OAuth token unless it names missing scopes."""
        info = _error_body(resp)
        return str(info.get("category") or "").upper() != "MISSING_SCOPES" and not _scopes(info)

    def _classify(self, resp: Response) -> ConnectorError | None:
        """HubSpot's error bodies say more than the status: keep the category, policy, scopes."""
        status = resp.status
        if status not in (400, 401, 403, 429):
            return None
        if _path(resp.url) == _path(self._token_url):
            return None  # the token endpoint's answers are read by the OAuth client itself
        info = _error_body(resp)
        where = f"{self.id}: HTTP {status} from {_path(resp.url)}"
        if status == 429:
            return self._rate_limited(resp, info, where)
        if status == 400:
            category = info.get("category") or "bad request"
            return BadResponse(f"{where}: {error_code(category)}: {error_code(info.get('message'))}", status=status)
        category = info.get("category") or ("INVALID_AUTHENTICATION" if status == 401 else "FORBIDDEN")
        hint = "check the credential" if status == 401 else "the credential lacks a scope"
        scopes = _scopes(info)
        if scopes:
            hint += f"; required scopes: {', '.join(scopes)}"
        return AuthError(f"{where}: {error_code(category)}: {error_code(info.get('message'))} ({hint})", status=status)

    @staticmethod
    def _rate_limited(resp: Response, info: dict, where: str) -> RateLimited:
        """A 429. With Retry-After the HTTP layer waits if that fits the deadline; without it,
        HubSpot's policy decides the hold and the lookup fails at once rather than spend half
        the caller's budget waiting for the next second."""
        policy = str(info.get("policyName") or "").upper()
        message = str(info.get("message") or "")
        wait = retry_after_seconds(resp.headers)
        header = wait is not None
        if wait is None:
            if policy == "DAILY" or "daily limit" in message.lower():
                wait, policy = DAILY_LIMIT_WAIT_S, policy or "DAILY"
            elif policy == "TEN_SECONDLY_ROLLING" or "ten_secondly" in message.lower():
                wait, policy = TEN_SECONDLY_WAIT_S, policy or "TEN_SECONDLY_ROLLING"
            else:  # SECONDLY, or search's "You have reached your secondly limit."
                wait, policy = SECONDLY_WAIT_S, policy or "SECONDLY"
        rate = _rate_note(resp.headers)
        err = RateLimited(f"{where}: HubSpot rate limit {policy or '(no policy named)'}" + (f"; {rate}" if rate else ""),
                          retry_after=wait, status=resp.status)
        if not header:
            err.retryable = False  # fail fast: the framework answers from stale or fallback
        return err

    def _json(self, resp: Response, what: str) -> dict:
        body = resp.json()
        if not isinstance(body, dict):
            raise BadResponse(f"{self.id}: {what} answer is not a JSON object", connector=self.id, status=resp.status)
        return body

    # -- background warm-up -------------------------------------------------------------------

    def warm(self, deadline: Deadline, *, company_properties: set[str] | None = None) -> str:
        """Load the owners directory (and, by default, which phone properties companies have) now."""
        parts = []
        if self._company_auto and "companies" in self.objects:
            names = company_properties if company_properties is not None else self._property_names("companies", deadline)
            props = list(DEFAULT_COMPANY_PHONE_PROPERTIES)
            if COMPANY_CALCULATED_PHONE in names:
                props.append(COMPANY_CALCULATED_PHONE)
            self.phone_properties["companies"] = tuple(props)
            self._company_auto = False
            parts.append(f"companies searched on {', '.join(props)}")
        active, archived, calls = self.directory.load(deadline)
        parts.append(f"owners directory: {active} active, {archived} archived ({calls} request{'s' if calls != 1 else ''})")
        return "; ".join(parts)

    def _maybe_warm(self) -> None:
        """Start the background warm-up when the directory is missing or due, once at a time."""
        now = self.directory.clock()
        if self._closed or not self.directory.due(now):
            return
        with self._warm_lock:
            if self._warming or (self._warm_failed_at is not None and now - self._warm_failed_at < WARM_RETRY_S):
                return
            self._warming = True
        self.spawn(self._warm_in_background)

    def _warm_in_background(self) -> None:
        failed = False
        try:
            note = self.warm(Deadline(WARM_BUDGET_S))
            self.log.info("connector=%s %s", self.id, note)
        except ConnectorError as exc:
            failed = True
            self.log.warning("connector=%s owners directory not loaded (%s: %s); owners are fetched one by one meanwhile",
                             self.id, type(exc).__name__, exc)
        except Exception:  # a background thread must not die silently or noisily
            failed = True
            self.log.exception("connector=%s owners directory load failed", self.id)
        finally:
            with self._warm_lock:
                self._warming = False
                self._warm_failed_at = self.directory.clock() if failed else None

    def _start_thread(self, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, name=f"hubspot-warm-{self.id}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def close(self) -> None:
        self._closed = True
        for t in self._threads:
            t.join(timeout=2.0)
        super().close()

    def _load_owner_pages(self, archived: bool, deadline: Deadline) -> tuple[list[dict], int]:
        """Every owner with this archived state, page by page; (owners, requests made)."""
        owners: list[dict] = []
        after: str | None = None
        calls = 0
        while True:
            _check_time(deadline, self.id)
            params = {"limit": OWNERS_PAGE, "archived": "true" if archived else "false"}
            if after:
                params["after"] = after
            resp = self.http.request("GET", self._url(self.paths.owners), deadline=deadline, params=params, ok=(200,))
            calls += 1
            body = self._json(resp, "owners list")
            results = body.get("results")
            if not isinstance(results, list):
                raise BadResponse(f"{self.id}: owners list answer has no 'results' list", connector=self.id, status=resp.status)
            owners += [dict(o, archived=archived) for o in results if isinstance(o, dict) and _clean_id(o.get("id"))]
            nxt = (body.get("paging") or {}).get("next") if isinstance(body.get("paging"), dict) else None
            after = str(nxt.get("after")) if isinstance(nxt, dict) and nxt.get("after") else None
            if after is None:
                return owners, calls

    def _property_names(self, obj: str, deadline: Deadline) -> set[str]:
        resp = self.http.request("GET", self._url(f"{self.paths.properties}/{obj}"), deadline=deadline, ok=(200,))
        results = self._json(resp, f"{obj} properties").get("results")
        if not isinstance(results, list):
            raise BadResponse(f"{self.id}: {obj} properties answer has no 'results' list", connector=self.id, status=resp.status)
        return {str(p.get("name")) for p in results if isinstance(p, dict) and p.get("name")}

    # -- lookup -------------------------------------------------------------------------------

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        if query.kind == "account" and not self.account_property:
            return None  # no property to search account keys in
        if not deadline.expired:
            self._maybe_warm()
        return super().lookup(query, deadline=deadline)

    def _find_by_phone(self, e164: str, deadline: Deadline, notes: list[str]) -> tuple[str, tuple] | None:
        """The first record, object type by object type, that resolves to an owner."""
        national = _national(e164)
        for obj in self.objects:
            _check_time(deadline, self.id)
            results, total = self._search(obj, self._phone_groups(obj, e164, national), self._wanted(obj), deadline, notes)
            verified = []
            for r in results:
                how = self._phone_match(obj, r, e164, national)
                if how:
                    verified.append((r, how))
            dropped = len(results) - len(verified)
            if dropped:
                notes.append(f"discarded {dropped} {obj} search hit(s) whose stored numbers are not the caller's")
            if total > len(results):
                notes.append(f"{total} {obj} matched the search; only the first {len(results)} were checked")
            found = self._first_owned(obj, [r for r, _ in verified], deadline, notes)
            if found is not None:
                how = next(h for r, h in verified if r is found[0])
                notes.append(f"matched {SINGULAR[obj]}/{found[0].get('id')} on {how}")
                return obj, found
        self.log.info("connector=%s no owned HubSpot record for %s", self.id, mask(e164))
        return None

    def _find_by_account(self, value: str, deadline: Deadline, notes: list[str]) -> tuple[str, tuple] | None:
        obj, prop = self.account_object, self.account_property
        groups = [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}]
        results, _ = self._search(obj, groups, self._wanted(obj) + [prop], deadline, notes)
        verified = [r for r in results if str(_props(r).get(prop) or "").strip().lower() == value.lower()]
        if len(results) > len(verified):
            notes.append(f"discarded {len(results) - len(verified)} {obj} hit(s) whose {prop} differs")
        found = self._first_owned(obj, verified, deadline, notes)
        if found is None:
            return None
        notes.append(f"matched {SINGULAR[obj]}/{found[0].get('id')} on {prop}")
        return obj, found

    def _phone_groups(self, obj: str, e164: str, national: str) -> list[dict]:
        """One group per phone property, plus, when a group is spare, a token match on the
        first plain property so a field holding several numbers ("9876543210, 9123456789")
        is found too."""
        forms = [f for f in variants(e164) if _safe_variant(f)]
        groups = []
        plain = [p for p in self.phone_properties[obj] if not p.startswith("hs_searchable_")]
        for prop in self.phone_properties[obj]:
            if prop.startswith("hs_searchable_"):
                groups.append({"filters": [{"propertyName": prop, "operator": "EQ", "value": national}]})
            else:
                groups.append({"filters": [{"propertyName": prop, "operator": "IN", "values": forms}]})
        if plain and len(groups) < MAX_FILTER_GROUPS:
            groups.append({"filters": [{"propertyName": plain[0], "operator": "CONTAINS_TOKEN", "value": national}]})
        return groups

    def _wanted(self, obj: str) -> list[str]:
        """Properties to return: phones (and their calculated twins), owner, names, modified."""
        wanted: list[str] = []
        for prop in self.phone_properties[obj]:
            wanted.append(prop)
            if prop in CALCULATED_TWIN:
                wanted.append(CALCULATED_TWIN[prop])
        wanted += list(NAME_PROPERTIES[obj]) + ["hubspot_owner_id", MODIFIED_PROPERTY[obj]]
        if obj == "contacts":
            wanted.append("associatedcompanyid")
        return list(dict.fromkeys(wanted))

    def _search(self, obj: str, groups: list, properties: list[str], deadline: Deadline, notes: list[str]) -> tuple[list[dict], int]:
        body = {
            "filterGroups": groups,
            "properties": properties,
            "sorts": [{"propertyName": MODIFIED_PROPERTY[obj], "direction": "DESCENDING"}],
            "limit": SEARCH_LIMIT,
        }
        try:
            self.search_limiter.acquire(deadline)
        except RateLimited as exc:
            exc.connector = self.id
            raise
        resp = self.http.request("POST", self._url(f"{self.paths.objects}/{obj}/search"), deadline=deadline, json_body=body, ok=(200,))
        _note_rate(resp, notes)
        data = self._json(resp, f"{obj} search")
        results = data.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise BadResponse(f"{self.id}: {obj} search answer has no 'results' list", connector=self.id, status=resp.status)
        total = data.get("total")
        return results, total if isinstance(total, int) else len(results)

    def _phone_match(self, obj: str, record: dict, e164: str, national: str) -> str | None:
        """Which returned property holds the caller's number, or None (a search over-match)."""
        props = _props(record)
        region = self.context.region
        for prop in self.phone_properties[obj]:
            value = props.get(prop)
            if not isinstance(value, str) or not value.strip():
                continue
            if prop.startswith("hs_searchable_"):
                if digits_only(value) != national:
                    continue
                twin = props.get(CALCULATED_TWIN.get(prop, ""))
                if isinstance(twin, str) and twin.strip() and not same_number(twin, e164, region):
                    continue  # same national digits, another country
                return prop
            if any(same_number(part, e164, region) for part in _numbers_in(value)):
                return prop
        for twin in CALCULATED_TWIN.values():
            value = props.get(twin)
            if isinstance(value, str) and same_number(value, e164, region):
                return twin
        return None

    def _ranked(self, obj: str, records: Sequence[dict], notes: list[str]) -> list[dict]:
        """The order records are tried in: those with an owner first, then (contacts) those
        with only a primary company; latest change first, then record id, within each."""

        def tier(r: dict) -> int:
            props = _props(r)
            if _clean_id(props.get("hubspot_owner_id")):
                return 0
            return 1 if obj == "contacts" and _clean_id(props.get("associatedcompanyid")) else 2

        ordered = sorted(records, key=lambda r: str(r.get("id") or ""))
        ordered = sorted(ordered, key=lambda r: _modified(obj, r), reverse=True)  # stable: ids stay ascending
        ordered = sorted(ordered, key=tier)
        skipped = sum(1 for r in ordered if tier(r) == 2)
        if skipped:
            notes.append(f"skipped {skipped} {obj} record(s) without an owner")
        return [r for r in ordered if tier(r) < 2]

    def _first_owned(self, obj: str, records: Sequence[dict], deadline: Deadline, notes: list[str]) -> tuple | None:
        """(record, owner data, source) for the first record in `_ranked` order whose owner resolves."""
        ranked = self._ranked(obj, records, notes)
        for i, record in enumerate(ranked):
            if i:
                _check_time(deadline, self.id)
            found = self._record_owner(obj, record, deadline, notes)
            if found is None:
                notes.append(f"{SINGULAR[obj]}/{record.get('id')} has no owner the owners API knows; trying the next record")
                continue
            if len(records) > 1:
                others = ", ".join(f"{obj}/{r.get('id')}" for r in records if r is not record)
                notes.append(f"{len(records)} records share this number; chose {obj}/{record.get('id')} "
                             f"(owned first, then latest change) over {others}")
            return (record, *found)
        return None

    def _record_owner(self, obj: str, record: dict, deadline: Deadline, notes: list[str]) -> tuple[dict, str] | None:
        """(owner data, source) for one record: its own owner and/or its primary company's,
        in `owner_preference` order; None when neither resolves."""
        props = _props(record)
        own_id = _clean_id(props.get("hubspot_owner_id"))
        company_id = _clean_id(props.get("associatedcompanyid")) if obj == "contacts" else None
        steps: list[tuple[str, Callable[[], str | None]]] = []
        own = (f"{SINGULAR[obj]} owner", lambda: own_id)
        company = (f"owner of primary company/{company_id}", lambda: self._company_owner(str(company_id), deadline, notes))
        if company_id and self.owner_preference == "company":
            steps = [company, (f"{SINGULAR[obj]} owner (primary company has none)", own[1])] if own_id else [company]
        else:
            steps = [own] if own_id else []
            if company_id:
                steps.append((company[0] + (" (contact has none)" if not own_id else ""), company[1]))
        for i, (source, owner_id_of) in enumerate(steps):
            if i:
                _check_time(deadline, self.id)
            owner_id = owner_id_of()
            if owner_id is None:
                continue
            data = self._owner_data(owner_id, deadline, notes)
            if data is not None:
                return data, source
        return None

    def _company_owner(self, company_id: str, deadline: Deadline, notes: list[str]) -> str | None:
        fetched: list[bool] = []

        def load() -> str | None:
            fetched.append(True)
            _check_time(deadline, self.id)
            resp = self.http.request(
                "GET", self._url(f"{self.paths.objects}/companies/{company_id}"), deadline=deadline,
                params={"properties": "hubspot_owner_id,name"}, ok=(200, 404),
            )
            _note_rate(resp, notes)
            if resp.status == 404:
                notes.append(f"primary company/{company_id} not found")
                return None
            return _clean_id(_props(self._json(resp, "company")).get("hubspot_owner_id"))

        owner_id = self._company_owners.get_or_load(company_id, load)
        if not fetched:
            notes.append(f"owner of company/{company_id} from cache")
        return owner_id

    # -- owner --------------------------------------------------------------------------------

    def _owner_data(self, owner_id: str, deadline: Deadline, notes: list[str]) -> dict | None:
        """The owner's record: from the directory, else fetched by id (archived ones too)."""
        data = self.directory.get(owner_id)
        if data is not None:
            notes.append(f"owner {owner_id} from the owners directory")
            return data
        fetched: list[bool] = []

        def load() -> dict | None:
            fetched.append(True)
            return self._fetch_owner(owner_id, deadline, notes)

        data = self._owners.get_or_load(owner_id, load)
        if not fetched:
            notes.append(f"owner {owner_id} from cache")
        if data is None:
            notes.append(f"owner {owner_id} is unknown to the owners API, active or archived")
        return data

    def _fetch_owner(self, owner_id: str, deadline: Deadline, notes: list[str]) -> dict | None:
        """GET the owner; on 404, GET it again as archived (a deactivated user)."""
        for archived in (False, True):
            _check_time(deadline, self.id)
            resp = self.http.request(
                "GET", self._url(f"{self.paths.owners}/{owner_id}"), deadline=deadline,
                params={"idProperty": "id", "archived": "true" if archived else "false"}, ok=(200, 404),
            )
            _note_rate(resp, notes)
            if resp.status == 200:
                return dict(self._json(resp, "owner"), archived=archived)
        return None

    def _answer(self, obj: str, found: tuple, deadline: Deadline, notes: list[str]) -> Match | None:
        record, data, source = found
        props = _props(record)
        rec = Record(type=SINGULAR[obj], id=str(record.get("id") or "") or None, name=_record_name(obj, props))
        notes.append(f"owner source: {source}")
        owner_id = str(data.get("id") or "")
        name = " ".join(str(data.get(k) or "").strip() for k in ("firstName", "lastName")).strip() or None
        email = data.get("email") if isinstance(data.get("email"), str) and data.get("email") else None
        if str(data.get("type") or "").upper() == "QUEUE":
            team = self.queue_teams.get(owner_id.lower()) or (self.queue_teams.get(name.lower()) if name else None) or name
            notes.append(f"owner {owner_id} is a HubSpot queue; routed to team {team!r}")
            queue = Owner(id=owner_id or None, name=name, active=False if data.get("archived") else None)
            return Match(owner=queue, team=team, record=rec, notes=tuple(notes))
        active = not data.get("archived")
        if not active:
            notes.append(f"owner {owner_id} is deactivated in HubSpot (archived)")
        owner = Owner(id=owner_id or None, email=email, name=name, phone=None, team=_primary_team(data.get("teams")), active=active)
        return Match(owner=owner, record=rec, notes=tuple(notes))

    # -- check --------------------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        """Run the real search for a number no one has, check every configured property
        exists, and load the owners directory; a refused step names the missing scope."""
        problems: list[ConnectorError] = []
        done: list[str] = []
        wanted: dict[str, set[str]] = {obj: set(self.phone_properties[obj]) for obj in self.objects}
        if self.account_property:
            wanted.setdefault(self.account_object, set()).add(self.account_property)
        known: dict[str, set[str]] = {}
        for obj, props in wanted.items():
            try:
                names = known[obj] = self._property_names(obj, deadline)
            except ConnectorError as exc:
                problems.append(exc)
                continue
            missing = sorted(props - names)
            if missing:
                problems.append(BadResponse(f"{self.id}: {obj} have no propert{'y' if len(missing) == 1 else 'ies'} "
                                            f"{', '.join(missing)} (properties API); a search naming it fails with 400"))
            else:
                done.append(f"{obj} properties present ({len(props)})")
        national = _national(CHECK_NUMBER)
        for obj in self.objects:
            try:
                results, _ = self._search(obj, self._phone_groups(obj, CHECK_NUMBER, national), self._wanted(obj), deadline, [])
                done.append(f"{obj} search ran ({len(results)} hit{'s' if len(results) != 1 else ''} for a number no one has)")
            except ConnectorError as exc:
                problems.append(exc)
        try:
            done.append(self.warm(deadline, company_properties=known.get("companies")))
        except ConnectorError as exc:
            problems.append(exc)
        if problems:
            text = "; ".join(str(p) for p in problems) + (f" (passed: {'; '.join(done)})" if done else "")
            kind = AuthError if any(isinstance(p, AuthError) for p in problems) else type(problems[0])
            raise kind(text, connector=self.id)
        mode = {"service_key": "service key", "private_app": "private app token", "oauth": "OAuth refresh token"}[self.auth_mode]
        shared = "shared through Redis" if self.context.redis is not None else "this process only"
        return (f"{mode} accepted at {self.base_url} (API {self.api_version}); " + "; ".join(done)
                + f"; search limited to {self.search_rate:g}/s ({shared})")


class OwnersDirectory:
    """Every HubSpot owner, active and archived, by owner id; reloaded whole every `refresh_s`.

    `load_pages(archived, deadline)` returns ``(owners, requests)`` for one archived state.
    """

    def __init__(self, load_pages: Callable[[bool, Deadline], tuple[list[dict], int]], refresh_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._load_pages = load_pages
        self.refresh_s = refresh_s
        self.clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, dict] | None = None
        self.loaded_at: float | None = None
        self.loads = 0

    def get(self, owner_id: str) -> dict | None:
        with self._lock:
            return None if self._by_id is None else self._by_id.get(owner_id)

    def due(self, now: float) -> bool:
        with self._lock:
            return self.loaded_at is None or now - self.loaded_at >= self.refresh_s

    def load(self, deadline: Deadline) -> tuple[int, int, int]:
        """Reload now; (active owners, archived owners, requests made)."""
        active, calls_a = self._load_pages(False, deadline)
        archived, calls_b = self._load_pages(True, deadline)
        by_id = {str(o["id"]): o for o in archived}
        by_id.update({str(o["id"]): o for o in active})  # an id in both: the active record wins
        with self._lock:
            self._by_id = by_id
            self.loaded_at = self.clock()
            self.loads += 1
        return len(active), len(archived), calls_a + calls_b

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id or {})


# -- helpers ----------------------------------------------------------------------------------


def _props(record: Mapping[str, Any]) -> Mapping[str, Any]:
    props = record.get("properties")
    return props if isinstance(props, dict) else {}


def _national(e164: str) -> str:
    """The national significant number (Italian leading zero kept): what `hs_searchable_calculated_*` holds."""
    return phonenumbers.national_significant_number(phonenumbers.parse(e164, None))


def _numbers_in(value: str) -> list[str]:
    """Each number a stored field holds: "98765 43210, 91234 56789" is two."""
    return [part.strip() for part in _NUMBER_SEPARATORS.split(value) if part.strip()]


def _safe_variant(form: str) -> bool:
    """A variant from `dialwhom.routing.phones.variants` is digits, '+', '-', spaces, parentheses only."""
    return bool(form) and all(ch.isdigit() and ch.isascii() or ch in "+- ()" for ch in form)


def _clean_id(value: Any) -> str | None:
    """A HubSpot numeric id (goes into a URL path, so nothing else is accepted)."""
    text = str(value).strip() if value is not None else ""
    return text if _NUMERIC_ID.match(text) else None


def _record_name(obj: str, props: Mapping[str, Any]) -> str | None:
    parts = [str(props.get(k) or "").strip() for k in NAME_PROPERTIES[obj]]
    return " ".join(p for p in parts if p) or None


def _modified(obj: str, record: Mapping[str, Any]) -> str:
    """Last change as sortable UTC text (HubSpot mixes 'Z' with and without milliseconds)."""
    raw = _props(record).get(MODIFIED_PROPERTY[obj]) or record.get("updatedAt") or ""
    return as_utc(str(raw))


def _primary_team(teams: Any) -> str | None:
    if not isinstance(teams, list):
        return None
    teams = [t for t in teams if isinstance(t, dict) and t.get("name")]
    primary = [t for t in teams if t.get("primary")]
    chosen = (primary or teams or [None])[0]
    return str(chosen["name"]) if chosen else None


def _error_body(resp: Response) -> dict:
    try:
        body = resp.json()
    except ConnectorError:
        return {}
    return body if isinstance(body, dict) else {}


def _scopes(info: Mapping[str, Any]) -> list[str]:
    """The scopes a 401/403 names: ``context.requiredScopes``/``missingScopes`` or, in the
    MISSING_SCOPES shape, ``errors[].context.requiredGranularScopes``."""
    contexts = [info.get("context")] + [e.get("context") for e in info.get("errors") or [] if isinstance(e, dict)]
    out: list[str] = []
    for ctx in contexts:
        if not isinstance(ctx, dict):
            continue
        for key in ("requiredScopes", "missingScopes", "requiredGranularScopes"):
            for scope in ctx.get(key) or []:
                if isinstance(scope, str) and _SCOPE_NAME.match(scope) and scope not in out:
                    out.append(scope)
    return out


def _rate_note(headers: Mapping[str, str]) -> str | None:
    """`X-HubSpot-RateLimit-*` headers as one short note (search answers carry none)."""
    got = {h: headers.get(h) for h in RATE_HEADERS}
    parts = []
    if got["X-HubSpot-RateLimit-Remaining"] is not None:
        per = got["X-HubSpot-RateLimit-Interval-Milliseconds"]
        parts.append(f"{got['X-HubSpot-RateLimit-Remaining']}/{got['X-HubSpot-RateLimit-Max'] or '?'} left"
                     + (f" per {per} ms" if per else ""))
    if got["X-HubSpot-RateLimit-Daily-Remaining"] is not None:
        parts.append(f"daily {got['X-HubSpot-RateLimit-Daily-Remaining']}/{got['X-HubSpot-RateLimit-Daily'] or '?'} left")
    return "hubspot rate limit: " + ", ".join(parts) if parts else None


def _note_rate(resp: Response, notes: list[str]) -> None:
    note = _rate_note(resp.headers)
    if note:
        notes[:] = [n for n in notes if not n.startswith("hubspot rate limit:")] + [note]



def _path(url: str | None) -> str:
    return (url or "?").split("?", 1)[0]


def _check_time(deadline: Deadline, connector: str) -> None:
    if deadline.expired:
        raise ConnectorTimeout(f"{connector}: out of time between HubSpot calls", connector=connector)
