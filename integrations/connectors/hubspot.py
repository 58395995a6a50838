"""HubSpot CRM connector. API reference: https://developers.hubspot.com/docs/api-reference/search/guide

Finds the caller among HubSpot contacts (then companies) with one CRM search per object type,
re-checks every hit on our side, and answers with the record owner from the owners API
(cached). Admin guide: docs/crm/hubspot.md.

Calls per uncached lookup (owner not cached yet, token valid):

- phone, contact hit, ``owner_preference: contact``: 2 (contact search, owner);
- phone, no contact, company hit: 3 (contact search, company search, owner);
- ``owner_preference: company`` and the contact has a primary company: +1 (company GET);
- not found: 1 search per entry of ``objects`` (2 by default);
- OAuth mode: +1 token refresh when the cached access token has expired (about every 30 min).

With the owner cached, a hit costs 1 search (2 when it is a company; +1 company GET in
company-owner mode).
"""

from __future__ import annotations

import re
import threading
from typing import Any, Mapping, Sequence

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
    ConnectorTimeout,
    Deadline,
    Field,
    HttpClient,
    KeySearch,
    Match,
    Owner,
    Query,
    RateLimited,
    Record,
    Response,
    TTLMemo,
    as_utc,
    digits_only,
    error_code,
    mask,
    pick_record,
    retry_after_seconds,
    same_number,
    variants,
)

__all__ = ["HubSpotConnector"]

DEFAULT_BASE_URL = "https://api.hubapi.com"
OBJECTS = ("contacts", "companies")
DEFAULT_CONTACT_PHONE_PROPERTIES = [
    "hs_searchable_calculated_phone_number",
    "hs_searchable_calculated_mobile_number",
    "phone",
    "mobilephone",
]
# Only `phone` is confirmed on companies; the calculated twins are not (a filter on a missing
# property is a 400 for the whole search).
DEFAULT_COMPANY_PHONE_PROPERTIES = ["phone"]
#: HubSpot's search limits (current docs: 5 groups, 6 filters per group, 18 in total). Every
#: phone property is one group holding one filter.
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
#: No Retry-After on a 429: wait this long (search buckets are per second, the general one is
#: a 10 s rolling window); a DAILY 429 will not clear within any caller's patience.
RATE_LIMIT_WAIT_S = 1.0
DAILY_LIMIT_WAIT_S = 3600.0
RATE_HEADERS = (
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
)

_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")
_NUMERIC_ID = re.compile(r"^[0-9]{1,20}$")


class HubSpotConnector(KeySearch, Connector):
    """Caller -> HubSpot contact/company -> owner (owners API), one search per object type."""

    type_name = "hubspot"
    config_schema = (
        Field("access_token", str, secret=True, help="private app access token (or use the OAuth keys instead)"),
        Field("client_id", str, help="OAuth app client id (with client_secret and refresh_token)"),
        Field("client_secret", str, secret=True, help="OAuth app client secret"),
        Field("refresh_token", str, secret=True, help="OAuth refresh token from installing the app in the account"),
        Field("token_url", str, help="OAuth token endpoint (default: <base_url>/oauth/v3/token)"),
        Field("base_url", str, default=DEFAULT_BASE_URL, help="HubSpot API root"),
        Field("objects", list, default=list(OBJECTS), help="object types searched, in priority order: contacts, companies"),
        Field("owner_preference", str, default="contact", choices=("contact", "company"),
              help="for a contact: its own owner first, or the owner of its primary company first"),
        Field("phone_properties", list, default=list(DEFAULT_CONTACT_PHONE_PROPERTIES),
              help="contact properties searched for the caller's number (at most 5)"),
        Field("company_phone_properties", list, default=list(DEFAULT_COMPANY_PHONE_PROPERTIES),
              help="company properties searched for the caller's number (at most 5)"),
        Field("account_property", str, help="property holding the account id for CustomField/digits lookups; unset = no account lookups"),
        Field("account_object", str, default="companies", choices=OBJECTS, help="object type that carries account_property"),
        Field("owner_cache_s", float, default=3600.0, min=0, max=86400, help="how long owner details are cached"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        base = (o.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise ConfigError("base_url", f"'{base}' is not an http(s) URL; the default is {DEFAULT_BASE_URL}")
        self.base_url = base
        self._oauth = self._auth_mode(o)
        self._token_url = (o.get("token_url") or f"{base}/oauth/v3/token").strip()
        self._refresh_token = str(o["refresh_token"]) if self._oauth else None
        self._refresh_lock = threading.Lock()
        self.objects = self._objects(o.get("objects"))
        self.phone_properties = {
            "contacts": self._properties("phone_properties", o.get("phone_properties")),
            "companies": self._properties("company_phone_properties", o.get("company_phone_properties")),
        }
        account_property = o.get("account_property")
        if account_property is not None and not _PROPERTY_NAME.match(account_property):
            raise ConfigError("account_property", f"'{account_property}' is not a HubSpot property's internal name (letters, digits, '_')")
        self.account_property = account_property
        self.account_object = o.get("account_object") or "companies"
        self.owner_preference = o.get("owner_preference") or "contact"
        self._owners: TTLMemo[dict | None] = TTLMemo(maxsize=4096, ttl_s=float(o.get("owner_cache_s", 3600.0)))
        self.token: CachedToken | None = CachedToken(self._fetch_token, margin_s=60.0, default_ttl_s=1800.0) if self._oauth else None

    # -- config -------------------------------------------------------------------------------

    @staticmethod
    def _auth_mode(o: Mapping[str, Any]) -> bool:
        """True for OAuth refresh, False for a private app token; ConfigError for anything else."""
        trio = ("client_id", "client_secret", "refresh_token")
        given = [k for k in trio if o.get(k)]
        if o.get("access_token"):
            if given:
                raise ConfigError(given[0], "set either access_token (private app) or client_id/client_secret/refresh_token (OAuth), not both")
            return False
        if not given:
            raise ConfigError("access_token", "required: a private app access token (access_token: ${HUBSPOT_TOKEN}), "
                                              "or the OAuth trio client_id, client_secret and refresh_token")
        missing = [k for k in trio if not o.get(k)]
        if missing:
            raise ConfigError(missing[0], f"required for OAuth (with {', '.join(k for k in trio if k != missing[0])}); "
                                          "or use a private app access_token instead")
        return True

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

    # -- HTTP ---------------------------------------------------------------------------------

    def make_http(self) -> HttpClient:
        headers = {} if self._oauth else {"Authorization": f"Bearer {self.options['access_token']}"}
        return HttpClient(
            self.id,
            timeout_s=self.context.timeout_s,
            retries=self.context.retries,
            headers=headers,
            token_provider=self.token,
            classify=self._classify,
            refreshable=self._refreshable,
        )

    def _fetch_token(self, deadline: Deadline) -> tuple[str, float | None]:
        """OAuth refresh: POST the token endpoint, parameters in the form body (v3 rule)."""
        with self._refresh_lock:
            refresh = self._refresh_token
        resp = self.http.request(
            "POST", self._token_url, deadline=deadline, auth=False, retry=False, ok=(200,),
            data={
                "grant_type": "refresh_token",
                "client_id": str(self.options["client_id"]),
                "client_secret": str(self.options["client_secret"]),
                "refresh_token": str(refresh),
            },
        )
        body = resp.json()
        token = body.get("access_token") or body.get("accessToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BadResponse(f"{self.id}: token answer from {self._token_url} has no access_token", connector=self.id, status=resp.status)
        expires = body.get("expires_in", body.get("expiresIn"))
        new_refresh = body.get("refresh_token") or body.get("refreshToken")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != refresh:
            with self._refresh_lock:
                self._refresh_token = new_refresh
            self.log.info("connector=%s HubSpot returned a new refresh token; using it until restart", self.id)
        try:
            ttl = float(expires) if expires is not None else None
        except (TypeError, ValueError):
            ttl = None
        return token, ttl

    @staticmethod
    def _refreshable(resp: Response) -> bool:
        """A 401 is an expired or revoked OAuth token unless it names missing scopes."""
        info = _error_body(resp)
        ctx = info.get("context") if isinstance(info.get("context"), dict) else {}
        return str(info.get("category") or "").upper() != "MISSING_SCOPES" and not (ctx.get("requiredScopes") or ctx.get("missingScopes"))

    def _classify(self, resp: Response) -> ConnectorError | None:
        """HubSpot's error bodies say more than the status: keep the category, policy, scopes."""
        status = resp.status
        if status not in (400, 401, 403, 429):
            return None
        info = _error_body(resp)
        where = f"{self.id}: HTTP {status} from {_path(resp.url)}"
        if status != 429 and _path(resp.url) == _path(self._token_url):
            reason = info.get("error") or info.get("status") or info.get("category") or "refused"
            detail = info.get("error_description") or info.get("message") or ""
            return AuthError(f"{where}: OAuth refresh refused ({error_code(reason)}: {error_code(detail)}); "
                             "check client_id, client_secret and refresh_token, or re-install the app", status=status)
        if status == 429:
            policy = str(info.get("policyName") or info.get("errorType") or "")
            wait = retry_after_seconds(resp.headers)
            if wait is None:
                wait = DAILY_LIMIT_WAIT_S if policy.upper() == "DAILY" else RATE_LIMIT_WAIT_S
            rate = _rate_note(resp.headers)
            return RateLimited(f"{where}: HubSpot rate limit {policy or '(no policy named)'}" + (f"; {rate}" if rate else ""),
                               retry_after=wait, status=status)
        if status == 400:
            category = info.get("category") or "bad request"
            return BadResponse(f"{where}: {error_code(category)}: {error_code(info.get('message'))}", status=status)
        category = info.get("category") or ("INVALID_AUTHENTICATION" if status == 401 else "FORBIDDEN")
        hint = "check the access token" if status == 401 else "the token lacks a scope"
        ctx = info.get("context") if isinstance(info.get("context"), dict) else {}
        scopes = ctx.get("requiredScopes") or ctx.get("missingScopes") or []
        if scopes and isinstance(scopes, list):
            hint += f"; required scopes: {', '.join(map(str, scopes))}"
        return AuthError(f"{where}: {error_code(category)}: {error_code(info.get('message'))} ({hint})", status=status)

    def _json(self, resp: Response, what: str) -> dict:
        body = resp.json()
        if not isinstance(body, dict):
            raise BadResponse(f"{self.id}: {what} answer is not a JSON object", connector=self.id, status=resp.status)
        return body

    # -- lookup -------------------------------------------------------------------------------

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        if query.kind == "account" and not self.account_property:
            return None  # no property to search account keys in
        return super().lookup(query, deadline=deadline)

    def _find_by_phone(self, e164: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        national = _national(e164)
        forms = [f for f in variants(e164) if _safe_variant(f)]
        for obj in self.objects:
            _check_time(deadline, self.id)
            props = self.phone_properties[obj]
            groups = []
            for prop in props:
                if prop.startswith("hs_searchable_"):
                    groups.append({"filters": [{"propertyName": prop, "operator": "EQ", "value": national}]})
                else:
                    groups.append({"filters": [{"propertyName": prop, "operator": "IN", "values": forms}]})
            results, total = self._search(obj, groups, self._wanted(obj), deadline, notes)
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
            if verified:
                record = self._pick(obj, [r for r, _ in verified], notes)
                how = next(h for r, h in verified if r is record)
                notes.append(f"matched {SINGULAR[obj]}/{record.get('id')} on {how}")
                return obj, record
        self.log.info("connector=%s no HubSpot record for %s", self.id, mask(e164))
        return None

    def _find_by_account(self, value: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        obj, prop = self.account_object, self.account_property
        groups = [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}]
        results, _ = self._search(obj, groups, self._wanted(obj) + [prop], deadline, notes)
        verified = [r for r in results if str(_props(r).get(prop) or "").strip().lower() == value.lower()]
        if len(results) > len(verified):
            notes.append(f"discarded {len(results) - len(verified)} {obj} hit(s) whose {prop} differs")
        if not verified:
            return None
        record = self._pick(obj, verified, notes)
        notes.append(f"matched {SINGULAR[obj]}/{record.get('id')} on {prop}")
        return obj, record

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
        resp = self.http.request("POST", f"{self.base_url}/crm/v3/objects/{obj}/search", deadline=deadline, json_body=body, ok=(200,))
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
            if same_number(value, e164, region):
                return prop
        for twin in CALCULATED_TWIN.values():
            value = props.get(twin)
            if isinstance(value, str) and same_number(value, e164, region):
                return twin
        return None

    def _pick(self, obj: str, records: Sequence[dict], notes: list[str]) -> dict:
        """Owned records first; then `pick_record` (object priority, latest change, id)."""
        owned = [r for r in records if _props(r).get("hubspot_owner_id") or _props(r).get("associatedcompanyid")]
        pool = owned or list(records)
        if owned and len(owned) < len(records):
            notes.append(f"skipped {len(records) - len(owned)} {obj} record(s) without an owner")
        candidates = [
            Candidate(obj, str(r.get("id") or ""), _modified(obj, r), data=r) for r in pool
        ]
        winner, note = pick_record(candidates, self.objects)
        if note:
            notes.append(note)
        assert winner is not None
        return winner.data

    # -- owner --------------------------------------------------------------------------------

    def _answer(self, obj: str, record: dict, deadline: Deadline, notes: list[str]) -> Match | None:
        props = _props(record)
        rec = Record(type=SINGULAR[obj], id=str(record.get("id") or "") or None, name=_record_name(obj, props))
        own_id = _clean_id(props.get("hubspot_owner_id"))
        company_id = _clean_id(props.get("associatedcompanyid")) if obj == "contacts" else None
        owner_id, source = None, ""
        if obj == "contacts" and self.owner_preference == "company" and company_id:
            owner_id = self._company_owner(company_id, deadline, notes)
            source = f"owner of primary company/{company_id}"
            if owner_id is None and own_id:
                owner_id, source = own_id, "contact owner (primary company has none)"
        if owner_id is None and own_id:
            owner_id, source = own_id, f"{SINGULAR[obj]} owner"
        if owner_id is None and obj == "contacts" and company_id and self.owner_preference == "contact":
            owner_id = self._company_owner(company_id, deadline, notes)
            source = f"owner of primary company/{company_id} (contact has none)"
        if owner_id is None:
            self.log.info("connector=%s %s/%s has no owner", self.id, rec.type, rec.id)
            return None
        notes.append(f"owner source: {source}")
        owner = self._owner(owner_id, deadline, notes)
        return Match(owner=owner, record=rec, notes=tuple(notes))

    def _company_owner(self, company_id: str, deadline: Deadline, notes: list[str]) -> str | None:
        _check_time(deadline, self.id)
        resp = self.http.request(
            "GET", f"{self.base_url}/crm/v3/objects/companies/{company_id}", deadline=deadline,
            params={"properties": "hubspot_owner_id,name"}, ok=(200, 404),
        )
        _note_rate(resp, notes)
        if resp.status == 404:
            notes.append(f"primary company/{company_id} not found")
            return None
        return _clean_id(_props(self._json(resp, "company")).get("hubspot_owner_id"))

    def _owner(self, owner_id: str, deadline: Deadline, notes: list[str]) -> Owner:
        fetched: list[bool] = []

        def load() -> dict | None:
            fetched.append(True)
            _check_time(deadline, self.id)
            resp = self.http.request(
                "GET", f"{self.base_url}/crm/v3/owners/{owner_id}", deadline=deadline,
                params={"idProperty": "id", "archived": "false"}, ok=(200, 404),
            )
            _note_rate(resp, notes)
            if resp.status == 404:
                return None
            return self._json(resp, "owner")

        data = self._owners.get_or_load(owner_id, load)
        if not fetched:
            notes.append(f"owner {owner_id} from cache")
        if data is None:
            notes.append(f"owner {owner_id} not in the owners API (deactivated?); matching reps by id only")
            return Owner(id=owner_id)
        name = " ".join(str(data.get(k) or "").strip() for k in ("firstName", "lastName")).strip() or None
        email = data.get("email") if isinstance(data.get("email"), str) and data.get("email") else None
        return Owner(id=str(data.get("id") or owner_id), email=email, name=name, phone=None, team=_primary_team(data.get("teams")))

    # -- check --------------------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        resp = self.http.request("GET", f"{self.base_url}/crm/v3/owners", deadline=deadline, params={"limit": 1}, ok=(200,))
        body = self._json(resp, "owners list")
        if not isinstance(body.get("results"), list):
            raise BadResponse(f"{self.id}: owners list answer has no 'results' list", connector=self.id, status=resp.status)
        mode = "OAuth refresh token" if self._oauth else "private app token"
        rate = _rate_note(resp.headers)
        return f"{mode} accepted; owners API reachable at {self.base_url}" + (f" ({rate})" if rate else "")


# -- helpers ----------------------------------------------------------------------------------


def _props(record: Mapping[str, Any]) -> Mapping[str, Any]:
    props = record.get("properties")
    return props if isinstance(props, dict) else {}


def _national(e164: str) -> str:
    """The national significant number: what `hs_searchable_calculated_*` holds."""
    n = phonenumbers.parse(e164, None)
    return str(n.national_number)


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
