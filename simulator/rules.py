"""Exotel's contract for an answer (docs/exotel.md §2, §5): what a body may hold."""

from __future__ import annotations

import json
import re


from dialwhom.simulator.model import E164_RE, SIP_RE, BodyCheck

# --------------------------------------------------------------------------------------------
# Checking an answer
# --------------------------------------------------------------------------------------------


def check_body(body: str) -> BodyCheck:
    """Read a 200 body as Exotel would (§2); any invalid entry rejects the whole answer.

    >>> check_body("+919812345678,+919812345679").numbers
    ('+919812345678', '+919812345679')
    >>> check_body("09812345678").accepted
    False
    """
    findings: list[tuple[str, str]] = []
    stripped = body.strip()
    if not stripped:
        return BodyCheck((), (("violation", "200 with an empty body: Exotel dials nobody and "
                               "takes the applet's \"didn't dial anyone\" exit; the fallback URL "
                               "is not tried"),))
    if stripped[0] in "{[":
        try:
            json.loads(stripped)
            what = "the body is JSON"
        except ValueError:
            what = "the body looks like JSON"
        return BodyCheck((), (("violation", f"{what}; the Dial Whom URL must answer plain "
                               "comma-separated E.164 numbers such as +919812345678 (JSON is "
                               "only for the Dynamic URL: --exotel-version 1.0)"),))
    if stripped[0] == "<":
        return BodyCheck((), (("violation", "the body looks like HTML or XML; answer plain "
                               "comma-separated E.164 numbers"),))
    if body != stripped:
        findings.append(("warning", "whitespace (e.g. a newline) around the body; send only "
                         "the numbers"))

    entries: list[str] = []
    for raw in stripped.split(","):
        entry = raw.strip()
        if not entry:
            findings.append(("warning", "empty entry (a trailing or doubled comma)"))
            continue
        if entry != raw and _dialable(entry):
            findings.append(("warning", f"whitespace around {entry!r}; separate numbers "
                             "with commas only"))
        entries.append(entry)
    numbers, invalid = _sort_entries(entries, findings)
    if invalid:
        # One violation per rejected answer, naming every bad value.
        findings.append(("violation", "not an E.164 number or sip: id: " + "; ".join(invalid)
                         + ". Exotel rejects an answer with invalid values: nobody is dialled "
                         "and the fallback URL is not tried"))
        return BodyCheck((), tuple(findings))
    return BodyCheck(tuple(numbers), tuple(findings))


def check_json_body(body: str) -> BodyCheck:
    """Read a 200 body of the Dynamic URL variant (``Exotel-Version: 1.0``, §5).

    >>> check_json_body('{"destination": {"numbers": ["+919812345678"]}}').numbers
    ('+919812345678',)
    """
    def reject(message: str, *earlier: tuple[str, str]) -> BodyCheck:
        return BodyCheck((), (*earlier, ("violation", message + ": nobody is dialled and the "
                                         "fallback URL is not tried")))

    if not body.strip():
        return reject("200 with an empty body")
    try:
        doc = json.loads(body)
    except ValueError:
        return reject("the body is not JSON (version 1.0 expects a JSON object)")
    if not isinstance(doc, dict):
        return reject("the body is JSON but not an object")
    findings: list[tuple[str, str]] = []
    fetch = doc.get("fetch_after_attempt", False)
    if not isinstance(fetch, bool):
        findings.append(("warning", f"fetch_after_attempt is {fetch!r}, not true or false; "
                         "read as false"))
        fetch = False
    parallel = doc.get("parallel_ringing")
    if isinstance(parallel, dict) and parallel.get("activate") is True:
        findings.append(("warning", "parallel_ringing is on: Exotel rings several numbers at "
                         "once; the simulator still plays them one by one"))
    destination = doc.get("destination")
    if isinstance(destination, list):
        return reject("destination is a list (the 1.1 beta shape); version 1.0 expects "
                      '{"destination": {"numbers": [...]}}', *findings)
    numbers = destination.get("numbers") if isinstance(destination, dict) else None
    if not isinstance(numbers, list):
        return reject("no destination.numbers list", *findings)
    if not numbers:
        return reject("destination.numbers is empty", *findings)
    accepted, invalid = _sort_entries(numbers, findings)
    if invalid:
        return reject("not an E.164 number or sip: id in destination.numbers: "
                      + "; ".join(invalid), *findings)
    return BodyCheck(tuple(accepted), tuple(findings), fetch)


def _dialable(entry: object) -> bool:
    return isinstance(entry, str) and bool(E164_RE.match(entry) or SIP_RE.match(entry))


def _sort_entries(entries: list, findings: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(numbers Exotel would dial, once each, in order; descriptions of invalid entries);
    a warning in `findings` for each duplicate."""
    accepted: list[str] = []
    invalid: list[str] = []
    for entry in entries:
        if not _dialable(entry):
            invalid.append(f"{entry!r}{_hint(entry) if isinstance(entry, str) else ''}")
        elif entry in accepted:
            findings.append(("warning", f"{entry} listed twice; Exotel dials each unique "
                             "number once"))
        else:
            accepted.append(entry)
    return accepted, invalid


def _hint(entry: str) -> str:
    digits = re.sub(r"\D", "", entry)
    if re.match(r"^[A-Za-z][\w .-]*[:=]", entry) and not entry.lower().startswith("sip:"):
        return " (it looks labelled: send only the number)"
    if ";" in entry or "|" in entry:
        return " (separate numbers with commas)"
    if re.search(r"\s", entry):
        return " (it contains whitespace: separate numbers with commas, no spaces or newlines)"
    if entry.lower().startswith("sip:"):
        return " (empty or malformed sip: id)"
    if entry.startswith("+") and re.search(r"[-.()/]", entry):
        return " (remove the separators)"
    if entry.isdigit() and entry.startswith("00"):
        return f" (international prefix 00: send +{entry[2:]})"
    if entry.isdigit() and entry.startswith("0") and len(entry) == 11:
        return f" (national format: send E.164, e.g. +91{entry[1:]} for India)"
    if entry.isdigit() and len(entry) == 10:
        return f" (no country code: send E.164, e.g. +91{entry} for India)"
    if entry.isdigit():
        return " (missing the leading + and country code)"
    if not digits:
        return " (no digits at all)"
    return ""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


