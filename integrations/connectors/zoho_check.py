"""`dialwhom check` for Zoho: the token, the real search, the configured fields, the users.

Each step runs the call lookups depend on; a refused call names the scope it needs (Zoho's
OAUTH_SCOPE_MISMATCH body does not say which). Problems raise one error listing them all; what
could not be checked is reported as ``warn:`` in the note, never as fine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialwhom.sdk import AuthError, BadResponse, ConnectorError, Deadline

from . import zoho_errors as errors
from .zoho_dc import host
from .zoho_records import search_forms
from .zoho import PROBE_NUMBER  # zoho imports this module lazily: no cycle at load time

if TYPE_CHECKING:
    from .zoho import ZohoConnector

__all__ = ["run_check"]


def run_check(c: "ZohoConnector", deadline: Deadline) -> str:
    notes: list[str] = []
    problems: list[str] = []
    warns: list[str] = []
    refused = False  # a problem with credentials or scopes (AuthError) rather than with config
    grant = c.tokens.grant(deadline)
    resp = c._get("users", deadline=deadline, notes=notes, params={"type": "CurrentUser"})  # proves token + API domain
    body = errors.json_of(resp, c.id) if resp.status == 200 else {}
    me = body.get("users") if isinstance(body, dict) else None
    if not isinstance(me, list) or not me or not isinstance(me[0], dict):
        raise BadResponse(f"{c.id}: users?type=CurrentUser answer has no user", connector=c.id, status=resp.status)
    role = me[0].get("role", {}).get("name") if isinstance(me[0].get("role"), dict) else None
    who = f"signed in as {me[0].get('full_name') or me[0].get('email') or me[0].get('id')}" + (f" (role {role})" if role else "")
    needed = [*dict.fromkeys(errors.module_scope(m) for m in (*c.modules, c.account_module)),
              "ZohoSearch.securesearch.READ", "ZohoCRM.users.READ", "ZohoCRM.settings.fields.READ"]
    missing = errors.scopes_missing(grant.body.get("scope"), needed)
    if missing:
        refused = True
        problems.append(f"the token's scopes lack {', '.join(missing)} (generate a refresh token with {errors.SCOPES})")
    elif missing is None:
        warns.append("Zoho's token answer lists no scopes; checked call by call only")

    # The real search, for a number no record should hold.
    digits = search_forms(PROBE_NUMBER, c.phone_forms[:1])[0][1]
    for module in c.modules:
        try:
            resp = c._get(f"{module}/search", deadline=deadline, notes=notes, params={"phone": digits, "page": 1, "per_page": 1})
            c._records(resp, f"{module} search")
        except ConnectorError as exc:
            refused = refused or isinstance(exc, AuthError)
            problems.append(f"{module} search: {exc}")
    searched = f"phone search ran in {', '.join(c.modules)}"

    # Configured fields exist (fields metadata API).
    fields_checked = []
    for module in dict.fromkeys((*c.modules, c.account_module)):
        try:
            resp = c._get("settings/fields", deadline=deadline, notes=notes, params={"module": module})
            body = errors.json_of(resp, c.id) if resp.status == 200 else {}
            fields = body.get("fields") if isinstance(body, dict) else None
            if not isinstance(fields, list):
                raise BadResponse(f"{c.id}: fields answer for {module} has no 'fields' list", connector=c.id)
        except AuthError as exc:
            warns.append(f"fields of {module} not checked ({exc})")
            continue
        except ConnectorError as exc:
            warns.append(f"fields of {module} not checked ({exc.kind}: {exc})")
            continue
        api_names = {str(f.get("api_name")) for f in fields if isinstance(f, dict)}
        phones = [f for f in fields if isinstance(f, dict) and str(f.get("data_type")).lower() == "phone"]
        if "Owner" not in api_names:
            problems.append(f"{module} has no Owner field the user can read")
        if module in c.modules and not phones:
            problems.append(f"{module} has no phone field: its search can never match a caller")
        if module == c.account_module and c.account_field not in api_names:
            problems.append(f"account_field '{c.account_field}' is not a field of {module} (fields: "
                            f"{', '.join(sorted(n for n in api_names if 'number' in n.lower() or 'account' in n.lower())[:8]) or 'none like it'})")
        fields_checked.append(module)

    # The user directory (owner phone and role) loads.
    try:
        count = c.users.load(deadline)
        users = f"{count} active users in the directory"
    except AuthError as exc:
        refused = True
        problems.append(f"users directory: {exc}")
        users = "users not readable"
    except ConnectorError as exc:
        warns.append(f"users directory not loaded ({exc.kind}: {exc})")
        users = "users not checked"

    if problems:
        error = AuthError if refused else BadResponse
        raise error(f"{c.id}: " + "; ".join(problems), connector=c.id)
    text = (f"token from {host(c.token_url)} accepted by {c._api_base}/crm/{c.api_version}; {who}; {searched}; "
            f"fields ok in {', '.join(fields_checked) or 'no module'}; {users}")
    extra = [n for n in (c.dc_warning, *dict.fromkeys(notes[-1:])) if n] + [f"warn: {w}" for w in warns]
    return text + (f"; {'; '.join(extra)}" if extra else "")
