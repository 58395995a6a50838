"""What Exotel sent, read tolerantly (docs/exotel.md §1).

Nothing is required and nothing raises: empty strings and the literal ``null`` mean absent,
``digits`` loses its double quotes, a ``+`` that arrived as a space is restored, unknown
parameters are ignored.

    >>> r = parse_request({"CallSid": "abc", "CallFrom": "09876543210", "digits": '"1234"'})
    >>> r.caller, r.digits
    ('+919876543210', '1234')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping
from urllib.parse import unquote_plus

from dialwhom.routing.model import Query
from dialwhom.routing.phones import is_sip, to_e164

_ABSENT = {"", "null", "none", "undefined"}
MAX_VALUE_LEN = 256


def clean(value: object) -> str | None:
    """A parameter's value, or None when absent (empty, ``null``), overlong or not text."""
    if not isinstance(value, str) or len(value) > MAX_VALUE_LEN:
        return None
    stripped = value.strip()
    if not stripped or (len(stripped) <= _LONGEST_ABSENT and stripped.lower() in _ABSENT):
        return None
    return value


_LONGEST_ABSENT = max(map(len, _ABSENT))


@dataclass(slots=True)
class ExotelRequest:
    """The parameters this service uses, normalised. Raw numbers are kept for the trace.

    Built once per request by `parse_request` and only read after that (not frozen: a frozen
    dataclass costs a microsecond more to build, on every request).
    """

    call_sid: str | None = None
    caller: str | None = None  # E.164
    caller_raw: str | None = None
    line: str | None = None  # the ExoPhone called, E.164
    custom_field: str | None = None
    digits: str | None = None
    dial_call_status: str | None = None
    dial_whom_number: str | None = None

    def queries(self, order: tuple[str, ...], region: str) -> list[Query]:
        """The customer keys to try, in `lookup_order`, without duplicates."""
        out: list[Query] = []
        seen: set[str] = set()
        for source in order:
            if source == "caller":
                if not self.caller:
                    continue
                q = _query("phone", self.caller, "caller")
            else:  # custom_field, digits
                raw = self.custom_field if source == "custom_field" else self.digits
                if not raw:
                    continue
                phone = to_e164(raw, region)
                # A CustomField that parses as a phone number is a phone; keyed digits
                # are an account number unless they are long enough to be a phone.
                if phone and (source == "custom_field" or len(raw) >= 10):
                    q = _query("phone", phone, source)
                else:
                    q = _query("account", raw.strip(), source)
            key = q.cache_key()
            if key not in seen:
                seen.add(key)
                out.append(q)
        return out


#: Queries are immutable, and callers call again: one object per key (and its cache key) is reused
_query = lru_cache(maxsize=4096)(Query)


class QueryString:
    """A raw query string, read one parameter at a time: ``QueryString(q).get("CallSid")``.

    Exotel sends ~18 parameters and we read a handful, and splitting and decoding them all was
    a quarter of the Python work of a cached answer. `get` finds just the one asked for (the
    first value wins) and decodes just that. Names are matched as sent: Exotel never
    percent-encodes them.

        >>> q = QueryString("CallSid=a1&Created=Tue%2C+14+May&From=09876543210&From=x&CustomField=A%2B1")
        >>> q.get("CallSid"), q.get("From"), q.get("CustomField"), q.get("digits")
        ('a1', '09876543210', 'A+1', None)
    """

    __slots__ = ("_padded",)

    def __init__(self, query: str):
        self._padded = "&" + query

    def get(self, name: str, default: str | None = None) -> str | None:
        padded = self._padded
        needle = _NEEDLES.get(name) or f"&{name}="
        at = padded.find(needle)
        if at < 0:
            return default
        start = at + len(needle)
        end = padded.find("&", start)
        value = padded[start:] if end < 0 else padded[start:end]
        return unquote_plus(value) if ("%" in value or "+" in value) else value


#: ``&name=`` for the names `parse_request` and the token check ask for (built once)
_NEEDLES = {name: f"&{name}=" for name in (
    "CallSid", "CallFrom", "Callfrom", "From", "CallTo", "To", "digits", "Digits", "CustomField",
    "DialWhomNumber", "DialCallStatus", "token",
)}


def parse_request(params: Mapping[str, str] | QueryString, region: str = "IN", *, outcome: bool = True) -> ExotelRequest:
    """Read the parameters (a mapping, or a `QueryString`); never raises.

    `outcome=False` skips ``DialCallStatus`` and ``DialWhomNumber``: only the Passthru applet's
    request uses them, and on the Dial Whom path each absent name is a search of the query.
    """
    get = params.get
    # `clean` gives None or a non-empty string, so `or` picks the first name present
    caller_raw = clean(get("CallFrom")) or clean(get("Callfrom")) or clean(get("From"))
    line_raw = clean(get("CallTo")) or clean(get("To"))
    # Usually absent: `clean` is called only on a value (a call costs more than the test)
    digits = get("digits")
    digits = clean(digits) if digits else None
    if digits is None:
        digits = get("Digits")
        digits = clean(digits) if digits else None
    if digits is not None:
        digits = digits.strip().strip('"').strip() or None
    custom = get("CustomField")
    custom = clean(custom) if custom else None
    whom = clean(get("DialWhomNumber")) if outcome else None
    status = clean(get("DialCallStatus")) if outcome else None
    sid = clean(get("CallSid"))
    # positional, in field order: keyword arguments cost twice as much to bind, on every request
    return ExotelRequest(
        sid.strip()[:128] if sid else None,  # call_sid
        _number(caller_raw, region),  # caller
        caller_raw,
        _number(line_raw, region),  # line
        custom.strip() if custom else None,  # custom_field
        digits,
        status.strip().lower() if status else None,  # dial_call_status
        whom.strip() if whom else None,  # dial_whom_number
    )


def _number(raw: str | None, region: str) -> str | None:
    if raw is None or is_sip(raw):
        return None
    return to_e164(raw, region)
