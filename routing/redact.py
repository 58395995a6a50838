"""Everything that leaves the process passes through here: numbers, secrets, URLs, free text.

One module, so a leak is fixed once: the trace header, log lines, ``dialwhom check`` output
and ``/readyz`` all use these functions.

    >>> mask("+919876543210")
    '+91*******210'
    >>> safe_url("https://user:pa55@crm.example/v1/find/+919876543210?phone=9876543210&key=k")
    'https://***@crm.example/v1/find/+91*******210'
    >>> printable("CA1\\n2026 forged line\\x1b[31m")
    'CA1\\\\x0a2026 forged line\\\\x1b[31m'
    >>> error_code("INVALID_AUTHENTICATION"), error_code("token pat-na1-abc is wrong")
    ('INVALID_AUTHENTICATION', '(message withheld, 26 chars)')

Configured secrets (the connectors' ``Secret`` options, the ``token`` values, passwords in
URLs) are registered once at config time (`remember_secret`) and masked in every outgoing
string (`outgoing`), wherever a CRM or a library echoes them.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
import threading
from typing import Any, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import phonenumbers

from dialwhom.routing.phones import digits_only, is_sip

__all__ = [
    "mask", "mask_secret", "mask_options", "remember_secret", "mask_secrets", "safe_url",
    "mask_query_secrets", "mask_secret_params", "scrub", "printable", "loggable", "error_code",
    "exception_reason", "outgoing", "header_value", "install_log_redaction",
]

# -- phone numbers ----------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # every logged answer masks its caller; callers call again
def mask(value: str | None) -> str:
    """A number fit for logs: country code and last three digits only."""
    if not value:
        return "-"
    if is_sip(value):
        return "sip:***"
    digits = digits_only(value)
    if len(digits) <= 5:
        return "*" * len(digits)
    head = ""
    if value.strip().startswith("+"):
        cc = _country_code(digits)
        head, digits = "+" + cc, digits[len(cc):]
    return head + "*" * (len(digits) - 3) + digits[-3:]


def _country_code(digits: str) -> str:
    """The 1-3 leading digits that are a country calling code, or '' if none are."""
    for n in (1, 2, 3):
        if phonenumbers.region_code_for_country_code(int(digits[:n])) != "ZZ":
            return digits[:n]
    return ""


#: a run of 7+ digits, possibly written with separators or URL-encoded ('%2B9198…')
_NUMBERISH = re.compile(r"(?:\+|%2[bB])?\d(?:[\d\-. ()]|%20){5,}\d")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _mask_numberish(m: re.Match) -> str:
    if _IPV4.fullmatch(m.group()):  # a CRM host like 10.0.12.34 is no phone, and the admin needs it
        return m.group()
    return mask(re.sub("%2[bB]", "+", m.group()).replace("%20", " "))


# -- secrets ----------------------------------------------------------------------------------


def mask_secret(value: str) -> str:
    """Two leading characters and stars: enough to tell two tokens apart, not to use one."""
    return (value[:2] + "***") if len(value) >= 8 else "***"


def mask_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of connector options safe to print: secrets (anything with `masked()`) masked."""
    return {k: (v.masked() if callable(getattr(v, "masked", None)) else v) for k, v in options.items()}


#: shorter values are too likely to be ordinary words to mask everywhere
_MIN_SECRET_LEN = 6


class _SecretRegistry:
    """The configured secret values, as one regex of every form they may appear in."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern | None = None

    def add(self, value: str) -> None:
        value = str(value).strip()
        if len(value) < _MIN_SECRET_LEN:
            return
        forms = {value, quote(value, safe=""), quote(value, safe="/:")}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            ordered = sorted(self._values, key=len, reverse=True)  # longest first: no partial masks
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
        _forget_made_safe()  # remembered results were made safe without this secret

    def mask(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            return text
        return pattern.sub(lambda m: mask_secret(m.group()), text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None
        _forget_made_safe()


_SECRETS = _SecretRegistry()


def remember_secret(value: str | None) -> None:
    """Register a configured secret: from now on `outgoing` masks it wherever it appears."""
    if value:
        _SECRETS.add(value)


def mask_secrets(text: str) -> str:
    """`text` with every registered secret masked."""
    return _SECRETS.mask(text)


# -- URLs -------------------------------------------------------------------------------------

#: a phone number in a URL path: six or more digits, maybe after an encoded or literal '+'
_PATH_NUMBER = re.compile(r"(?:%2[Bb]|\+)?\d{6,}")
_QUERY_PAIR = re.compile(r"(^|[&;])([^&;=]*)=([^&;]*)")
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|signature", re.I)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s'\"<>]+")


def safe_url(url: str | None) -> str:
    """A URL fit for messages: no user info, no query string or fragment (they may hold a
    number or a key), and long digit runs in the path (a ``{phone}`` placeholder) masked."""
    if not url:
        return "?"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = _PATH_NUMBER.sub(lambda m: mask(re.sub(r"^%2[Bb]", "+", m.group())), parts.path)
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def mask_query_secrets(url: str) -> str:
    """For the simulator's transcript: hide secret query values (``token=***``) and a password
    in the user info, keep the rest (the developer sent it and needs to see it)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = _QUERY_PAIR.sub(lambda m: f"{m[1]}{m[2]}=***" if _SECRET_KEY.search(m[2]) else m[0], parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_secret_params(params: Mapping[str, str]) -> dict[str, str]:
    """Parameters with the values of secret-looking names (token, password, ...) hidden."""
    return {k: ("***" if _SECRET_KEY.search(k) else v) for k, v in params.items()}


# -- free text --------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_RUN = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@lru_cache(maxsize=4096)  # a decision line scrubs the same notes again and again
def scrub(text: str) -> str:
    """Free text (connector errors, notes) fit for a log line or a header: one line, URLs made
    safe, secrets and numbers masked."""
    text = _CONTROL_RUN.sub(" ", str(text))
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: safe_url(m.group()), text)
    text = _SECRETS.mask(text)
    return _NUMBERISH.sub(_mask_numberish, text)


def printable(value: str | None) -> str:
    """A request value (CallSid, DialCallStatus, ...) fit for one log line: control characters
    escaped as ``\\xNN``, so no value can start a forged line or drive a terminal."""
    if value is None:
        return "-"
    if value.isprintable() or not _CONTROL.search(value):  # isprintable: no Cc character, in C
        return value
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def loggable(value: str | None) -> str:
    """A free request value (DialCallStatus, ...) for a log line: numbers in it masked, control
    characters escaped. Not for CallSid: a hex id often holds seven digits in a row."""
    if value is None:
        return "-"
    return printable(_NUMBERISH.sub(_mask_numberish, value))


#: what a vendor error code looks like ('INVALID_AUTHENTICATION', 'invalid_client', '4003')
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,48}$")


def error_code(text: Any) -> str:
    """A vendor's error *code*, scrubbed; free text is never quoted (a CRM may echo a token,
    an email or the query), only its length is told."""
    text = "" if text is None else str(text).strip()
    if not text:
        return "-"
    if _CODE.match(text):
        return scrub(text)
    return f"(message withheld, {len(text)} chars)"


def exception_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few known words; never the exception's text (it holds
    the URL, with its query)."""
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Name or service not known", "RemoteDisconnected", "timed out"):
        if marker in text:
            return marker
    return type(exc).__name__


_WITHHELD = "?<query withheld>"
#: a query string after a path, as a request line or a library's log quotes it
_QUERY_IN_TEXT = re.compile(r"\?(?!<query withheld>)[^\s'\"<>?]*=[^\s'\"<>]*")
#: 8+ digits in a row: a phone number (a pid, a port, a count or a duration has fewer)
_LONG_NUMBER = re.compile(r"(?:%2[Bb]|\+)?\d{8,}")


def outgoing(text: str, *, one_line: bool = True) -> str:
    """A string about to leave the process (a header, a log line, a JSON document): URLs made
    safe, query strings withheld, registered secrets and long digit runs masked, and
    (`one_line`) control characters escaped. Numbers written with separators are the call
    sites' job (`mask`, `scrub`): only they know which digits are a number."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: safe_url(m.group()), text)
    if "?" in text:
        text = _QUERY_IN_TEXT.sub(_WITHHELD, text)
    text = _SECRETS.mask(text)
    text = _LONG_NUMBER.sub(lambda m: mask(re.sub(r"^%2[Bb]", "+", m.group())), text)
    return printable(text) if one_line else text


#: any query after a '?', even one without '=' (a malformed request line's)
_ANY_QUERY = re.compile(r"\?(?!<query withheld>)[^\s'\"]*")


@lru_cache(maxsize=4096)  # a warm caller's trace header repeats from one answer to the next
def header_value(text: str) -> str:
    """A response header's value: `outgoing`, ASCII only, at most 1,500 characters."""
    text = outgoing(text)
    if not text.isascii():
        text = text.encode("ascii", "replace").decode()
    return text[:1500]


def _forget_made_safe() -> None:
    """Drop remembered results of `scrub` and `header_value` (a secret was registered)."""
    scrub.cache_clear()
    header_value.cache_clear()


def request_line_safe(text: str) -> str:
    """Text that may quote a request line (even a malformed one, whose query need not hold an
    '='), without its query string; then `outgoing`: secrets and numbers masked, one line."""
    return outgoing(_ANY_QUERY.sub(_WITHHELD, text))


# -- logging ----------------------------------------------------------------------------------

_installed = False


def install_log_redaction() -> None:
    """Pass every log record's message through `outgoing`, whichever logger made it (urllib3
    logs URLs, gunicorn logs request lines). Idempotent; wraps the current record factory."""
    global _installed
    with _SECRETS._lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return record
        cleaned = outgoing(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
