"""Zoho data centres: which accounts server and API domain an org lives on.

A client, its refresh token and its access tokens exist only in the data centre that issued
them; the token answer names the API domain to use (``api_domain``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from dialwhom.sdk import ConfigError

__all__ = ["DATA_CENTRES", "data_centre", "url", "host", "check_api_domain"]

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

_ZOHO_API_DOMAIN = re.compile(r"^https://([a-z0-9-]+\.)*zohoapis\.[a-z]{2,3}(\.[a-z]{2})?$")


def data_centre(value: Any, accounts_url: Any) -> str | None:
    """The configured data centre, normalised; None when overrides replace it."""
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


def url(key: str, value: Any) -> str | None:
    """An http(s) URL option without its trailing slash (None when unset)."""
    if value in (None, ""):
        return None
    text = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", text):
        raise ConfigError(key, f"'{text}' is not an http(s) URL")
    return text


def host(url_text: str) -> str:
    return urlsplit(url_text).netloc or url_text


def _suffix(url_text: str) -> str:
    h = host(url_text)
    return h.split("zohoapis", 1)[1] if "zohoapis" in h else h


def check_api_domain(domain: Any, dc: str | None, dc_name: str) -> tuple[str | None, str | None]:
    """(the token answer's API domain if it is a Zoho one, a warning when it is another DC's)."""
    if not isinstance(domain, str):
        return None, None
    domain = domain.strip().rstrip("/")
    if not _ZOHO_API_DOMAIN.match(domain):
        return None, f"token answer names api_domain {domain[:80]!r}, not a Zoho API domain; ignored"
    expected = DATA_CENTRES.get(dc or "", (None, None))[1]
    if expected and _suffix(domain) != _suffix(expected):
        return domain, f"{dc_name} expects {expected} but Zoho's token answer names {domain}; using {domain} (fix data_centre to match)"
    return domain, None
