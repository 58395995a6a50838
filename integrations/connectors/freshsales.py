"""Freshsales (Freshworks CRM) connector. API reference: https://developers.freshworks.com/crm/api/
(admin guide: docs/crm/freshsales.md).

Freshsales' ``/api/lookup`` matches a field's stored text exactly, with no phone normalisation,
so the caller is looked up under each form the number may have been typed in
(`dialwhom.sdk.variants`), for each configured phone field of contacts and sales accounts,
all at once: the lookups run concurrently and cost one round trip of the caller's wait. Hits
are re-checked on our side; contacts win over accounts, owned records over unowned ones, then
the latest change. The owner comes from the owners selector (``/api/selector/owners``), one call
kept as a directory for ``owners_ttl_s`` and loaded alongside the first lookups.

Freshsales limits API calls per account per hour (1000-5000 by plan) and per minute (400 on
paid plans), answering 429 past them; two local buckets (shared through Redis when
``shared_state`` is set) keep us inside the share configured here, and a slot that would cost
more wait than the caller has left is refused.

Calls per uncached phone lookup: ``max_forms`` x (contact fields + account fields) lookups, all
concurrent (3 x 3 = 9 by default), +1 owners selector alongside them when the directory is cold
or stale, +1 serial record GET only for a hit that carries no ``owner_id``. Account keys: 1
lookup. Not found: the same fan-out, nothing more.
"""

from __future__ import annotations

import hashlib
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Mapping, Sequence

from cachetools import TTLCache

from dialwhom.sdk import (
    error_code,
    AuthError,
    BadResponse,
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
    RateLimited,
    RateLimiter,
    Record,
    Response,
    as_utc,
    mask,
    pick_record,
    retry_after_seconds,
    same_number,
    variants,
)

__all__ = ["FreshsalesConnector"]

#: entity as `lookup` names it -> (key of its block in the answer, record path, record type)
ENTITIES = {"contact": ("contacts", "contacts", "contact"), "sales_account": ("sales_accounts", "sales_accounts", "sales_account")}
DEFAULT_CONTACT_FIELDS = ["mobile_number", "work_number"]
DEFAULT_ACCOUNT_FIELDS = ["phone"]
CHECK_NUMBER = "+919000000000"
#: a 429 without Retry-After: the per-minute window is the shortest Freshsales documents
RATE_LIMIT_WAIT_S = 60.0

_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_BUNDLE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*(/crm/sales)?/?$")
_ID = re.compile(r"^[0-9]{1,20}$")


class FreshsalesConnector(KeySearch, Connector):
    """Caller -> Freshsales contact or sales account (exact-field lookups) -> owner from the owners selector."""

    type_name = "freshsales"
    config_schema = (
        Field("api_key", str, required=True, secret=True, help="API key of an admin user (Profile Settings > API Settings)"),
        Field("bundle", str, help="bundle alias from API Settings: acme, or acme.myfreshworks.com/crm/sales"),
        Field("base_url", str, help="the CRM root instead of bundle, e.g. https://acme.myfreshworks.com/crm/sales"),
        Field("contact_fields", list, default=list(DEFAULT_CONTACT_FIELDS), help="contact phone fields looked up (mobile_number, work_number, cf_...)"),
        Field("account_fields", list, default=list(DEFAULT_ACCOUNT_FIELDS), help="sales account phone fields looked up ([] for none)"),
        Field("max_forms", int, default=3, min=1, max=10, help="how many stored forms of the number to try (+919876543210, 919876543210, 9876543210, ...)"),
        Field("account_field", str, help="sales account field holding the account key for CustomField/digits (e.g. cf_account_number); unset = none"),
        Field("per_hour", int, default=1000, min=1, max=100000, help="API calls per hour this service may use (plan: 1000-5000 per account)"),
        Field("per_minute", int, default=400, min=1, max=10000, help="API calls per minute this service may use (400 on paid plans)"),
        Field("owners_ttl_s", float, default=900.0, min=10, max=86400, help="how long the owners directory is kept"),
        Field("max_concurrency", int, default=16, min=1, max=64, help="lookups in flight at once (all of one caller's should fit)"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        self.base_url = _base_url(o.get("bundle"), o.get("base_url"))
        self.fields = {
            "contact": _fields("contact_fields", o.get("contact_fields"), allow_empty=False),
            "sales_account": _fields("account_fields", o.get("account_fields"), allow_empty=True),
        }
        account_field = o.get("account_field")
        if account_field is not None and not _FIELD.match(account_field):
            raise ConfigError("account_field", f"'{account_field}' is not a field's API name (lowercase letters, digits, '_')")
        self.account_field = account_field
        self.max_forms = int(o.get("max_forms") or 3)
        self.max_concurrency = int(o.get("max_concurrency") or 16)
        asks = self.max_forms * sum(len(f) for f in self.fields.values())
        if self.max_concurrency < asks:
            raise ConfigError("max_concurrency", f"{self.max_concurrency} is fewer than the {asks} lookups of one caller "
                                                 "(max_forms x fields): they would queue into a second round trip")
        account = hashlib.sha256(f"{self.base_url} {o['api_key']}".encode()).hexdigest()[:12]
        shared = {"redis": context.redis, "key_prefix": context.key_prefix}
        self.limiters = (
            RateLimiter(f"freshsales:{account}:minute", int(o.get("per_minute") or 400), 60.0, **shared),
            RateLimiter(f"freshsales:{account}:hour", int(o.get("per_hour") or 1000), 3600.0, **shared),
        )
        # the owners selector's users as one entry {id: user}, replaced whole when it expires
        self._owners: TTLCache = TTLCache(maxsize=1, ttl=float(o.get("owners_ttl_s") or 900.0))
        self._owners_lock = threading.Lock()
        self._owners_load: Future | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- HTTP ---------------------------------------------------------------------------------

    def make_http(self) -> HttpClient:
        return HttpClient(self.id, timeout_s=self.context.timeout_s, retries=self.context.retries,
                          headers={"Authorization": f"Token token={self.options['api_key']}", "Content-Type": "application/json"},
                          classify=self._classify)

    def _get(self, path: str, deadline: Deadline, params: Mapping[str, Any] | None = None) -> Any:
        """One GET under both rate limits; the decoded JSON object."""
        if deadline.expired:
            raise ConnectorTimeout(f"{self.id}: out of time before {path}", connector=self.id)
        for limiter in self.limiters:
            limiter.acquire(deadline)
        resp = self.http.request("GET", f"{self.base_url}/api/{path}", deadline=deadline, params=params, ok=(200,))
        body = resp.json()
        if not isinstance(body, dict):
            raise BadResponse(f"{self.id}: answer from /api/{path} is not a JSON object", connector=self.id, status=resp.status)
        return body

    def _classify(self, resp: Response) -> ConnectorError | None:
        status = resp.status
        if status not in (400, 401, 403, 422, 429):
            return None
        where = f"{self.id}: HTTP {status} from {_path(resp.url)}"
        message = _error_message(resp)
        detail = f": {message}" if message else ""
        if status == 429:
            wait_s = retry_after_seconds(resp.headers)
            return RateLimited(f"{where}: Freshsales API limit reached{detail} (per account: per_hour/per_minute here should "
                               "leave room for the account's other integrations)",
                               retry_after=RATE_LIMIT_WAIT_S if wait_s is None else wait_s, status=status)
        if status == 401:
            return AuthError(f"{where}: API key refused{detail}; check api_key and that bundle/base_url is this key's account", status=status)
        if status == 403:
            return AuthError(f"{where}: permission denied{detail}; the key's user cannot read this (Freshsales keys carry "
                             "their user's role: use an admin's key)", status=status)
        return BadResponse(f"{where}{detail} (is every configured field name one this account has?)", status=status)

    # -- lookup -------------------------------------------------------------------------------

    def lookup(self, query, *, deadline: Deadline) -> Match | None:
        if query.kind == "account" and not self.account_field:
            return None
        if deadline.expired:
            raise ConnectorTimeout(f"{self.id}: no time left for Freshsales", connector=self.id)
        return super().lookup(query, deadline=deadline)

    def _find_by_phone(self, e164: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        forms = [f for f in variants(e164) if _safe_form(f)][: self.max_forms]
        asks = [(entity, field, form) for entity, fields in self.fields.items() for field in fields for form in forms]
        outcomes = self._together([lambda a=a: self._lookup(*a, deadline) for a in asks], deadline, notes)
        region = self.context.region
        found: dict[tuple[str, str], dict] = {}
        errors: list[ConnectorError] = []
        for (entity, field, _), outcome in zip(asks, outcomes):
            if isinstance(outcome, ConnectorError):
                errors.append(outcome)
                continue
            for record in outcome:
                if same_number(_value(record, field), e164, region):
                    found.setdefault((entity, str(record.get("id"))), record)
        if not found:
            if errors:
                raise _worst(errors)
            self.log.info("connector=%s no Freshsales record for %s", self.id, mask(e164))
            return None
        if errors:
            notes.append(f"{len(errors)} of {len(asks)} lookups failed ({_worst(errors).kind}); answered from the others")
        notes.append(f"{len(asks)} exact lookups ({len(forms)} forms x {len(asks) // len(forms)} fields), {len(found)} record(s) hold the number")
        return self._pick(found, notes)

    def _find_by_account(self, value: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        field = str(self.account_field)
        [outcome] = self._together([lambda: self._lookup("sales_account", field, value, deadline)], deadline, notes)
        if isinstance(outcome, ConnectorError):
            raise outcome
        hits = {("sales_account", str(r.get("id"))): r for r in outcome if str(_value(r, field) or "").strip().lower() == value.lower()}
        return self._pick(hits, notes) if hits else None

    def _lookup(self, entity: str, field: str, value: str, deadline: Deadline) -> list[dict]:
        body = self._get("lookup", deadline, params={"q": value, "f": field, "entities": entity})
        outer, inner, _ = ENTITIES[entity]
        block = body.get(outer)
        records = block.get(inner) if isinstance(block, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadResponse(f"{self.id}: lookup answer has no '{outer}.{inner}' list", connector=self.id)
        return records

    def _pick(self, found: Mapping[tuple[str, str], dict], notes: list[str]) -> tuple[str, dict]:
        """Owned records first, then contacts before accounts, latest change, id."""
        owned = {k: r for k, r in found.items() if _owner_id(r)}
        pool = owned or dict(found)
        if owned and len(owned) < len(found):
            notes.append(f"skipped {len(found) - len(owned)} record(s) without an owner")
        candidates = [Candidate(entity, rid, as_utc(str(r.get("updated_at") or "")), data=r) for (entity, rid), r in pool.items()]
        winner, note = pick_record(candidates, ENTITIES)
        assert winner is not None
        if note:
            notes.append(note)
        notes.append(f"matched {winner.object_type}/{winner.record_id}")
        return winner.object_type, winner.data

    def _together(self, calls: Sequence[Callable[[], Any]], deadline: Deadline, notes: list[str]) -> list[Any]:
        """Run `calls` at once (and the owners directory load when it is stale); each result or its error."""
        pool = self._executor()
        with self._owners_lock:  # one load at a time, however many callers find the list cold
            load = None if self._owners.get("owners") is not None else self._owners_load
            if self._owners.get("owners") is None and (load is None or load.done()):
                load = self._owners_load = pool.submit(self._load_owners, deadline)
        futures = [pool.submit(call) for call in calls]
        wait([*futures, *([load] if load else [])], timeout=max(0.0, deadline.remaining()))
        out: list[Any] = []
        for fut in futures:
            if not fut.done():
                fut.cancel()
                out.append(ConnectorTimeout(f"{self.id}: lookup not answered in time", connector=self.id))
                continue
            exc = fut.exception()
            if exc is not None and not isinstance(exc, ConnectorError):
                raise exc
            out.append(exc if exc is not None else fut.result())
        if load is not None and (not load.done() or load.exception() is not None):
            notes.append(f"owners directory unavailable ({getattr(load.exception() if load.done() else None, 'kind', 'timeout')}); owner details unknown")
        return out

    def _load_owners(self, deadline: Deadline) -> None:
        users = self._get("selector/owners", deadline).get("users")
        if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
            raise BadResponse(f"{self.id}: owners selector answer has no 'users' list", connector=self.id)
        with self._owners_lock:
            self._owners["owners"] = {str(u.get("id")): u for u in users if u.get("id") is not None}

    def _owner_index(self) -> dict[str, dict] | None:
        with self._owners_lock:
            return self._owners.get("owners")

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix=f"freshsales-{self.id}")
            return self._pool

    # -- owner --------------------------------------------------------------------------------

    def _answer(self, entity: str, record: dict, deadline: Deadline, notes: list[str]) -> Match | None:
        _, path, kind = ENTITIES[entity]
        rid = str(record.get("id") or "")
        rec = Record(type=kind, id=rid or None, name=_name(record))
        owner_id = _owner_id(record)
        if owner_id is None and _ID.match(rid) and "owner_id" not in record:
            # The lookup answer did not carry the owner at all: read the record itself (one more call).
            full = self._get(f"{path}/{rid}", deadline).get(kind)
            owner_id = _owner_id(full) if isinstance(full, dict) else None
            notes.append(f"owner read from {kind}/{rid} (the lookup answer had none)")
        if owner_id is None:
            self.log.info("connector=%s %s/%s has no owner", self.id, rec.type, rec.id)
            return None
        user = (self._owner_index() or {}).get(owner_id)
        if user is None:
            notes.append(f"owner {owner_id} is not in the owners selector; matching reps by id only")
            return Match(owner=Owner(id=owner_id), record=rec, notes=tuple(notes))
        active = user.get("is_active") if isinstance(user.get("is_active"), bool) else None
        if active is False:
            notes.append(f"owner {owner_id} is deactivated in Freshsales")
        phone = _text(user.get("mobile_number")) or _text(user.get("work_number"))
        email = _text(user.get("email"))
        owner = Owner(id=owner_id, email=email if email and "@" in email else None, name=_text(user.get("display_name")),
                      phone=phone if active is not False else None, active=active)
        return Match(owner=owner, record=rec, notes=tuple(notes))

    # -- check --------------------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        """Looks a number no record has up in every configured field, and reads the owners selector."""
        ran = []
        for entity, fields in self.fields.items():
            for field in fields:
                try:
                    hits = self._lookup(entity, field, CHECK_NUMBER, deadline)
                except (AuthError, BadResponse) as exc:
                    raise type(exc)(f"{exc} [lookup of {entity} field '{field}']", connector=self.id, status=exc.status) from None
                ran.append(f"{entity}.{field}" + (" (matched: warn)" if hits else ""))
        try:
            self._load_owners(deadline)
        except AuthError as exc:
            raise AuthError(f"{exc} [owners selector: needed for the owner's email and phone]", connector=self.id, status=exc.status) from None
        return (f"key accepted at {self.base_url}; lookups ran on {', '.join(ran)}; {len(self._owner_index() or {})} owners; "
                f"{self.max_forms} forms per field: {self.max_forms * len(ran)} calls per uncached lookup")

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        super().close()


# -- helpers ----------------------------------------------------------------------------------


def _base_url(bundle: Any, base_url: Any) -> str:
    if bundle and base_url:
        raise ConfigError("bundle", "set bundle or base_url, not both")
    if base_url:
        url = str(base_url).strip().rstrip("/")
        if url.endswith("/api"):
            url = url[:-4]
        if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url):
            raise ConfigError("base_url", f"'{url}' is not an http(s) URL such as https://acme.myfreshworks.com/crm/sales")
        return url
    if not bundle:
        raise ConfigError("bundle", "required: the bundle alias from Profile Settings > API Settings (e.g. acme.myfreshworks.com/crm/sales)")
    alias = str(bundle).strip().lower().removeprefix("https://")
    if not _BUNDLE.match(alias):
        raise ConfigError("bundle", f"'{bundle}' is not a bundle alias such as acme or acme.myfreshworks.com/crm/sales")
    host = alias.split("/", 1)[0]
    if "." not in host:
        host = f"{host}.myfreshworks.com"
    return f"https://{host}/crm/sales"


def _fields(key: str, value: Any, *, allow_empty: bool) -> tuple[str, ...]:
    items = [str(x).strip() for x in (value or [])]
    if not items and not allow_empty:
        raise ConfigError(key, "list at least one phone field, e.g. mobile_number")
    for i, item in enumerate(items):
        if not _FIELD.match(item):
            raise ConfigError(f"{key}[{i}]", f"'{item}' is not a field's API name (lowercase letters, digits, '_')")
    if len(set(items)) != len(items):
        raise ConfigError(key, "each field may appear once")
    return tuple(items)


def _safe_form(form: str) -> bool:
    """A `variants` form: digits, '+', '-', spaces and parentheses only (never query syntax)."""
    return bool(form) and all(ch.isascii() and ch.isdigit() or ch in "+- ()" for ch in form)


def _value(record: Mapping[str, Any], field: str) -> Any:
    """A field's value: top level, or under ``custom_field`` for ``cf_`` fields."""
    if field in record:
        return record.get(field)
    custom = record.get("custom_field")
    return custom.get(field) if isinstance(custom, dict) else None


def _owner_id(record: Mapping[str, Any]) -> str | None:
    text = str(record.get("owner_id")).strip() if record.get("owner_id") is not None else ""
    return text if _ID.match(text) else None


def _name(record: Mapping[str, Any]) -> str | None:
    name = record.get("display_name") or record.get("name")
    if not name:
        name = " ".join(str(record.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    return str(name) if name else None


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _worst(errors: Sequence[ConnectorError]) -> ConnectorError:
    """The error that says most about what to fix: auth, then bad answers, then limits, then outages."""
    order = (AuthError, BadResponse, RateLimited, ConnectorTimeout)
    return min(errors, key=lambda e: next((i for i, cls in enumerate(order) if isinstance(e, cls)), len(order)))


def _error_message(resp: Response) -> str:
    """What a Freshsales error body says (``message``, ``errors.message``), as `error_code`
    quotes it: a code as it is, free text withheld (a CRM may echo keys or an email)."""
    try:
        body = resp.json()
    except ConnectorError:
        return ""
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    raw = body.get("message") or (errors.get("message") if isinstance(errors, dict) else errors) or ""
    text = "; ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    return error_code(text)


def _path(url: str | None) -> str:
    return (url or "?").split("?", 1)[0]
