"""Zoho CRM connector. API reference: https://www.zoho.com/crm/developer/docs/api/v8/

Finds the caller with Zoho's Search Records API (``GET /crm/{version}/{Module}/search?phone=``,
one call per module, the modules asked concurrently), re-checks every hit on our side, and
answers with the record owner, completed from a cached directory of the org's active users.
Admin guide: docs/crm/zoho.md. The pieces, by level:

- ``zoho_dc``: data centres (accounts server, API domain);
- ``dialwhom.sdk.OAuthClient``/``SharedToken``: the refresh-token grant, one access token per
  refresh token for every connector of the process and, through Redis, every instance;
- ``zoho_errors``: Zoho's error bodies, scopes, rate headers;
- ``zoho_records``: search values, record -> owner mapping;
- ``zoho_users``: the active-user directory.

Calls per uncached lookup, access token valid and user directory loaded:

- phone: one search per entry of ``modules`` (3 by default, concurrent: one round trip);
  ``phone_forms`` entries after the first add one per module that had no hit;
- account key: 1 search in ``account_module``;
- +1 ``users/{id}`` (cached) only for an owner the active directory does not know (deactivated,
  or added since the last load); +1 ``Accounts/{id}`` (cached) with ``owner_preference: account``;
- +1 token request about once an hour for all connectors and instances sharing the refresh token;
- the first lookup of a process also loads the directory (``users?type=ActiveUsers``, one call
  per 200 users) beside its searches; later loads run in the background.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, ClassVar, Mapping, Sequence

from dialwhom.sdk import (
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
    OAuthClient,
    Owner,
    Record,
    Response,
    SharedToken,
    TokenRegistry,
    TTLMemo,
    mask,
    pick_record,
)

from . import zoho_errors as errors
from .zoho_dc import DATA_CENTRES, check_api_domain, data_centre, host, url
from .zoho_errors import SCOPES
from .zoho_records import (
    forms,
    has_number,
    lookup_id,
    modified,
    names,
    owner_from_user,
    record_name,
    search_forms,
    user_ref,
)
from .zoho_users import PER_PAGE as USERS_PER_PAGE
from .zoho_users import UserDirectory

__all__ = ["ZohoConnector", "DATA_CENTRES", "SCOPES"]

DEFAULT_MODULES = ("Contacts", "Leads", "Accounts")
PER_PAGE = 10
#: Zoho allows 10 access tokens per refresh token per 10 minutes, then refuses for the rest of
#: the window. Stay below it: other tools may share the refresh token.
MINT_LIMIT = 8
MINT_WINDOW_S = 600.0
#: after Zoho's "too many requests" on the token endpoint: first pause, doubled up to the window
THROTTLE_PAUSE_S = 60.0
#: the number `check` searches for: one no record should hold (digits only, like every search)
PROBE_NUMBER = "+919811122233"
_ACCOUNT_VALUE = r"^[A-Za-z0-9._-]{2,64}$"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {token}"}


class ZohoConnector(KeySearch, Connector):
    """Caller -> Zoho CRM Contacts/Leads/Accounts (phone search per module) -> record owner."""

    type_name = "zoho"
    account_key = re.compile(_ACCOUNT_VALUE)
    #: where the shared access tokens of this process live (tests give each "process" its own)
    token_registry: ClassVar[TokenRegistry | None] = None
    config_schema = (
        Field("client_id", str, required=True, help="client id of the Self Client (or server-based client) in Zoho's API console"),
        Field("client_secret", str, required=True, secret=True, help="that client's secret"),
        Field("refresh_token", str, required=True, secret=True, help="refresh token generated once for the scopes in docs/crm/zoho.md"),
        Field("data_centre", str, help="where the Zoho org lives: " + ", ".join(DATA_CENTRES) + " (picks the accounts and API hosts)"),
        Field("accounts_url", str, help="accounts server override, e.g. https://accounts.zoho.eu (tests, new regions)"),
        Field("api_url", str, help="API domain override, e.g. https://sandbox.zohoapis.com (default: the token's api_domain)"),
        Field("api_version", str, default="v8", help="CRM API version in the URL path (v2 to v8 behave alike for these calls)"),
        Field("modules", list, default=list(DEFAULT_MODULES), help="modules searched for the caller's number, in priority order"),
        Field("owner_preference", str, default="record", choices=("record", "account"),
              help="for a Contact: its own owner, or the owner of its Account"),
        Field("phone_forms", list, default=["national"],
              help="number forms searched, in order, while a module has no hit: national, international"),
        Field("account_module", str, default="Accounts", help="module searched for CustomField/digits account keys"),
        Field("account_field", str, default="Account_Number", help="API name of the field holding the account key"),
        Field("owner_phone", str, default="mobile", choices=("mobile", "phone"),
              help="which user number to ring when the owner has no reps entry (the other is the fallback)"),
        Field("user_cache_s", float, default=3600.0, min=0, max=86400,
              help="how often the active-user directory is reloaded, and how long other owners and account owners are cached"),
        Field("max_concurrency", int, default=3, min=1, max=10,
              help="concurrent Zoho calls from this connector (Zoho allows 5 to 25 per org by edition)"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        self.data_centre = data_centre(o.get("data_centre"), o.get("accounts_url"))
        default_accounts, default_api = DATA_CENTRES.get(self.data_centre or "", (None, None))
        accounts = url("accounts_url", o.get("accounts_url")) or default_accounts
        self.api_override = url("api_url", o.get("api_url"))
        self.token_url = f"{accounts}/oauth/v2/token"
        self._api_base: str | None = self.api_override or default_api
        version = str(o.get("api_version") or "v8").strip()
        if not re.match(r"^v[0-9]{1,2}(\.[0-9])?$", version):
            raise ConfigError("api_version", f"'{version}' is not a Zoho CRM API version such as v8 or v2.1")
        self.api_version = version
        self.modules = names("modules", o.get("modules"))
        self.phone_forms = forms(o.get("phone_forms"))
        self.account_module = names("account_module", [o.get("account_module") or "Accounts"])[0]
        self.account_field = names("account_field", [o.get("account_field") or "Account_Number"])[0]
        self.owner_preference = o.get("owner_preference") or "record"
        self.owner_phone = o.get("owner_phone") or "mobile"
        self.max_concurrency = int(o.get("max_concurrency") or 3)
        ttl = float(o.get("user_cache_s", 3600.0))
        self.clock: Callable[[], float] = time.time
        self.users = UserDirectory(self._users_page, ttl_s=ttl, clock=lambda: self.clock(), name=self.id, log=self.log)
        self._other_users: TTLMemo[dict | None] = TTLMemo(maxsize=4096, ttl_s=ttl)
        self._account_owners: TTLMemo[dict | None] = TTLMemo(maxsize=8192, ttl_s=ttl)
        self.oauth = OAuthClient(self.id, self.token_url, http=lambda: self.http, client_id=str(o["client_id"]),
                                 client_secret=str(o["client_secret"]), refresh_token=str(o["refresh_token"]),
                                 hint=self._token_hint)
        self._last_auth_error = ""
        self.tokens = SharedToken(
            self.oauth.fetch, key=self.oauth.fingerprint, header=_auth,
            redis=context.redis, key_prefix=context.key_prefix,
            mint_limit=MINT_LIMIT, mint_window_s=MINT_WINDOW_S, throttle_pause_s=THROTTLE_PAUSE_S,
            budget_note=lambda: f"the API keeps refusing tokens ({self._last_auth_error})" if self._last_auth_error else "",
            registry=self.token_registry, clock=lambda: self.clock(), connector_id=self.id)
        self._domain_token: str | None = None
        self.dc_warning: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _dc_name(self) -> str:
        return f"data_centre '{self.data_centre}'" if self.data_centre else f"accounts_url {host(self.token_url)}"

    def _token_hint(self, error: str) -> str:
        if error == "invalid_client":
            return (f"usually the {self._dc_name()} is wrong: a client exists only in the data centre whose API console "
                    "created it (api-console.zoho.<dc>); otherwise client_id or client_secret is mistyped")
        if error == "invalid_code":
            return (f"refresh_token was revoked, mistyped, or issued in another data centre than {self._dc_name()}; "
                    "generate a new one (docs/crm/zoho.md)")
        return f"check client_id, client_secret, refresh_token and {self._dc_name()}"

    # -- HTTP -----------------------------------------------------------------------------------

    def make_http(self) -> HttpClient:
        return HttpClient(self.id, timeout_s=self.context.timeout_s, retries=self.context.retries,
                          token_provider=self.tokens, classify=self._classify, refreshable=self._refreshable)

    def _classify(self, resp: Response) -> ConnectorError | None:
        if (resp.url or "").startswith(self.token_url):
            return None  # the token endpoint's answers are read by OAuthClient
        err = errors.classify(resp, connector_id=self.id, api_version=self.api_version, auth_hint=self._auth_hint())
        if isinstance(err, AuthError) and resp.status == 401:
            self._last_auth_error = errors.code(resp) or "HTTP 401"
        return err

    def _auth_hint(self) -> str:
        return (f"a freshly minted token was refused too: the accounts server ({host(self.token_url)}) and the API "
                f"({host(self._api_base or '')}) must be in the same data centre ({self._dc_name()}), "
                "and the Zoho user who generated the refresh token must still be active")

    @staticmethod
    def _refreshable(resp: Response) -> bool:
        """Only an expired or revoked access token is cured by a new one; a missing scope is not."""
        return errors.code(resp) in errors.REFRESHABLE

    def _get(self, path: str, *, deadline: Deadline, notes: list[str], params: Mapping[str, Any] | None = None) -> Response:
        """GET ``{api}/crm/{version}/{path}``; the shared layer adds the token and refreshes it once
        on a 401 a new token can cure."""
        grant = self.tokens.grant(deadline)
        if grant.access_token != self._domain_token:  # the token answer names the API domain
            self._use_api_domain(grant.body.get("api_domain"))
            self._domain_token = grant.access_token
        resp = self.http.request("GET", self._api(path), deadline=deadline, params=params, ok=(200, 204))
        note = errors.rate_note(resp.headers)
        if note:
            notes.append(note)
        return resp

    def _use_api_domain(self, domain: Any) -> None:
        if self.api_override:
            return
        checked, warning = check_api_domain(domain, self.data_centre, self._dc_name())
        if warning and checked is None:
            self.log.warning("connector=%s %s", self.id, warning)
        elif warning and self.dc_warning is None:
            self.dc_warning = warning
            self.log.warning("connector=%s %s", self.id, warning)
        if checked:
            self._api_base = checked

    def _api(self, path: str) -> str:
        if not self._api_base:
            raise BadResponse(f"{self.id}: Zoho's token answer named no api_domain; set data_centre or api_url", connector=self.id)
        return f"{self._api_base}/crm/{self.api_version}/{path}"

    def _records(self, resp: Response, what: str) -> tuple[list[dict], dict]:
        """The ``data`` records and the ``info`` block of a records answer (204: none)."""
        if resp.status == 204:
            return [], {}
        body = errors.json_of(resp, self.id)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BadResponse(f"{self.id}: {what} answer has no 'data' list", connector=self.id, status=resp.status)
        info = body.get("info")
        return data, info if isinstance(info, dict) else {}

    def _users_page(self, page: int, deadline: Deadline) -> tuple[list[dict], bool]:
        """One page of ``users?type=ActiveUsers`` for the directory."""
        resp = self._get("users", deadline=deadline, notes=[], params={"type": "ActiveUsers", "page": page, "per_page": USERS_PER_PAGE})
        if resp.status == 204:
            return [], False
        body = errors.json_of(resp, self.id)
        users = body.get("users") if isinstance(body, dict) else None
        if not isinstance(users, list):
            raise BadResponse(f"{self.id}: users answer has no 'users' list", connector=self.id, status=resp.status)
        info = body.get("info") if isinstance(body.get("info"), dict) else {}
        return [u for u in users if isinstance(u, dict)], bool(info.get("more_records"))

    # -- lookup -------------------------------------------------------------------------------

    def _find_by_phone(self, e164: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        wanted = search_forms(e164, self.phone_forms)
        # Mint before fanning out, so the module searches share one token instead of queueing on it.
        self.tokens.token(deadline)
        self.users.refresh_if_due()  # the first time: beside the searches, not after them
        outcomes = self._fan_out(self.modules, lambda m: self._search_module(m, wanted, e164, deadline), deadline)
        candidates: list[Candidate] = []
        failed: list[tuple[str, ConnectorError]] = []
        for module in self.modules:
            outcome = outcomes[module]
            if isinstance(outcome, ConnectorError):
                failed.append((module, outcome))
                continue
            hits, module_notes = outcome
            notes.extend(module_notes)
            candidates += [Candidate(module, str(r.get("id") or ""), modified(r), data=r) for r in hits]
        if not candidates:
            if failed:
                raise errors.worst([exc for _, exc in failed])
            self.log.info("connector=%s no Zoho record for %s", self.id, mask(e164))
            return None
        for module, exc in failed:
            notes.append(f"{module} search failed ({exc.kind}); answered from the other modules")
        winner, note = pick_record(candidates, self.modules)
        assert winner is not None
        if note:
            notes.append(note)
        return winner.object_type, winner.data

    def _search_module(self, module: str, wanted: Sequence[tuple[str, str]], e164: str, deadline: Deadline) -> tuple[list[dict], list[str]]:
        """One module: search each number form until a hit has the caller's number."""
        notes: list[str] = []
        for label, digits in wanted:
            if deadline.expired:
                raise ConnectorTimeout(f"{self.id}: out of time before searching {module}", connector=self.id)
            resp = self._get(f"{module}/search", deadline=deadline, notes=notes,
                             params={"phone": digits, "page": 1, "per_page": PER_PAGE})
            records, info = self._records(resp, f"{module} search")
            hits = [r for r in records if has_number(r, e164, self.context.region)]
            if len(records) > len(hits):
                notes.append(f"{module}: discarded {len(records) - len(hits)} search hit(s) whose stored numbers are not the caller's")
            if info.get("more_records"):
                notes.append(f"{module}: more than {PER_PAGE} records matched; only the first {PER_PAGE} were checked")
            if hits:
                notes.append(f"{module}: {len(hits)} record(s) with the caller's number ({label} digits searched)")
                return hits, notes
        return [], notes

    def _fan_out(self, modules: Sequence[str], task: Callable[[str], Any], deadline: Deadline) -> dict[str, Any]:
        """`task` per module on the connector's small pool, waited for until the deadline.

        Values are the task's result or the `ConnectorError` it raised (a bug still raises).
        """
        if len(modules) == 1:
            try:
                return {modules[0]: task(modules[0])}
            except ConnectorError as exc:
                return {modules[0]: exc}
        futures: dict[str, Future] = {m: self._executor().submit(task, m) for m in modules}
        wait(list(futures.values()), timeout=deadline.remaining())
        out: dict[str, Any] = {}
        for module, fut in futures.items():
            if not fut.done():
                fut.cancel()
                out[module] = ConnectorTimeout(f"{self.id}: {module} search not answered in time", connector=self.id)
                continue
            exc = fut.exception()
            if exc is not None and not isinstance(exc, ConnectorError):
                raise exc
            out[module] = exc if exc is not None else fut.result()
        return out

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                # Shared by all lookups on this connector: it also caps concurrent calls to Zoho.
                self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix=f"zoho-{self.id}")
            return self._pool

    def _find_by_account(self, value: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        module, field = self.account_module, self.account_field
        self.users.refresh_if_due()
        # `value` is [A-Za-z0-9._-] only: nothing in it needs escaping inside criteria.
        resp = self._get(f"{module}/search", deadline=deadline, notes=notes,
                         params={"criteria": f"({field}:equals:{value})", "page": 1, "per_page": PER_PAGE})
        records, _ = self._records(resp, f"{module} search")
        # Zoho's `equals` behaves like `contains` in search: keep exact matches only.
        hits = [r for r in records if str(r.get(field) or "").strip().lower() == value.lower()]
        if len(records) > len(hits):
            notes.append(f"{module}: discarded {len(records) - len(hits)} hit(s) whose {field} differs")
        if not hits:
            return None
        winner, note = pick_record([Candidate(module, str(r.get("id") or ""), modified(r), data=r) for r in hits], [module])
        assert winner is not None
        if note:
            notes.append(note)
        notes.append(f"{module}: matched on {field}")
        return module, winner.data

    # -- owner --------------------------------------------------------------------------------

    def _answer(self, module: str, record: dict, deadline: Deadline, notes: list[str]) -> Match | None:
        rec = Record(type=module, id=str(record.get("id") or "") or None, name=record_name(record))
        owner_ref = self._owner_ref(record, rec)
        source = f"{module} record owner"
        account_id = lookup_id(record.get("Account_Name")) if module == "Contacts" else None
        if self.owner_preference == "account" and account_id:
            try:
                account_owner = self._account_owner(account_id, deadline, notes)
            except ConnectorError as exc:
                notes.append(f"owner of Accounts/{account_id} unavailable ({exc.kind}); using the contact owner")
                account_owner = None
            if account_owner:
                owner_ref, source = account_owner, f"owner of Accounts/{account_id} (owner_preference: account)"
        if owner_ref is None:
            self.log.info("connector=%s %s/%s has no owner", self.id, rec.type, rec.id)
            return None
        notes.append(f"owner source: {source}")
        owner = self._owner(owner_ref, deadline, notes)
        return Match(owner=owner, team=owner.team, record=rec, notes=tuple(_tidy(notes)))

    def _account_owner(self, account_id: str, deadline: Deadline, notes: list[str]) -> dict | None:
        fetched: list[bool] = []

        def load() -> dict | None:
            fetched.append(True)
            resp = self._get(f"Accounts/{account_id}", deadline=deadline, notes=notes, params={"fields": "Owner,Account_Name"})
            records, _ = self._records(resp, "account")
            return self._owner_ref(records[0], Record(type="Accounts", id=account_id)) if records else None

        owner = self._account_owners.get_or_load(account_id, load)
        if not fetched:
            notes.append(f"owner of Accounts/{account_id} from cache")
        return owner

    def _owner_ref(self, record: Mapping[str, Any], rec: Record) -> dict | None:
        """The record's ``Owner`` lookup; None when unset, BadResponse when it is not a user lookup."""
        value = record.get("Owner")
        if value is None:
            return None
        ref = user_ref(value)
        if ref is None:
            raise BadResponse(f"{self.id}: {rec.type}/{rec.id} has an Owner that is not a user lookup {{id, name, email}}",
                              connector=self.id)
        return ref

    def _owner(self, ref: dict, deadline: Deadline, notes: list[str]) -> Owner:
        """The owner from the record's Owner lookup, completed from the user directory (no call when
        it knows the owner), else from ``users/{id}`` (a departed or new user; cached)."""
        uid = ref["id"]
        user = self.users.get(uid)
        if user is None and not self.users.loaded and self.users.refresh_if_due():
            self.users.wait(deadline)  # the first lookup: the load started beside the searches
            user = self.users.get(uid)
        if user is not None:
            notes.append(f"owner {uid} from the user directory")
            return owner_from_user(ref, user, owner_phone=self.owner_phone, region=self.context.region)
        if self.users.denied:
            notes.append("owner phone/role skipped: the users API refused this token recently")
            return owner_from_user(ref, None, owner_phone=self.owner_phone, region=self.context.region)
        if self.users.loaded:
            self.users.refresh_if_due(unknown=True)  # a new user shows up in the next load
        return self._owner_by_id(ref, deadline, notes)

    def _owner_by_id(self, ref: dict, deadline: Deadline, notes: list[str]) -> Owner:
        uid = ref["id"]
        fetched: list[bool] = []

        def load() -> dict | None:
            fetched.append(True)
            resp = self._get(f"users/{uid}", deadline=deadline, notes=notes)
            if resp.status == 204:
                return None
            body = errors.json_of(resp, self.id)
            users = body.get("users") if isinstance(body, dict) else None
            if not isinstance(users, list) or (users and not isinstance(users[0], dict)):
                raise BadResponse(f"{self.id}: users answer has no 'users' list", connector=self.id, status=resp.status)
            return users[0] if users else None

        try:
            if deadline.expired:
                raise ConnectorTimeout(f"{self.id}: out of time before the users call", connector=self.id)
            user = self._other_users.get_or_load(uid, load)
        except ConnectorError as exc:
            notes.append(f"owner phone/role unavailable ({exc.kind}); matching reps by owner id/email only")
            return owner_from_user(ref, None, owner_phone=self.owner_phone, region=self.context.region)
        if not fetched:
            notes.append(f"owner {uid} from cache")
        if user is None:
            notes.append(f"users/{uid} not found (deleted user?); treated as inactive")
            return Owner(id=uid, email=ref.get("email"), name=ref.get("name"), active=False)
        owner = owner_from_user(ref, user, owner_phone=self.owner_phone, region=self.context.region)
        if owner.active is False:
            notes.append(f"owner {uid} is {user.get('status')} in Zoho")
        return owner

    # -- check and lifecycle ------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        """Mint (or reuse) the token, run the real search, read the fields and the users: name what is missing."""
        from .zoho_check import run_check

        return run_check(self, deadline)

    def close(self) -> None:
        self.users.close()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        super().close()


def _tidy(notes: list[str]) -> list[str]:
    """Notes in order, without repeats, and only the last rate-limit reading."""
    rate = [n for n in notes if n.startswith("zoho rate:")]
    out = [n for n in dict.fromkeys(notes) if not n.startswith("zoho rate:")]
    return out + rate[-1:]
