"""Phone numbers: parse what Exotel and CRMs send, answer in E.164 (masking: `dialwhom.routing.redact`).

    >>> to_e164("09876543210", "IN")
    '+919876543210'
    >>> to_e164(" 919876543210", "IN")   # a '+' that arrived as a space
    '+919876543210'
    >>> to_e164("0091 98765-43210", "IN")
    '+919876543210'
    >>> to_e164("not a number", "IN") is None
    True
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

_NOT_PHONE_CHARS = re.compile(r"[^0-9+()\-./ \t]")
_DIGITS = re.compile(r"\d")


#: how a dialable number starts; a value starting so is no SIP id (checked first: it is the
#: common case, on every answer)
_NUMBER_START = "+0123456789"


def is_sip(value: str) -> bool:
    """True for SIP ids such as ``sip:agent42``; they pass through untouched."""
    return value[:1] not in _NUMBER_START and value.lstrip()[:4].lower() == "sip:"


_NOT_ASCII_DIGIT = re.compile(r"[^0-9]+")


def digits_only(value: str) -> str:
    """Only the ASCII digits of `value` (safe to put inside any query syntax)."""
    return _NOT_ASCII_DIGIT.sub("", value)


@lru_cache(maxsize=4096)
def to_e164(value: str | None, region: str = "IN") -> str | None:
    """E.164 for a number in any common written form, or None if it is not a phone number."""
    if not value:
        return None
    text = value.strip()
    if not text or len(text) > 40 or _NOT_PHONE_CHARS.search(text):
        return None
    # An unencoded '+' decodes to a space; after strip() only the digits are left, so a raw
    # leading space is checked on the original value.
    if value[:1] == " " and text[:1].isdigit():
        text = "+" + text
    if len(_DIGITS.findall(text)) < 6:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None
    # IS_POSSIBLE_LOCAL_ONLY (6-8 digits without an area code) is no number anyone can dial
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def parse_config_number(value: str, region: str) -> str | None:
    """A number from config: E.164, or a ``sip:`` id kept as written; None if unusable."""
    if is_sip(value):
        return value.strip()
    return to_e164(value, region)


def variants(e164: str) -> list[str]:
    """The forms a CRM may have stored for one number, most likely first, no duplicates.

    Users type numbers as they like (``098765 43210``, ``+91-98765-43210``, ``9876543210``);
    search for all of them, then re-check each hit with `same_number`.
    """
    try:
        n = phonenumbers.parse(e164, None)
    except NumberParseException:
        return [e164]
    national = str(n.national_number)
    cc = str(n.country_code)
    intl = phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL)
    nat_fmt = phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL)
    forms = [
        e164,
        e164[1:],
        national,
        "0" + national,
        intl,
        intl.replace(" ", "-"),
        nat_fmt,
        f"+{cc} {national}",
        f"+{cc}-{national}",
        "00" + e164[1:],
    ]
    seen: dict[str, None] = {}
    for f in forms:
        seen.setdefault(f, None)
    return list(seen)


#: dashes people (and word processors) type inside numbers, and the spaces that are not ASCII
_DASHES_AND_SPACES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"}
                                   | {c: " " for c in "\u00a0\u2007\u202f"})
#: what separates several numbers in one field: , ; | newlines, "or", "and", "&"
_LIST_SEPARATOR = re.compile(r"[,;|\n\r]+|\s(?:or|and|&)\s", re.IGNORECASE)
#: an extension at the end of a number: "ext 5", "ext. 5", "extn 5", "extension 5", "x5", "#5"
_EXTENSION = re.compile(r"(?:\bext(?:ension|n)?\b\.?|(?<![a-z])x|#)\s*[:.\-]?\s*\d{1,7}\s*$", re.IGNORECASE)
#: labels: "(M)", "(home)", "Mobile:", "Tel." ... anything that is not part of a written number
_LABEL = re.compile(r"\([^0-9()]*\)|[^0-9+()\-./\s]")
#: most digits an E.164 number has; a piece with more holds several numbers
_MAX_DIGITS = 15


@lru_cache(maxsize=8192)
def numbers_in(stored: str | None, region: str = "IN") -> tuple[str, ...]:
    """Every phone number in a CRM field, as E.164, in order, without duplicates.

    Fields hold what people type: several numbers (``"9876543210, 9123456789"``,
    ``"98765 43210 / 080 2345 6789"``), labels (``"98765 43210 (M)"``, ``"Mob: ..."``),
    extensions (``"... ext 5"``, ``"... x5"``) and en or em dashes. Labels and extensions are
    ignored; a piece that is no phone number is skipped.

        >>> numbers_in("98765 43210 (M), +91 80 2345 6789 ext 12")
        ('+919876543210', '+918023456789')
    """
    if not stored:
        return ()
    text = stored[:400].translate(_DASHES_AND_SPACES)
    found: dict[str, None] = {}
    for part in _LIST_SEPARATOR.split(text):
        whole = to_e164(_clean(part), region)
        if whole is not None:
            found.setdefault(whole, None)
            continue
        # "9876543210 ext 5 / 9123456789" or "9876543210 9123456789": one number per piece
        pieces = part.split("/") if "/" in part else part.split() if len(digits_only(part)) > _MAX_DIGITS else ()
        for piece in pieces:
            e164 = to_e164(_clean(piece), region)
            if e164 is not None:
                found.setdefault(e164, None)
    return tuple(found)


def _clean(piece: str) -> str:
    """One written number without its extension, labels and stray separators."""
    return _LABEL.sub(" ", _EXTENSION.sub("", piece)).strip(" -./")


def same_number(stored: str | None, e164: str, region: str = "IN") -> bool:
    """True when a CRM field, as stored, holds the caller's number (one of its numbers).

    The common case, one cleanly written number, costs one cached parse.
    """
    if not stored:
        return False
    if to_e164(stored.strip(), region) == e164:
        return True
    return e164 in numbers_in(stored, region)

