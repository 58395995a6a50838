"""Zoho CRM connector. API reference: https://www.zoho.com/crm/developer/docs/api/v8/

Finds the caller with Zoho's Search Records API (``GET /crm/{version}/{Module}/search?phone=``,
one call per module, the modules asked concurrently), re-checks every hit on our side, and
answers with the record owner, whose phone and role come from ``GET /crm/{version}/users/{id}``
(cached). Admin guide: docs/crm/zoho.md.

Calls per uncached lookup (access token valid, owner not cached yet):

- phone, found: one search per entry of ``modules`` (3 by default, concurrent) + 1 ``users/{id}``;
  with ``owner_preference: account`` and a Contact linked to an Account: +1 ``Accounts/{id}``;
- phone, not found: one search per module (each ``phone_forms`` entry adds one per module
  while that module has no hit);
- account key: 1 search in ``account_module`` + 1 ``users/{id}``;
- +1 token refresh when the cached access token has expired (about once an hour).

Owners and account owners are cached for ``user_cache_s``; a hit on a cached owner costs only
the searches.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Mapping, Sequence
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
    ConnectorTimeout,
    ConnectorUnavailable,
    Deadline,
    Field,
    HttpClient,
    KeySearch,
    MIN_ATTEMPT_S,
    Match,
    Owner,
    RateLimited,
    Record,
    Response,
    TTLMemo,
    as_utc,
    error_code,
    mask,
    scrub,
    pick_record,
    retry_after_seconds,
    same_number,
    to_e164,
)

__all__ = ["ZohoConnector", "DATA_CENTRES", "SCOPES"]

#: data centre -> (accounts server, API domain). Zoho SDK ``dc/*.py`` and the accounts
#: multi-DC page; ``com`` is an alias of ``us``. The UK API domain is seen in public code only.
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "com": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    "uk": ("https://accounts.zoho.uk", "https://www.zohoapis.uk"),
}
SCOPES = (
    "ZohoCRM.modules.contacts.READ,ZohoCRM.modules.leads.READ,ZohoCRM.modules.accounts.READ,"
    "ZohoSearch.securesearch.READ,ZohoCRM.users.READ"
)
DEFAULT_MODULES = ("Contacts", "Leads", "Accounts")
PHONE_FORMS = ("national", "international")
PER_PAGE = 10
#: Zoho allows 10 access tokens per refresh token per 10 minutes, then refuses for the rest of
#: the window. Stay below it: other workers or tools may share the refresh token.
MINT_LIMIT = 8
MINT_WINDOW_S = 600.0
#: after Zoho's "too many requests" on the token endpoint: first pause, doubled up to the window
THROTTLE_PAUSE_S = 60.0
#: 401 codes a fresh access token can cure; any other 401 (a missing scope) cannot
REFRESHABLE = {"", "INVALID_TOKEN", "INVALID_OAUTHTOKEN", "AUTHENTICATION_FAILURE"}
#: token endpoint errors about the credentials (anything else there is a bad answer)
CREDENTIAL_ERRORS = {"invalid_client", "invalid_client_secret", "invalid_code", "invalid_grant", "unauthorized_client",
                     "access_denied", "invalid_scope", "invalid_token"}
RATE_HEADERS = ("X-API-CREDITS-REMAINING", "X-RATELIMIT-LIMIT", "X-RATELIMIT-REMAINING", "X-RATELIMIT-RESET")
#: after the users API refused us (scope missing), skip owner details for this long
USERS_DENIED_PAUSE_S = 600.0

_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_NUMERIC_ID = re.compile(r"^[0-9]{1,25}$")
_ACCOUNT_VALUE = re.compile(r"^[A-Za-z0-9._-]{2,64}$")
_API_VERSION = re.compile(r"^v[0-9]{1,2}(\.[0-9])?$")
_ZOHO_API_DOMAIN = re.compile(r"^https://([a-z0-9-]+\.)*zohoapis\.[a-z]{2,3}(\.[a-z]{2})?$")


class ZohoConnector(KeySearch, Connector):
    """Caller -> Zoho CRM Contacts/Leads/Accounts (phone search per module) -> record owner."""

    type_name = "zoho"
    account_key = _ACCOUNT_VALUE
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
        Field("user_cache_s", float, default=3600.0, min=0, max=86400, help="how long owner details and account owners are cached"),
        Field("max_concurrency", int, default=3, min=1, max=10,
              help="concurrent Zoho calls from this connector (Zoho allows 5 to 25 per org by edition)"),
    )

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        super().__init__(options, context)
        o = self.options
        self.data_centre = self._data_centre(o.get("data_centre"), o.get("accounts_url"))
        default_accounts, default_api = DATA_CENTRES.get(self.data_centre or "", (None, None))
        accounts = _url("accounts_url", o.get("accounts_url")) or default_accounts
        self.api_override = _url("api_url", o.get("api_url"))
        self.token_url = f"{accounts}/oauth/v2/token"
        self._api_base: str | None = self.api_override or default_api
        version = str(o.get("api_version") or "v8").strip()
        if not _API_VERSION.match(version):
            raise ConfigError("api_version", f"'{version}' is not a Zoho CRM API version such as v8 or v2.1")
        self.api_version = version
        self.modules = _names("modules", o.get("modules"))
        self.phone_forms = _forms(o.get("phone_forms"))
        self.account_module = _names("account_module", [o.get("account_module") or "Accounts"])[0]
        self.account_field = _names("account_field", [o.get("account_field") or "Account_Number"])[0]
        self.owner_preference = o.get("owner_preference") or "record"
        self.owner_phone = o.get("owner_phone") or "mobile"
        self.max_concurrency = int(o.get("max_concurrency") or 3)
        ttl = float(o.get("user_cache_s", 3600.0))
        self._users: TTLMemo[dict | None] = TTLMemo(maxsize=4096, ttl_s=ttl)
        self._account_owners: TTLMemo[dict | None] = TTLMemo(maxsize=8192, ttl_s=ttl)
        self._users_denied_until = 0.0
        self.clock: Callable[[], float] = time.monotonic
        self.tokens = CachedToken(self._mint, header=_auth, margin_s=60.0, clock=lambda: self.clock())
        self.mint_limit = MINT_LIMIT
        self._mints: deque[float] = deque()
        self._mint_lock = threading.Lock()
        self._blocked_until = 0.0
        self._pause = 0.0
        self._last_auth_error = ""
        self.dc_warning: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- config -------------------------------------------------------------------------------

    @staticmethod
    def _data_centre(value: Any, accounts_url: Any) -> str | None:
        if value in (None, ""):
            if accounts_url:
                return None
            raise ConfigError("data_centre", f"required: where your Zoho org lives, one of {', '.join(DATA_CENTRES)} "
                                             "(the domain you sign in at: crm.zoho.eu -> eu); or set accounts_url and api_url")
        dc = str(value).strip().lower().lstrip(".")
        if dc not in DATA_CENTRES:
            raise ConfigError("data_centre", f"'{value}' is not one of {', '.join(DATA_CENTRES)}; "
                                             "for another region set accounts_url and api_url instead")
        return dc

    def _dc_name(self) -> str:
        return f"data_centre '{self.data_centre}'" if self.data_centre else f"accounts_url {_host(self.token_url)}"

    # -- HTTP and tokens ----------------------------------------------------------------------

    def make_http(self) -> HttpClient:
        return HttpClient(self.id, timeout_s=self.context.timeout_s, retries=self.context.retries,
                          token_provider=self.tokens, classify=self._classify, refreshable=self._refreshable)

    def _mint(self, deadline: Deadline) -> tuple[str, float | None]:
        """Refresh-token flow: POST {accounts}/oauth/v2/token, parameters in the form body."""
        if deadline.remaining() < MIN_ATTEMPT_S:
            raise ConnectorTimeout(f"{self.id}: no time left to refresh the access token", connector=self.id)
        now = self.clock()
        with self._mint_lock:
            if now < self._blocked_until:
                wait_s = self._blocked_until - now
                raise RateLimited(f"{self.id}: Zoho refused new access tokens (too many in 10 min); "
                                  f"not asking again for {wait_s:.0f} s", retry_after=wait_s, connector=self.id)
            while self._mints and now - self._mints[0] >= MINT_WINDOW_S:
                self._mints.popleft()
            if len(self._mints) >= self.mint_limit:
                wait_s = MINT_WINDOW_S - (now - self._mints[0])
                why = f"; the API keeps refusing tokens ({self._last_auth_error})" if self._last_auth_error else ""
                raise RateLimited(f"{self.id}: {len(self._mints)} access tokens minted in 10 min, the most this connector "
                                  f"asks for (Zoho blocks the refresh token after 10){why}", retry_after=wait_s, connector=self.id)
            self._mints.append(now)
        resp = self.http.request(
            "POST", self.token_url, deadline=deadline, auth=False, retry=False, ok=(200, 400, 401, 403, 429),
            data={
                "grant_type": "refresh_token",
                "client_id": str(self.options["client_id"]),
                "client_secret": str(self.options["client_secret"]),
                "refresh_token": str(self.options["refresh_token"]),
            },
        )
        body = self._json(resp)
        if not isinstance(body, dict):
            raise BadResponse(f"{self.id}: token answer from {_host(self.token_url)} is not a JSON object", connector=self.id, status=resp.status)
        error = str(body.get("error") or "").strip()
        token = body.get("access_token")
        if error or not isinstance(token, str) or not token:
            raise self._token_error(resp, error, str(body.get("error_description") or ""))
        with self._mint_lock:
            self._pause = 0.0
        self._use_api_domain(body.get("api_domain"))
        return token, _expires_in(body)

    def _token_error(self, resp: Response, error: str, description: str) -> ConnectorError:
        where = f"{self.id}: token refresh at {_host(self.token_url)}"
        low = f"{error} {description}".lower()
        if resp.status == 429 or error.lower() == "access denied" or "too many" in low or "throttle" in low:
            asked = retry_after_seconds(resp.headers)
            with self._mint_lock:
                self._pause = min(MINT_WINDOW_S, max(THROTTLE_PAUSE_S, self._pause * 2))
                pause = min(MINT_WINDOW_S, asked) if asked is not None else self._pause
                self._blocked_until = self.clock() + pause
            return RateLimited(f"{where}: Zoho says too many token requests ({error_code(description) if description else error_code(error)}); "
                               f"pausing token refresh for {pause:.0f} s", retry_after=pause, connector=self.id, status=resp.status)
        if error == "invalid_client":
            return AuthError(f"{where} refused client_id (invalid_client). Usually the {self._dc_name()} is wrong: a client "
                             "exists only in the data centre whose API console created it (api-console.zoho.<dc>); "
                             "otherwise client_id or client_secret is mistyped", connector=self.id, status=resp.status)
        if error == "invalid_code":
            return AuthError(f"{where} refused refresh_token (invalid_code): it was revoked, mistyped, or issued in "
                             f"another data centre than {self._dc_name()}; generate a new one (docs/crm/zoho.md)",
                             connector=self.id, status=resp.status)
        if error.lower() in CREDENTIAL_ERRORS or resp.status in (401, 403):
            return AuthError(f"{where} refused ({error_code(error)}: {error_code(description)}); check client_id, "
                             f"client_secret, refresh_token and {self._dc_name()}", connector=self.id, status=resp.status)
        detail = f" ({error_code(error)})" if error else ""
        return BadResponse(f"{where}: answer (HTTP {resp.status}) has no access_token{detail}", connector=self.id, status=resp.status)

    def _use_api_domain(self, domain: Any) -> None:
        """Zoho names the API domain of the token's data centre: use it unless api_url is set."""
        if self.api_override or not isinstance(domain, str):
            return
        domain = domain.strip().rstrip("/")
        if not _ZOHO_API_DOMAIN.match(domain):
            self.log.warning("connector=%s token answer names api_domain %r, not a Zoho API domain; ignored", self.id, domain[:80])
            return
        expected = DATA_CENTRES.get(self.data_centre or "", (None, None))[1]
        if expected and _dc_suffix(domain) != _dc_suffix(expected) and self.dc_warning is None:
            self.dc_warning = (f"{self._dc_name()} expects {expected} but Zoho's token answer names {domain}; "
                               f"using {domain} (fix data_centre to match)")
            self.log.warning("connector=%s %s", self.id, self.dc_warning)
        self._api_base = domain

    def _classify(self, resp: Response) -> ConnectorError | None:
        """Zoho's error body ``{code, message, status, details}`` says more than the status."""
        status = resp.status
        if status < 400 or (resp.url or "").startswith(self.token_url):
            return None  # the token endpoint's answers are read by `_mint`
        info = _error_body(resp)
        code = str(info.get("code") or "").upper()
        where = f"{self.id}: HTTP {status}{' ' + code if code else ''} from {_path(resp.url)}"
        message = error_code(info.get("message"))
        if status == 429 or code == "TOO_MANY_REQUESTS":
            rate = _rate_note(resp.headers)
            return RateLimited(f"{where}: Zoho API credits or concurrent-call limit used up" + (f" ({rate})" if rate else ""),
                               retry_after=retry_after_seconds(resp.headers), status=status)
        if status == 401:
            # Seen only after the one refresh (`_refreshable`), or at once for a code no new token cures.
            return self._auth_error(resp, code)
        if status == 403 or code == "NO_PERMISSION":
            return AuthError(f"{where}: {message or 'permission denied'}; the Zoho user behind the refresh token "
                             "needs read access to this module and to users", status=status)
        if status == 404 or code == "INVALID_URL_PATTERN":
            return BadResponse(f"{where}: Zoho does not know this URL; check api_version ({self.api_version}) and api_url", status=status)
        if code in ("INVALID_MODULE", "NOT_SUPPORTED"):
            return BadResponse(f"{where}: {message or 'module not searchable'}; check the module API names in 'modules'", status=status)
        if status >= 500:
            return None  # ConnectorUnavailable from the shared layer, retried
        return BadResponse(f"{where}: {message or 'request refused'}", status=status)

    def _refreshable(self, resp: Response) -> bool:
        """Only an expired or revoked access token is cured by a new one; a missing scope is not."""
        return _code(resp) in REFRESHABLE

    def _get(self, path: str, *, deadline: Deadline, notes: list[str], params: Mapping[str, Any] | None = None) -> Response:
        """GET ``{api}/crm/{version}/{path}``; the shared layer adds the token and refreshes it once
        on a 401 a new token can cure."""
        self.tokens.token(deadline)  # the token answer names the API domain `_api` needs
        resp = self.http.request("GET", self._api(path), deadline=deadline, params=params, ok=(200, 204))
        _note_rate(resp, notes)
        return resp

    def _api(self, path: str) -> str:
        if not self._api_base:
            raise BadResponse(f"{self.id}: Zoho's token answer named no api_domain; set data_centre or api_url", connector=self.id)
        return f"{self._api_base}/crm/{self.api_version}/{path}"

    def _auth_error(self, resp: Response, code: str) -> AuthError:
        where = f"{self.id}: HTTP 401{' ' + code if code else ''} from {_path(resp.url)}"
        if code == "OAUTH_SCOPE_MISMATCH":
            hint = f"the refresh token lacks a scope this call needs; generate a new one with the scopes {SCOPES}"
        elif code in REFRESHABLE:
            hint = (f"a freshly minted token was refused too: the accounts server ({_host(self.token_url)}) and the API "
                    f"({_host(self._api_base or '')}) must be in the same data centre ({self._dc_name()}), "
                    "and the Zoho user who generated the refresh token must still be active")
        else:
            hint = error_code(_error_body(resp).get("message") or "credentials_refused")
        self._last_auth_error = code or "HTTP 401"
        return AuthError(f"{where}: {hint}", connector=self.id, status=401)

    def _json(self, resp: Response) -> Any:
        """`Response.json`, with digit runs masked in its error (it quotes the URL, query included)."""
        try:
            return resp.json()
        except BadResponse as exc:
            raise BadResponse(f"{self.id}: {scrub(str(exc))}", connector=self.id, status=resp.status) from None

    def _records(self, resp: Response, what: str) -> tuple[list[dict], dict]:
        """The ``data`` records and the ``info`` block of a records answer (204: none)."""
        if resp.status == 204:
            return [], {}
        body = self._json(resp)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BadResponse(f"{self.id}: {what} answer has no 'data' list", connector=self.id, status=resp.status)
        info = body.get("info")
        return data, info if isinstance(info, dict) else {}

    # -- lookup -------------------------------------------------------------------------------

    def _find_by_phone(self, e164: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        forms = _search_forms(e164, self.phone_forms)
        # Mint before fanning out, so the module searches share one token instead of queueing on it.
        self.tokens.token(deadline)
        outcomes = self._fan_out(self.modules, lambda m: self._search_module(m, forms, e164, deadline), deadline)
        candidates: list[Candidate] = []
        failed: list[tuple[str, ConnectorError]] = []
        for module in self.modules:
            outcome = outcomes[module]
            if isinstance(outcome, ConnectorError):
                failed.append((module, outcome))
                continue
            hits, module_notes = outcome
            notes.extend(module_notes)
            candidates += [Candidate(module, str(r.get("id") or ""), _modified(r), data=r) for r in hits]
        if not candidates:
            if failed:
                raise _worst([exc for _, exc in failed])
            self.log.info("connector=%s no Zoho record for %s", self.id, mask(e164))
            return None
        for module, exc in failed:
            notes.append(f"{module} search failed ({exc.kind}); answered from the other modules")
        winner, note = pick_record(candidates, self.modules)
        assert winner is not None
        if note:
            notes.append(note)
        return winner.object_type, winner.data

    def _search_module(self, module: str, forms: Sequence[tuple[str, str]], e164: str, deadline: Deadline) -> tuple[list[dict], list[str]]:
        """One module: search each number form until a hit has the caller's number."""
        notes: list[str] = []
        for label, digits in forms:
            if deadline.expired:
                raise ConnectorTimeout(f"{self.id}: out of time before searching {module}", connector=self.id)
            resp = self._get(f"{module}/search", deadline=deadline, notes=notes,
                             params={"phone": digits, "page": 1, "per_page": PER_PAGE})
            records, info = self._records(resp, f"{module} search")
            hits = [r for r in records if self._has_number(r, e164)]
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

    def _has_number(self, record: Mapping[str, Any], e164: str) -> bool:
        """True when a phone-like field holds the caller's number (the search over-matches)."""
        region = self.context.region
        for key, value in record.items():
            low = key.lower()
            if isinstance(value, str) and not key.startswith("$") and ("phone" in low or "mobile" in low):
                if same_number(value, e164, region):
                    return True
        return False

    def _find_by_account(self, value: str, deadline: Deadline, notes: list[str]) -> tuple[str, dict] | None:
        module, field = self.account_module, self.account_field
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
        winner, note = pick_record([Candidate(module, str(r.get("id") or ""), _modified(r), data=r) for r in hits], [module])
        assert winner is not None
        if note:
            notes.append(note)
        notes.append(f"{module}: matched on {field}")
        return module, winner.data

    # -- owner --------------------------------------------------------------------------------

    def _answer(self, module: str, record: dict, deadline: Deadline, notes: list[str]) -> Match | None:
        rec = Record(type=module, id=str(record.get("id") or "") or None, name=_record_name(record))
        owner_ref = self._owner_ref(record, rec)
        source = f"{module} record owner"
        account_id = _lookup_id(record.get("Account_Name")) if module == "Contacts" else None
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
        ref = _user_ref(value)
        if ref is None:
            raise BadResponse(f"{self.id}: {rec.type}/{rec.id} has an Owner that is not a user lookup {{id, name, email}}",
                              connector=self.id)
        return ref

    def _owner(self, ref: dict, deadline: Deadline, notes: list[str]) -> Owner:
        """The owner from the record's Owner lookup, completed from ``users/{id}`` (best effort)."""
        base = Owner(id=ref["id"], email=ref.get("email"), name=ref.get("name"))
        if self.clock() < self._users_denied_until:
            notes.append("owner phone/role skipped: the users API refused this token recently")
            return base
        fetched: list[bool] = []

        def load() -> dict | None:
            fetched.append(True)
            resp = self._get(f"users/{ref['id']}", deadline=deadline, notes=notes)
            if resp.status == 204:
                return None
            body = self._json(resp)
            users = body.get("users") if isinstance(body, dict) else None
            if not isinstance(users, list) or (users and not isinstance(users[0], dict)):
                raise BadResponse(f"{self.id}: users answer has no 'users' list", connector=self.id, status=resp.status)
            return users[0] if users else None

        try:
            if deadline.expired:
                raise ConnectorTimeout(f"{self.id}: out of time before the users call", connector=self.id)
            user = self._users.get_or_load(ref["id"], load)
        except ConnectorError as exc:
            if isinstance(exc, AuthError):
                self._users_denied_until = self.clock() + USERS_DENIED_PAUSE_S
            notes.append(f"owner phone/role unavailable ({exc.kind}); matching reps by owner id/email only")
            return base
        if not fetched:
            notes.append(f"owner {ref['id']} from cache")
        if user is None:
            notes.append(f"users/{ref['id']} not found (deleted user?); matching reps by owner id/email only")
            return base
        if str(user.get("status") or "active").lower() != "active":
            notes.append(f"owner {ref['id']} is {user.get('status')} in Zoho")
        role = user.get("role")
        team = str(role["name"]) if isinstance(role, dict) and role.get("name") else None
        other = "phone" if self.owner_phone == "mobile" else "mobile"
        phone = None
        for key in (self.owner_phone, other):
            value = user.get(key)
            phone = to_e164(value, self.context.region) if isinstance(value, str) else None
            if phone:
                break
        email = base.email or (user.get("email") if isinstance(user.get("email"), str) else None)
        name = base.name or user.get("full_name")
        return Owner(id=base.id, email=email, name=name, phone=phone, team=team)

    # -- check and lifecycle ------------------------------------------------------------------

    def check(self, *, deadline: Deadline) -> str:
        notes: list[str] = []
        resp = self._get("users", deadline=deadline, notes=notes, params={"type": "CurrentUser"})
        body = self._json(resp) if resp.status == 200 else {}
        users = body.get("users") if isinstance(body, dict) else None
        if not isinstance(users, list) or not users or not isinstance(users[0], dict):
            raise BadResponse(f"{self.id}: users?type=CurrentUser answer has no user", connector=self.id, status=resp.status)
        me = users[0]
        role = me.get("role", {}).get("name") if isinstance(me.get("role"), dict) else None
        text = (f"token from {_host(self.token_url)} accepted by {self._api_base}/crm/{self.api_version}; "
                f"signed in as {me.get('full_name') or me.get('email') or me.get('id')}" + (f" (role {role})" if role else ""))
        extra = [n for n in (self.dc_warning, *notes) if n]
        return text + (f"; {'; '.join(extra)}" if extra else "")

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        super().close()


# -- helpers ----------------------------------------------------------------------------------


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {token}"}


def _url(key: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", text):
        raise ConfigError(key, f"'{text}' is not an http(s) URL")
    return text


def _names(key: str, value: Any) -> tuple[str, ...]:
    items = [str(x).strip() for x in (value or []) if x is not None]
    if not items:
        raise ConfigError(key, "list at least one module API name, e.g. Contacts")
    for i, item in enumerate(items):
        if not _API_NAME.match(item):
            where = f"{key}[{i}]" if len(items) > 1 or key == "modules" else key
            raise ConfigError(where, f"'{item}' is not a Zoho API name (letters, digits and '_', e.g. Contacts, Account_Number)")
    if len(set(items)) != len(items):
        raise ConfigError(key, "each name may appear once")
    return tuple(items)


def _forms(value: Any) -> tuple[str, ...]:
    items = [str(x).strip().lower() for x in (value or [])]
    if not items:
        raise ConfigError("phone_forms", f"list at least one of {', '.join(PHONE_FORMS)}")
    for i, item in enumerate(items):
        if item not in PHONE_FORMS:
            raise ConfigError(f"phone_forms[{i}]", f"'{item}' is not one of {', '.join(PHONE_FORMS)}")
    return tuple(dict.fromkeys(items))


def _search_forms(e164: str, forms: Sequence[str]) -> list[tuple[str, str]]:
    """Digits-only search values (nothing to escape, and never a '+' that decodes to a space)."""
    n = phonenumbers.parse(e164, None)
    national = str(n.national_number)
    values = {"national": national, "international": f"{n.country_code}{national}"}
    return [(f, values[f]) for f in forms]


def _expires_in(body: Mapping[str, Any]) -> float | None:
    """Seconds; older Zoho answers carry ``expires_in`` in milliseconds next to ``expires_in_sec``."""
    for key in ("expires_in_sec", "expires_in"):
        try:
            value = float(body[key])
        except (KeyError, TypeError, ValueError):
            continue
        return value / 1000.0 if value > 86400 else value
    return None


def _user_ref(value: Any) -> dict | None:
    """A Zoho user lookup ``{id, name, email}`` with a numeric id (it goes into a URL path)."""
    if not isinstance(value, dict):
        return None
    uid = str(value.get("id") or "").strip()
    if not _NUMERIC_ID.match(uid):
        return None
    email = value.get("email") if isinstance(value.get("email"), str) and value.get("email") else None
    name = value.get("name") if isinstance(value.get("name"), str) and value.get("name") else None
    return {"id": uid, "email": email, "name": name}


def _lookup_id(value: Any) -> str | None:
    uid = str(value.get("id") or "").strip() if isinstance(value, dict) else ""
    return uid if _NUMERIC_ID.match(uid) else None


def _record_name(record: Mapping[str, Any]) -> str | None:
    for key in ("Full_Name", "Account_Name", "Deal_Name", "Name", "Last_Name"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _modified(record: Mapping[str, Any]) -> str:
    """Modified_Time as UTC text: Zoho writes it in the user's offset, which breaks text order."""
    return as_utc(str(record.get("Modified_Time") or ""))


def _worst(errors: Sequence[ConnectorError]) -> ConnectorError:
    """The error that says most about what to fix: auth, then bad answers, then limits, then outages."""
    order = (AuthError, BadResponse, RateLimited, ConnectorTimeout, ConnectorUnavailable)
    return min(errors, key=lambda e: next((i for i, cls in enumerate(order) if isinstance(e, cls)), len(order)))


def _error_body(resp: Response) -> dict:
    try:
        body = resp.json()
    except ConnectorError:
        return {}
    if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"] and isinstance(body["data"][0], dict):
        return body["data"][0] if body["data"][0].get("code") else body
    return body if isinstance(body, dict) else {}


def _code(resp: Response) -> str:
    return str(_error_body(resp).get("code") or "").upper()


def _rate_note(headers: Mapping[str, str]) -> str | None:
    seen = [f"{h}={headers.get(h)}" for h in RATE_HEADERS if headers.get(h) is not None]
    return "zoho rate: " + ", ".join(seen) if seen else None


def _note_rate(resp: Response, notes: list[str]) -> None:
    note = _rate_note(resp.headers)
    if note:
        notes.append(note)


def _tidy(notes: list[str]) -> list[str]:
    """Notes in order, without repeats, and only the last rate-limit reading."""
    rate = [n for n in notes if n.startswith("zoho rate:")]
    out = [n for n in dict.fromkeys(notes) if not n.startswith("zoho rate:")]
    return out + rate[-1:]



def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _dc_suffix(url: str) -> str:
    host = _host(url)
    return host.split("zohoapis", 1)[1] if "zohoapis" in host else host


def _path(url: str | None) -> str:
    return (url or "?").split("?", 1)[0]
