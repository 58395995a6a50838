"""Zoho's answers: error bodies ``{code, details, message, status}``, the scope each call needs,
rate headers, and masking of what Zoho echoes back."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from dialwhom.sdk import (
    AuthError,
    BadResponse,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    RateLimited,
    Response,
    error_code,
    scrub,
    retry_after_seconds,
)

__all__ = ["SCOPES", "REFRESHABLE", "classify", "code", "error_body", "module_scope", "scope_for", "scopes_missing",
           "rate_note", "scrub", "worst", "path_of"]

#: what the connector's calls need, one scope per line of docs/crm/zoho.md
SCOPES = (
    "ZohoCRM.modules.contacts.READ,ZohoCRM.modules.leads.READ,ZohoCRM.modules.accounts.READ,"
    "ZohoSearch.securesearch.READ,ZohoCRM.users.READ,ZohoCRM.settings.fields.READ"
)
#: 401 codes a fresh access token can cure; any other 401 (a missing scope) cannot
REFRESHABLE = {"", "INVALID_TOKEN", "INVALID_OAUTHTOKEN", "AUTHENTICATION_FAILURE"}
RATE_HEADERS = ("X-API-CREDITS-REMAINING", "X-RATELIMIT-LIMIT", "X-RATELIMIT-REMAINING", "X-RATELIMIT-RESET")

_CRM_PATH = re.compile(r"/crm/v[0-9.]+/([^/?]+)(/[^?]*)?")


def path_of(url: str | None) -> str:
    return (url or "?").split("?", 1)[0]


def error_body(resp: Response) -> dict:
    """Zoho's error object (a single object, or the first of ``data`` for record APIs)."""
    try:
        body = resp.json()
    except ConnectorError:
        return {}
    if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"] and isinstance(body["data"][0], dict):
        return body["data"][0] if body["data"][0].get("code") else body
    return body if isinstance(body, dict) else {}


def code(resp: Response) -> str:
    return str(error_body(resp).get("code") or "").upper()


#: modules with a scope of their own; any other (custom) module needs ZohoCRM.modules.custom.READ
_STANDARD_MODULES = {"leads", "accounts", "contacts", "deals", "campaigns", "tasks", "cases", "events", "calls", "solutions",
                     "products", "vendors", "pricebooks", "quotes", "salesorders", "purchaseorders", "invoices", "notes"}


def module_scope(module: str) -> str:
    """The read scope of a module (``ZohoCRM.modules.contacts.READ``, or the custom-module scope)."""
    name = module.lower()
    return f"ZohoCRM.modules.{name if name in _STANDARD_MODULES else 'custom'}.READ"


def scope_for(url: str | None) -> str:
    """The scope(s) Zoho wants for the call at `url` (to name it on OAUTH_SCOPE_MISMATCH)."""
    m = _CRM_PATH.search(url or "")
    if not m:
        return SCOPES
    head, rest = m.group(1), (m.group(2) or "")
    if head == "users":
        return "ZohoCRM.users.READ"
    if head == "settings":
        return f"ZohoCRM.settings.{rest.strip('/').split('/')[0] or 'ALL'}.READ"
    module = module_scope(head)
    return f"ZohoSearch.securesearch.READ and {module}" if rest.startswith("/search") else module


def scopes_missing(granted: str | None, needed: Sequence[str]) -> list[str] | None:
    """The needed scopes the token answer's ``scope`` does not cover (``ZohoCRM.modules.ALL`` covers
    ``ZohoCRM.modules.leads.READ``); None when Zoho did not say."""
    if not granted:
        return None
    have = {s.lower() for s in re.split(r"[\s,]+", granted) if s}
    missing = []
    for need in needed:
        parts = need.lower().split(".")
        covering = {need.lower(), ".".join(parts[:-1] + ["all"])}
        if len(parts) == 4:
            covering |= {".".join(parts[:2] + ["all"]), ".".join(parts[:2] + [parts[3]])}
        if not covering & have:
            missing.append(need)
    return missing


def rate_note(headers: Mapping[str, str]) -> str | None:
    seen = [f"{h}={headers.get(h)}" for h in RATE_HEADERS if headers.get(h) is not None]
    return "zoho rate: " + ", ".join(seen) if seen else None


def classify(resp: Response, *, connector_id: str, api_version: str, auth_hint: str) -> ConnectorError | None:
    """Zoho's error body says more than the status (the token endpoint is read by `OAuthClient`)."""
    status = resp.status
    if status < 400:
        return None
    info = error_body(resp)
    c = str(info.get("code") or "").upper()
    where = f"{connector_id}: HTTP {status}{' ' + c if c else ''} from {path_of(resp.url)}"
    message = error_code(info.get("message"))
    if status == 429 or c == "TOO_MANY_REQUESTS":
        rate = rate_note(resp.headers)
        return RateLimited(f"{where}: Zoho API credits or concurrent-call limit used up" + (f" ({rate})" if rate else ""),
                           retry_after=retry_after_seconds(resp.headers), status=status)
    if status == 401:
        # Seen only after the one refresh (`refreshable`), or at once for a code no new token cures.
        if c == "OAUTH_SCOPE_MISMATCH":
            hint = (f"the refresh token lacks the scope {scope_for(resp.url)}; generate a new one with the scopes {SCOPES}")
        elif c in REFRESHABLE:
            hint = auth_hint
        else:
            hint = message or "credentials refused"
        return AuthError(f"{where}: {hint}", status=401)
    if status == 403 or c == "NO_PERMISSION":
        return AuthError(f"{where}: {message or 'permission denied'}; the Zoho user behind the refresh token "
                         "needs read access to this module and to users", status=status)
    if status == 404 or c == "INVALID_URL_PATTERN":
        return BadResponse(f"{where}: Zoho does not know this URL; check api_version ({api_version}) and api_url", status=status)
    if c in ("INVALID_MODULE", "NOT_SUPPORTED"):
        return BadResponse(f"{where}: {message or 'module not searchable'}; check the module API names in 'modules'", status=status)
    if status >= 500:
        return None  # ConnectorUnavailable from the shared layer, retried
    return BadResponse(f"{where}: {message or 'request refused'}", status=status)


def worst(errors: Sequence[ConnectorError]) -> ConnectorError:
    """The error that says most about what to fix: auth, then bad answers, then limits, then outages."""
    order = (AuthError, BadResponse, RateLimited, ConnectorTimeout, ConnectorUnavailable)
    return min(errors, key=lambda e: next((i for i, cls in enumerate(order) if isinstance(e, cls)), len(order)))


def json_of(resp: Response, connector_id: str) -> Any:
    """`Response.json`, with digit runs masked in its error (it quotes the URL, query included)."""
    try:
        return resp.json()
    except BadResponse as exc:
        raise BadResponse(f"{connector_id}: {scrub(str(exc))}", connector=connector_id, status=resp.status) from None
