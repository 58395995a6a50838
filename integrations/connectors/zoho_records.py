"""Zoho records and users -> dialwhom's model: which record is the caller's, who owns it."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import phonenumbers

from dialwhom.sdk import ConfigError, Owner, as_utc, same_number, to_e164

__all__ = ["PHONE_FORMS", "names", "forms", "search_forms", "has_number", "user_ref", "lookup_id", "record_name",
           "modified", "owner_from_user", "user_active"]

PHONE_FORMS = ("national", "international")

_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_NUMERIC_ID = re.compile(r"^[0-9]{1,25}$")
#: what separates several numbers typed into one phone field ("98765 43210, 91234 56789")


def names(key: str, value: Any) -> tuple[str, ...]:
    """Zoho API names (modules, fields) from config, checked: they go into URLs and criteria."""
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


def forms(value: Any) -> tuple[str, ...]:
    items = [str(x).strip().lower() for x in (value or [])]
    if not items:
        raise ConfigError("phone_forms", f"list at least one of {', '.join(PHONE_FORMS)}")
    for i, item in enumerate(items):
        if item not in PHONE_FORMS:
            raise ConfigError(f"phone_forms[{i}]", f"'{item}' is not one of {', '.join(PHONE_FORMS)}")
    return tuple(dict.fromkeys(items))


def search_forms(e164: str, wanted: Sequence[str]) -> list[tuple[str, str]]:
    """Digits-only search values (nothing to escape, and never a '+' that decodes to a space)."""
    n = phonenumbers.parse(e164, None)
    national = str(n.national_number)
    values = {"national": national, "international": f"{n.country_code}{national}"}
    return [(f, values[f]) for f in wanted]


def has_number(record: Mapping[str, Any], e164: str, region: str) -> bool:
    """True when a phone-like field holds the caller's number, alone or among several (the search over-matches)."""
    for key, value in record.items():
        low = key.lower()
        if isinstance(value, str) and not key.startswith("$") and ("phone" in low or "mobile" in low):
            if same_number(value, e164, region):  # reads every number in the field
                return True
    return False


def user_ref(value: Any) -> dict | None:
    """A Zoho user lookup ``{id, name, email}`` with a numeric id (it goes into a URL path)."""
    if not isinstance(value, dict):
        return None
    uid = str(value.get("id") or "").strip()
    if not _NUMERIC_ID.match(uid):
        return None
    email = value.get("email") if isinstance(value.get("email"), str) and value.get("email") else None
    name = value.get("name") if isinstance(value.get("name"), str) and value.get("name") else None
    return {"id": uid, "email": email, "name": name}


def lookup_id(value: Any) -> str | None:
    uid = str(value.get("id") or "").strip() if isinstance(value, dict) else ""
    return uid if _NUMERIC_ID.match(uid) else None


def record_name(record: Mapping[str, Any]) -> str | None:
    for key in ("Full_Name", "Account_Name", "Deal_Name", "Name", "Last_Name"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def modified(record: Mapping[str, Any]) -> str:
    """Modified_Time as UTC text: Zoho writes it in the user's offset, which breaks text order."""
    return as_utc(str(record.get("Modified_Time") or ""))


def user_active(user: Mapping[str, Any]) -> bool:
    """Zoho's user ``status``: ``active``, else inactive, disabled, deleted, closed, ..."""
    return str(user.get("status") or "active").strip().lower() == "active"


def owner_from_user(ref: Mapping[str, Any], user: Mapping[str, Any] | None, *, owner_phone: str, region: str) -> Owner:
    """The owner from the record's Owner lookup, completed from the Zoho user (phone, role, status)."""
    if user is None:
        return Owner(id=ref["id"], email=ref.get("email"), name=ref.get("name"))
    role = user.get("role")
    team = str(role["name"]) if isinstance(role, dict) and role.get("name") else None
    other = "phone" if owner_phone == "mobile" else "mobile"
    phone = None
    for key in (owner_phone, other):
        value = user.get(key)
        phone = to_e164(value, region) if isinstance(value, str) else None
        if phone:
            break
    email = ref.get("email") or (user.get("email") if isinstance(user.get("email"), str) else None)
    name = ref.get("name") or user.get("full_name")
    return Owner(id=ref["id"], email=email, name=name, phone=phone, team=team, active=user_active(user))
