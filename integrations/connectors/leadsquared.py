"""LeadSquared connector. API reference: https://apidocs.leadsquared.com/ (admin guide: docs/crm/leadsquared.md).

Finds the caller's lead with ``RetrieveLeadByPhoneNumber`` (LeadSquared searches the lead's
Phone and Mobile fields and returns the lead with the most recent activity), re-checks the
number on our side, and answers with the lead owner (``OwnerId``, ``OwnerIdEmailAddress``,
``OwnerIdName``). Who is active comes from a cached users directory (``Users.Get``); the owner's
team, manager and phone from ``User/Retrieve/ByUserId``, cached per user.

Keys travel in the ``x-LSQ-AccessKey`` / ``x-LSQ-SecretKey`` headers, never in the URL (the
docs' query-string form ends up in proxy and server logs). Every call first takes a slot from a
local token bucket sized to the plan's limit (2-25 calls per 5 s), shared through Redis when
``shared_state`` is set; a slot that would cost more wait than the caller has left is refused.

Calls per lookup:

- phone, owner seen before (warm): 1 (the lead search);
- phone, users directory cold or stale: +1 ``Users.Get``, made *concurrently* with the search
  (no extra round trip);
- phone, owner not seen before: +1 serial ``User/Retrieve/ByUserId`` (team, manager, phone),
  then kept: after ``directory_ttl_s`` the kept details are still answered and refreshed in the
  background, so a known owner never costs a serial call again; skipped for a user the directory
  lists as inactive;
- account key (``account_lookup``): 1 ``Leads.Get`` or ``GetOpportunityDetails``, same owner rules;
- not found: 1.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any, Callable, Mapping

import phonenumbers
from cachetools import TTLCache

from dialwhom.sdk import (
    error_code,
    AuthError,
    BadResponse,
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
    RateLimited,
    RateLimiter,
    Record,
    Response,
    mask,
    retry_after_seconds,
    same_number,
)

__all__ = ["LeadSquaredConnector", "PLAN_CALLS_PER_5S"]

DEFAULT_HOST = "https://api-in21.leadsquared.com"
#: https://apidocs.leadsquared.com/rate-limits/ (calls per 5 seconds, by plan)
PLAN_CALLS_PER_5S = {"lite": 2, "pro": 5, "super": 10, "basic": 10, "standard": 15, "enterprise": 25}
LEAD_COLUMNS = ("ProspectID", "FirstName", "LastName", "Phone", "Mobile", "OwnerId", "OwnerIdName",
                "OwnerIdEmailAddress", "ProspectActivityDate_Max")
#: what `dialwhom check` searches for: a number no lead should have
CHECK_NUMBER = "+919000000000"
PHONE_FORMS = ("country_code", "national")
#: owners whose details are kept (the oldest goes first past this)
MAX_OWNERS = 4096

_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_INPUT_ERROR = re.compile(r"^MX(Invalid|Mandatory)")
_WINDOW = re.compile(r"limit of (\d+) in (\d+) second", re.I)


class LeadSquaredConnector(KeySearch, Connector):
    """Caller -> LeadSquared lead (or opportunity) -> owner, team and manager from the users API."""

    type_name = "leadsquared"
    config_schema = (
        Field("access_key", str, required=True, secret=True, help="Access Key (My Account > Settings > API and Webhooks) of an Administrator"),
        Field("secret_key", str, required=True, secret=True, help="Secret Key shown next to the Access Key"),
        Field("host", str, default=DEFAULT_HOST, help="your region's API host, e.g. https://api-in21.leadsquared.com (Mumbai), "
                                                      "https://api.leadsquared.com (Singapore), https://api-us11.leadsquared.com (US)"),
        Field("plan", str, default="pro", choices=tuple(PLAN_CALLS_PER_5S), help="subscription plan; sets the API limit (calls per 5 s)"),
        Field("calls_per_5s", int, min=1, max=100, help="the account's API limit per 5 s, when it differs from the plan's"),
        Field("phone_form", str, default="country_code", choices=PHONE_FORMS,
              help="how the caller's number is sent: country_code (919876543210) or national (9876543210)"),
        Field("account_lookup", str, default="none", choices=("none", "lead_field", "opportunity_id"),
              help="what a CustomField/digits key is: a lead field's value, an opportunity id, or not looked up"),
        Field("account_field", str, default="ProspectID", help="lead field (schema name) holding the key, for account_lookup: lead_field"),
        Field("directory_ttl_s", float, default=900.0, min=10, max=86400, help="how long the users directory and owner details are kept"),
        Field("prefetch_details", bool, default=False,
              help="after loading the users list, fetch every active user's team and manager in the background, "
                   "using at most half the rate limit, so no owner's first call waits for them"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        host = str(o.get("host") or DEFAULT_HOST).strip().rstrip("/")
        if host.endswith("/v2"):
            host = host[:-3]
        if not re.match(r"^https?://[^/\s?#]+$", host):
            raise ConfigError("host", f"'{host}' is not an API host such as {DEFAULT_HOST} (scheme and host only)")
        self.host = host
        field = str(o.get("account_field") or "ProspectID")
        if not _SCHEMA_NAME.match(field):
            raise ConfigError("account_field", f"'{field}' is not a lead field schema name (letters, digits, '_'; e.g. mx_Account_Number)")
        self.account_field = field
        self.account_lookup = o.get("account_lookup") or "none"
        self.phone_form = o.get("phone_form") or "country_code"
        self.calls_per_5s = int(o.get("calls_per_5s") or PLAN_CALLS_PER_5S[o.get("plan") or "pro"])
        ttl = float(o.get("directory_ttl_s") or 900.0)
        account = hashlib.sha256(str(o["access_key"]).encode()).hexdigest()[:12]
        # One bucket per LeadSquared account (the limit is the account's), shared by instances via Redis.
        self.limiter = RateLimiter(f"leadsquared:{account}", self.calls_per_5s, 5.0,
                                   redis=context.redis, key_prefix=context.key_prefix)
        # the users list as one entry {id or lower-case email: user}, replaced whole when it expires
        self._users: TTLCache = TTLCache(maxsize=1, ttl=ttl)
        self._users_lock = threading.Lock()
        self._users_load: tuple[threading.Thread, list[BaseException]] | None = None
        # owner details by user id: (fetched at, details); past `ttl` they are still answered, and
        # refreshed in the background, so a known owner never costs a serial call again
        self._details: dict[str, tuple[float, dict]] = {}
        self._details_lock = threading.Lock()
        self._refreshing: set[str] = set()
        self._ttl = ttl
        self._clock = time.monotonic
        self.prefetch = bool(o.get("prefetch_details"))
        self._closed = threading.Event()

    # -- HTTP ---------------------------------------------------------------------------------

    def make_http(self) -> HttpClient:
        headers = {"x-LSQ-AccessKey": str(self.options["access_key"]), "x-LSQ-SecretKey": str(self.options["secret_key"])}
        return HttpClient(self.id, timeout_s=self.context.timeout_s, retries=self.context.retries,
                          headers=headers, classify=self._classify)

    def _call(self, method: str, path: str, deadline: Deadline, *, params: Mapping[str, Any] | None = None,
              body: Any = None) -> Any:
        """One API call, after a slot from the plan's rate limit; the decoded JSON."""
        if deadline.expired:
            raise ConnectorTimeout(f"{self.id}: out of time before {path}", connector=self.id)
        self.limiter.acquire(deadline)
        resp = self.http.request(method, f"{self.host}/v2/{path}", deadline=deadline, params=params, json_body=body, ok=(200,))
        return resp.json()

    def _classify(self, resp: Response) -> ConnectorError | None:
        """LeadSquared's error bodies: ``{"Status": "Error", "ExceptionType": ..., "ExceptionMessage": ...}``."""
        status = resp.status
        if status not in (400, 401, 403, 429, 500):
            return None
        kind, message = _error_info(resp)
        where = f"{self.id}: HTTP {status} from {_path(resp.url)}"
        # the vendor's code is quoted, its free text never (a CRM may echo keys or an email)
        detail = f" ({error_code(kind)}: {error_code(message)})" if kind or message else ""
        if status == 500:
            # LeadSquared answers bad input with a 500 too (its docs' own example is a missing
            # parameter): those are not outages, retrying or opening the breaker helps nobody.
            return BadResponse(f"{where}{detail}", status=status) if _INPUT_ERROR.match(kind) else None
        if status == 429:
            wait = retry_after_seconds(resp.headers)
            window = _WINDOW.search(message)
            if wait is None:
                wait = float(window.group(2)) if window else 5.0
            return RateLimited(f"{where}: LeadSquared API limit{detail}; the plan allows {self.calls_per_5s} calls per 5 s here "
                               "(set plan or calls_per_5s to the account's limit)", retry_after=wait, status=status)
        if status == 401:
            return AuthError(f"{where}: keys refused{detail}; check access_key/secret_key, that their user is active, and that "
                             f"host is your region's (Authentication.svc/UserByAccessKey.Get names it)", status=status)
        if status == 403:
            return AuthError(f"{where}: permission denied{detail}; the keys' user lacks a permission this call needs "
                             "(use an Administrator's keys)", status=status)
        return BadResponse(f"{where}{detail}", status=status)

    def _rows(self, data: Any, what: str) -> list[dict]:
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BadResponse(f"{self.id}: {what} answer is not a list of records", connector=self.id)
        return data

    # -- lookup -------------------------------------------------------------------------------

    def lookup(self, query, *, deadline: Deadline) -> Match | None:
        if query.kind == "account" and self.account_lookup == "none":
            return None
        if deadline.expired:
            raise ConnectorTimeout(f"{self.id}: no time left for LeadSquared", connector=self.id)
        return super().lookup(query, deadline=deadline)

    def _find_by_phone(self, e164: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        number = phonenumbers.parse(e164, None)
        phone = str(number.national_number)
        if self.phone_form == "country_code":
            phone = f"{number.country_code}{phone}"
        path = "LeadManagement.svc/RetrieveLeadByPhoneNumber"
        leads = self._rows(self._with_directory(lambda: self._call("GET", path, deadline, params={"phone": phone}), deadline, notes), "lead search")
        region = self.context.region
        hits = [lead for lead in leads if same_number(lead.get("Phone"), e164, region) or same_number(lead.get("Mobile"), e164, region)]
        if len(leads) > len(hits):
            notes.append(f"discarded {len(leads) - len(hits)} lead(s) whose Phone/Mobile is not the caller's number")
        if not hits:
            self.log.info("connector=%s no LeadSquared lead for %s", self.id, mask(e164))
            return None
        lead = hits[0]  # LeadSquared answers the lead with the most recent activity
        field = "Phone" if same_number(lead.get("Phone"), e164, region) else "Mobile"
        notes.append(f"matched lead/{lead.get('ProspectID')} on {field} (LeadSquared picks the most recently active lead)")
        return "lead", lead

    def _find_by_account(self, value: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        if self.account_lookup == "opportunity_id":
            try:
                data = self._with_directory(lambda: self._call("GET", "OpportunityManagement.svc/GetOpportunityDetails", deadline,
                                                               params={"OpportunityId": value}), deadline, notes)
            except BadResponse as exc:
                if "MXInvalidEntityReference" in str(exc):  # no such opportunity: the caller keyed a wrong id
                    return None
                raise
            return self._opportunity(data, value, notes)
        body = {
            "Parameter": {"LookupName": self.account_field, "LookupValue": value, "SqlOperator": "="},
            "Columns": {"Include_CSV": ",".join(dict.fromkeys((*LEAD_COLUMNS, self.account_field)))},
            "Sorting": {"ColumnName": "ModifiedOn", "Direction": "1"},
            "Paging": {"PageIndex": 1, "PageSize": 10},
        }
        leads = self._rows(self._with_directory(lambda: self._call("POST", "LeadManagement.svc/Leads.Get", deadline, body=body), deadline, notes), "Leads.Get")
        hits = [lead for lead in leads if str(lead.get(self.account_field) or "").strip().lower() == value.lower()]
        if not hits:
            return None
        hits.sort(key=lambda lead: str(lead.get("ProspectActivityDate_Max") or ""), reverse=True)
        if len(hits) > 1:
            notes.append(f"{len(hits)} leads have this {self.account_field}; chose the most recently active")
        notes.append(f"matched lead/{hits[0].get('ProspectID')} on {self.account_field}")
        return "lead", hits[0]

    def _opportunity(self, data: Any, value: str, notes: list[str]) -> tuple[str, dict] | None:
        if data in (None, {}, []):
            return None
        fields = data.get("Fields") if isinstance(data, dict) else None
        if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
            raise BadResponse(f"{self.id}: GetOpportunityDetails answer has no 'Fields' list", connector=self.id)
        values = {str(f.get("SchemaName")): f.get("Value") for f in fields}
        owner = str(values.get("Owner") or "").strip()
        record = {"ProspectID": data.get("ID") or value, "FirstName": data.get("DisplayName") or data.get("Name"),
                  "OwnerId": owner if _GUID.match(owner) else None, "OwnerIdEmailAddress": owner if "@" in owner else None}
        notes.append(f"matched opportunity/{record['ProspectID']} by id")
        return "opportunity", record

    def _with_directory(self, search: Callable[[], Any], deadline: Deadline, notes: list[str]) -> Any:
        """Run `search`; when the users list is cold or stale, load it alongside (one round trip)."""
        with self._users_lock:  # one load at a time, however many callers find the list cold
            if self._users.get("users") is not None:
                load = None
            elif self._users_load is not None and self._users_load[0].is_alive():
                load, failed = self._users_load
            else:
                failed = []
                load = threading.Thread(target=self._load_directory, args=(deadline, failed), daemon=True, name=f"lsq-users-{self.id}")
                self._users_load = (load, failed)
                load.start()
        if load is None:
            return search()
        try:
            return search()
        finally:  # the two run side by side: waiting for the load costs no extra round trip
            load.join(timeout=max(0.0, deadline.remaining()))
            if failed or load.is_alive():
                kind = getattr(failed[0], "kind", type(failed[0]).__name__) if failed else "timeout"
                notes.append(f"users directory unavailable ({kind}); owner status unknown")

    def _load_directory(self, deadline: Deadline, failed: list[BaseException]) -> None:
        try:
            users = self._rows(self._call("GET", "UserManagement.svc/Users.Get", deadline), "Users.Get")
        except ConnectorError as exc:
            failed.append(exc)
            return
        self._keep_users(users)
        if self.prefetch:
            self._prefetch([str(u.get("ID")) for u in users if str(u.get("StatusCode")) == "0" and _GUID.match(str(u.get("ID")))])

    def _prefetch(self, user_ids: list[str]) -> None:
        """Fetch the details of `user_ids` not known yet, in order, leaving half the limit to lookups."""
        reserve = self.limiter.capacity / 2

        def run() -> None:
            for user_id in user_ids:
                with self._details_lock:
                    if user_id in self._details:
                        continue
                while self.limiter.headroom < reserve + 1:
                    if self._closed.wait(5.0 / self.calls_per_5s):  # one slot's refill time
                        return
                if self._closed.is_set():
                    return
                try:
                    self._fetch_details(user_id, Deadline(max(1.0, self.context.timeout_s)))
                except ConnectorError as exc:
                    self.log.info("connector=%s prefetching owner details stopped (%s)", self.id, exc.kind)
                    return

        threading.Thread(target=run, daemon=True, name=f"lsq-prefetch-{self.id}").start()

    def _keep_users(self, users: list[dict]) -> None:
        index = {str(u.get("ID") or u.get("UserId")): u for u in users if u.get("ID") or u.get("UserId")}
        index.update({u["EmailAddress"].lower(): u for u in users if isinstance(u.get("EmailAddress"), str)})
        with self._users_lock:
            self._users["users"] = index

    def _user_index(self) -> dict[str, dict] | None:
        with self._users_lock:
            return self._users.get("users")

    # -- owner --------------------------------------------------------------------------------

    def _answer(self, kind: str, lead: dict, deadline: Deadline, notes: list[str]) -> Match | None:
        name = " ".join(str(lead.get(k) or "").strip() for k in ("FirstName", "LastName")).strip() or None
        rec = Record(type=kind, id=_text(lead.get("ProspectID")), name=name)
        owner_id = _text(lead.get("OwnerId"))
        owner_id = owner_id if owner_id and _GUID.match(owner_id) else None
        email = _email(lead.get("OwnerIdEmailAddress"))
        if owner_id is None and email is None:
            self.log.info("connector=%s %s/%s has no owner", self.id, rec.type, rec.id)
            return None
        user = (self._user_index() or {}).get(owner_id or str(email).lower())
        owner_id = owner_id or (user or {}).get("ID")
        active = None if user is None else str(user.get("StatusCode")) == "0"
        details = None
        if owner_id and active is not False:
            details = self._owner_details(owner_id, deadline, notes)
            if details == {}:  # ByUserId answers [] for an inactive or deleted user...
                active = False
            elif details and active is None:  # ...so a user it answers for is active
                active = True
        if active is False:
            notes.append(f"owner {owner_id or email} is not an active LeadSquared user")
        details = details or {}
        team = _text(details.get("TeamName"))
        manager = _text(details.get("ManagerName"))
        if manager:
            notes.append(f"owner's manager: {manager}")
        phone = _text(details.get("PhoneMobile")) or _text(details.get("PhoneMain"))
        owner = Owner(
            id=owner_id,
            email=email or _email((user or {}).get("EmailAddress")) or _email(details.get("EmailAddress")),
            name=_text(lead.get("OwnerIdName")) or _full_name(user or details),
            phone=phone if active is not False else None,
            team=team,
            active=active,
        )
        return Match(owner=owner, team=team, record=rec, notes=tuple(notes))

    def _owner_details(self, user_id: str, deadline: Deadline, notes: list[str]) -> dict | None:
        """The user's team, manager and phones; {} for an inactive/unknown user; None if unavailable."""
        with self._details_lock:
            cached = self._details.get(user_id)
        if cached is not None:
            stale = self._clock() - cached[0] >= self._ttl
            if stale:
                self._refresh_details(user_id)
            notes.append(f"owner {user_id} details from cache" + (" (refreshing in the background)" if stale else ""))
            return cached[1]
        try:
            return self._fetch_details(user_id, deadline)
        except ConnectorError as exc:
            notes.append(f"owner details unavailable ({exc.kind}); answered without team")
            return None

    def _fetch_details(self, user_id: str, deadline: Deadline) -> dict:
        rows = self._rows(self._call("GET", "UserManagement.svc/User/Retrieve/ByUserId", deadline, params={"userId": user_id}), "User/Retrieve/ByUserId")
        details = rows[0] if rows else {}
        with self._details_lock:
            if len(self._details) >= MAX_OWNERS and user_id not in self._details:
                self._details.pop(min(self._details, key=lambda k: self._details[k][0]))  # the oldest
            self._details[user_id] = (self._clock(), details)
        return details

    def _refresh_details(self, user_id: str) -> None:
        """Fetch a stale owner's details again off the caller's path (one refresh per owner at a time)."""
        with self._details_lock:
            if user_id in self._refreshing:
                return
            self._refreshing.add(user_id)

        def run() -> None:
            try:
                self._fetch_details(user_id, Deadline(max(1.0, self.context.timeout_s)))
            except ConnectorError as exc:  # keep the stale details; the next stale read tries again
                self.log.info("connector=%s refreshing owner %s details failed (%s)", self.id, user_id, exc.kind)
            finally:
                with self._details_lock:
                    self._refreshing.discard(user_id)

        threading.Thread(target=run, daemon=True, name=f"lsq-owner-{self.id}").start()

    # -- check --------------------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        """Runs the real lead search (a number no lead has) and lists users; names what is refused."""
        number = phonenumbers.parse(CHECK_NUMBER, None)
        phone = f"{number.country_code}{number.national_number}" if self.phone_form == "country_code" else str(number.national_number)
        try:
            leads = self._rows(self._call("GET", "LeadManagement.svc/RetrieveLeadByPhoneNumber", deadline, params={"phone": phone}), "lead search")
        except AuthError as exc:
            raise AuthError(f"{exc} [lead search: the keys' user needs permission to view leads]", connector=self.id, status=exc.status) from None
        try:
            users = self._rows(self._call("GET", "UserManagement.svc/Users.Get", deadline), "Users.Get")
        except AuthError as exc:
            raise AuthError(f"{exc} [users list: needed for owner status, team and manager]", connector=self.id, status=exc.status) from None
        self._keep_users(users)
        active = sum(1 for u in users if str(u.get("StatusCode")) == "0")
        found = "warn: the check number matched a lead" if leads else "lead search ran (no match, as expected)"
        return (f"keys accepted at {self.host}; {found}; {active} active of {len(users)} users; "
                f"limit {self.calls_per_5s} calls per 5 s ({self.limiter.headroom:.0f} free now)")


    def close(self) -> None:
        self._closed.set()  # stops a prefetch between two calls
        super().close()


# -- helpers ----------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _email(value: Any) -> str | None:
    text = _text(value)
    return text if text and "@" in text else None


def _full_name(user: Mapping[str, Any]) -> str | None:
    return " ".join(str(user.get(k) or "").strip() for k in ("FirstName", "LastName")).strip() or None


def _error_info(resp: Response) -> tuple[str, str]:
    """ExceptionType and ExceptionMessage of an error answer (read, never quoted), or blanks."""
    try:
        body = resp.json()
    except ConnectorError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    kind = str(body.get("ExceptionType") or "")
    message = str(body.get("ExceptionMessage") or body.get("Message") or "")
    return kind[:80], message[:500]


def _path(url: str | None) -> str:
    return (url or "?").split("?", 1)[0]
