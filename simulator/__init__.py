"""Exotel call simulator: plays Exotel's Connect applet ("Dial Whom" URL) against any URL.

Contract: /work/shared/docs/exotel.md §1-4 (user page: docs/simulate.md).

What it reproduces, and the rules it checks:

- A GET with Exotel's query parameters (§1): ``CallSid``, ``CallFrom``/``From``,
  ``CallTo``/``To``, ``Direction``, ``CallStatus``, IST timestamps, ``CallType``,
  ``DialWhomNumber``; ``digits`` (wrapped in literal double quotes, first request only) and
  ``CustomField`` when given.
- The answer (§2): HTTP 200, ``Content-Type: text/plain``, body only comma-separated E.164
  numbers or ``sip:`` ids. Anything else in the body is a violation and, as on Exotel, means
  nobody is dialled: the whole answer is rejected, not just the bad entry.
- The 10-second limit and the Fallback URL (§4): a non-200 answer, a connection error or no
  complete answer within the limit (body included) sends the same request to the fallback URL.
  A 200 with an empty or invalid body does not: the flow takes "didn't dial anyone".
- Repeat requests (§3): with "fetch numbers after every attempt" on, each failed attempt
  re-requests the URL for the same ``CallSid`` with ``DialWhomNumber``/``DialCallStatus``
  and dials the first returned number not attempted yet; every unique number is attempted once.

Findings are either *violations* (the contract is broken: exit code 1) or *warnings*
(Exotel copes, but the answer is fragile or slow). Which attempt is answered is scripted by the
caller of :func:`simulate`; nothing here places a real call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from dialwhom.routing.redact import mask_query_secrets, mask_secret_params

__all__ = [
    "OUTCOMES",
    "Attempt",
    "BodyCheck",
    "Finding",
    "RequestRecord",
    "SimulationOptions",
    "SimulationResult",
    "build_parser",
    "check_body",
    "check_json_body",
    "main",
    "render_json",
    "render_transcript",
    "run_from_args",
    "simulate",
]

OUTCOMES = ("completed", "busy", "no-answer", "failed", "canceled")
DEFAULT_CALLER = "09876543210"
DEFAULT_EXOPHONE = "08039513882"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_REQUESTS = 20
MAX_BODY_BYTES = 64 * 1024
SLOW_MS = 2000.0  # dialwhom's own default budget; slower answers get a warning

E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
SIP_RE = re.compile(r"^sip:[^\s,;]+$")
IST = timezone(timedelta(hours=5, minutes=30), "IST")
USER_AGENT = "dialwhom-simulate/1 (Exotel Connect applet simulation)"

# Query keys whose values never appear in full in output.

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """Bad simulator input (exit code 2)."""


# --------------------------------------------------------------------------------------------
# Value objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem found: ``level`` is ``"violation"`` or ``"warning"``."""

    level: str
    message: str
    request: int | None = None  # 1-based request number it belongs to, if any


@dataclass
class RequestRecord:
    """One HTTP request the simulated Exotel made, and what came back."""

    number: int
    target: str  # "primary" or "fallback"
    url: str  # secrets masked
    params: dict[str, str]  # as sent, secrets masked
    status: int | None = None
    content_type: str | None = None
    body: str | None = None
    elapsed_ms: float = 0.0
    error: str | None = None  # "timeout" or "connection error: ..." when no answer arrived
    numbers: list[str] = field(default_factory=list)  # what Exotel dials from this answer
    fetch_after_attempt: bool | None = None  # 1.0 mode: the answer's fetch_after_attempt
    problems: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when Exotel would try the fallback URL after this request."""
        return self.error is not None or self.status != 200


@dataclass(frozen=True)
class Attempt:
    """One dial attempt and its scripted outcome."""

    number: int  # 1-based
    dialled: str
    outcome: str
    request: int  # the request whose list the number came from


@dataclass(frozen=True)
class BodyCheck:
    """Exotel's reading of a 200 body: the numbers it dials (empty if rejected) and findings."""

    numbers: tuple[str, ...]
    findings: tuple[tuple[str, str], ...]  # (level, message)
    fetch_after_attempt: bool | None = None  # 1.0 mode only

    @property
    def accepted(self) -> bool:
        return not any(level == "violation" for level, _ in self.findings)


@dataclass
class SimulationOptions:
    """Everything that shapes one simulated call except the URL."""

    fallback_url: str | None = None
    call_sid: str | None = None  # random 32 hex characters when None
    caller: str = DEFAULT_CALLER  # CallFrom / From
    exophone: str = DEFAULT_EXOPHONE  # CallTo / To
    custom_field: str | None = None
    digits: str | None = None  # sent as "<digits>" on the first request only
    params: Sequence[tuple[str, str]] = ()  # extra query parameters; override built-ins
    timeout: float = DEFAULT_TIMEOUT  # seconds, whole request including the body
    answers: Sequence[str] = ()  # outcome of successive attempts; missing ones: no-answer
    scenario: Mapping[str, str] | None = None  # number -> outcome; unlisted: no-answer
    fetch_after_attempt: bool = True  # Dial Whom mode; in 1.0 mode each answer decides
    max_requests: int = DEFAULT_MAX_REQUESTS
    exotel_version: str | None = None  # "1.0": the Dynamic URL (JSON) variant, §5

    def __post_init__(self) -> None:
        bad = [o for o in [*self.answers, *(self.scenario or {}).values()] if o not in OUTCOMES]
        if bad:
            raise UsageError(f"unknown outcome {bad[0]!r}; expected one of {', '.join(OUTCOMES)}")
        if self.answers and self.scenario is not None:
            raise UsageError("give answers or a scenario, not both")
        if not self.timeout > 0:
            raise UsageError("timeout must be greater than 0")
        if self.max_requests < 1:
            raise UsageError("max_requests must be at least 1")
        if self.fallback_url is not None:
            _check_url(self.fallback_url, "fallback URL")
        if self.exotel_version not in (None, "1.0"):
            raise UsageError(f"unsupported Exotel version {self.exotel_version!r}; only 1.0")


@dataclass
class SimulationResult:
    """Everything that happened in one simulated call."""

    url: str  # secrets masked
    fallback_url: str | None
    call_sid: str
    fetch_after_attempt: bool  # in 1.0 mode: what the first usable answer asked for
    timeout: float
    exotel_version: str | None = None
    requests: list[RequestRecord] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    answered_by: str | None = None
    outcome: str = "nobody dialled"  # "answered", "nobody answered" or "nobody dialled"
    notes: list[Finding] = field(default_factory=list)  # findings about the call as a whole

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.requests for f in r.problems] + self.notes

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "violation"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def contract_kept(self) -> bool:
        return not self.violations

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.contract_kept else EXIT_BROKEN

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``--json`` prints)."""
        return {
            "url": self.url,
            "fallback_url": self.fallback_url,
            "call_sid": self.call_sid,
            "fetch_after_attempt": self.fetch_after_attempt,
            "exotel_version": self.exotel_version,
            "timeout_s": self.timeout,
            "outcome": self.outcome,
            "answered_by": self.answered_by,
            "contract_kept": self.contract_kept,
            "exit_code": self.exit_code,
            "requests": [
                {k: v for k, v in dataclasses.asdict(r).items() if k != "problems"}
                | {"problems": [_finding_dict(f) for f in r.problems]}
                for r in self.requests
            ],
            "attempts": [dataclasses.asdict(a) for a in self.attempts],
            "violations": [_finding_dict(f) for f in self.violations],
            "warnings": [_finding_dict(f) for f in self.warnings],
        }


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {"level": f.level, "message": f.message, "request": f.request}


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


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


# --------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    location: str | None = None
    too_big: bool = False
    error: str | None = None


def _fetch(url: str, params: Mapping[str, str], timeout: float,
           headers: Mapping[str, str] | None = None) -> tuple[_Raw, float]:
    """GET ``url`` with the whole exchange (connect, headers, body) bounded by ``timeout``.

    The work runs in a daemon thread so a body trickled byte by byte cannot stretch the limit;
    socket timeouts only bound each read. A thread still running at the deadline is abandoned
    (it ends by itself at its next socket timeout or chunk).
    """
    out = _Raw()
    done = threading.Event()
    cancelled = threading.Event()

    def work() -> None:
        try:
            with requests.get(url, params=dict(params), timeout=(timeout, timeout), stream=True,
                              allow_redirects=False,
                              headers={"User-Agent": USER_AGENT, **(headers or {})}) as resp:
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_content(chunk_size=1024):
                    if cancelled.is_set():
                        return
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        out.too_big = True
                        break
                out.status = resp.status_code
                out.content_type = resp.headers.get("Content-Type")
                out.location = resp.headers.get("Location")
                out.body = b"".join(chunks)[:MAX_BODY_BYTES]
        except requests.Timeout:
            out.error = "timeout"
        except requests.RequestException as exc:
            out.error = f"connection error: {_short_error(exc)}"
        finally:
            done.set()

    start = time.monotonic()
    threading.Thread(target=work, name="dialwhom-simulate-fetch", daemon=True).start()
    finished = done.wait(timeout)
    elapsed_ms = (time.monotonic() - start) * 1000
    if not finished:
        cancelled.set()
        return _Raw(error="timeout"), elapsed_ms
    return out, elapsed_ms


def _short_error(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known",
                   "nodename nor servname", "Temporary failure in name resolution",
                   "certificate verify failed", "Connection reset", "Remote end closed"):
        if marker in text:
            return marker
    return text if len(text) <= 160 else text[:157] + "..."


# --------------------------------------------------------------------------------------------
# The simulation
# --------------------------------------------------------------------------------------------


def _ist_now() -> str:
    return datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{what} must be an http:// or https:// URL, got {url!r}")


class _Call:
    """State of one simulated call while it is being played."""

    def __init__(self, url: str, opts: SimulationOptions) -> None:
        self.url = url
        self.opts = opts
        self.call_sid = opts.call_sid or uuid.uuid4().hex
        self.created = _ist_now()
        self.result = SimulationResult(
            url=mask_query_secrets(url),
            fallback_url=mask_query_secrets(opts.fallback_url) if opts.fallback_url else None,
            call_sid=self.call_sid,
            fetch_after_attempt=opts.fetch_after_attempt and opts.exotel_version is None,
            timeout=opts.timeout,
            exotel_version=opts.exotel_version,
        )

    # -- requests ------------------------------------------------------------------------------

    def params(self, previous: Attempt | None) -> dict[str, str]:
        o = self.opts
        p = {
            "CallSid": self.call_sid,
            "CallFrom": o.caller,
            "CallTo": o.exophone,
            "From": o.caller,
            "To": o.exophone,
            "Direction": "incoming",
            "CallStatus": "in-progress",
            "Created": self.created,
            "StartTime": self.created,
            "EndTime": "1970-01-01 05:30:00",
            "CurrentTime": _ist_now(),
            "CallType": "call-attempt" if previous is None else "incomplete",
            "DialWhomNumber": "" if previous is None else previous.dialled,
        }
        if previous is not None:
            p["DialCallStatus"] = previous.outcome
            p["DialCallDuration"] = "0"
        if o.custom_field is not None:
            p["CustomField"] = o.custom_field
        if previous is None and o.digits is not None:
            p["digits"] = f'"{o.digits}"'
        p.update(dict(o.params))
        return p

    def budget_left(self) -> int:
        return self.opts.max_requests - len(self.result.requests)

    def fetch_round(self, previous: Attempt | None) -> RequestRecord | None:
        """One fetch as Exotel makes it: the primary, then the fallback if the primary failed."""
        params = self.params(previous)
        primary = self.request("primary", self.url, params)
        if not primary.failed:
            return primary
        fallback_url = self.opts.fallback_url
        if fallback_url is None or self.budget_left() <= 0:
            self.blame_primary(primary, fallback_ok=False, tried=False)
            return None
        fallback = self.request("fallback", fallback_url, params)
        ok = not fallback.failed
        self.blame_primary(primary, fallback_ok=ok, tried=True)
        if fallback.failed:
            fallback.problems.append(Finding(
                "violation", f"fallback URL {_failure(fallback)}: nobody is dialled",
                fallback.number))
            return None
        return fallback

    def blame_primary(self, rec: RequestRecord, *, fallback_ok: bool, tried: bool) -> None:
        if rec.error == "timeout":
            # Silence for the whole limit breaks the contract whatever the fallback does next.
            then = ("Exotel then requested the fallback URL" if tried
                    else "no fallback URL, so nobody is dialled")
            rec.problems.append(Finding(
                "violation", f"no complete answer within {self.opts.timeout:g} s (the caller "
                f"waited in silence); {then}", rec.number))
        elif fallback_ok:
            rec.problems.append(Finding(
                "warning", f"{_failure(rec)}; Exotel requested the fallback URL, which answered",
                rec.number))
        else:
            then = "the fallback URL failed too" if tried else "no fallback URL"
            rec.problems.append(Finding(
                "violation", f"{_failure(rec)} and {then}: nobody is dialled", rec.number))

    def request(self, target: str, url: str, params: dict[str, str]) -> RequestRecord:
        rec = RequestRecord(number=len(self.result.requests) + 1, target=target,
                            url=mask_query_secrets(url), params=mask_secret_params(params))
        self.result.requests.append(rec)
        version = self.opts.exotel_version
        headers = {"Exotel-Version": version} if version else None
        raw, rec.elapsed_ms = _fetch(url, params, self.opts.timeout, headers)
        rec.elapsed_ms = round(rec.elapsed_ms, 1)
        rec.error, rec.status, rec.content_type = raw.error, raw.status, raw.content_type
        if raw.error is None:
            rec.body = raw.body.decode("utf-8", errors="replace")
        self.inspect(rec, raw)
        return rec

    def inspect(self, rec: RequestRecord, raw: _Raw) -> None:
        def add(level: str, message: str) -> None:
            rec.problems.append(Finding(level, message, rec.number))

        if rec.error is not None:
            return  # blamed by fetch_round(), which knows whether a fallback saved the call
        if rec.status is not None and 300 <= rec.status < 400:
            where = f" to {mask_query_secrets(raw.location)}" if raw.location else ""
            add("warning", f"redirect{where} not followed: Exotel documents no redirects; "
                "give Exotel the final URL")
        if rec.status != 200:
            return
        slow_ms = min(SLOW_MS, self.opts.timeout * 500)
        if rec.elapsed_ms > slow_ms:
            add("warning", f"answered in {rec.elapsed_ms:.0f} ms: the caller hears silence "
                "meanwhile; aim for tens of milliseconds")
        expected = "application/json" if self.opts.exotel_version else "text/plain"
        if _media_type(rec.content_type) != expected:
            add("warning", f"Content-Type is {rec.content_type or 'missing'}; Exotel expects "
                f"{expected}")
        if raw.too_big:
            add("violation", f"body larger than {MAX_BODY_BYTES // 1024} KiB: nobody is dialled")
            return
        try:
            raw.body.decode("utf-8")
        except UnicodeDecodeError:
            add("warning", "body is not valid UTF-8")
        if self.opts.exotel_version:
            check = check_json_body(rec.body or "")
            rec.fetch_after_attempt = check.fetch_after_attempt
        else:
            check = check_body(rec.body or "")
        for level, message in check.findings:
            add(level, message)
        rec.numbers = list(check.numbers)

    # -- attempts ------------------------------------------------------------------------------

    def outcome_for(self, number: str) -> str:
        if self.opts.scenario is not None:
            return self.opts.scenario.get(number, "no-answer")
        index = len(self.result.attempts)
        answers = self.opts.answers
        return answers[index] if index < len(answers) else "no-answer"

    def dial(self, number: str, source: RequestRecord) -> Attempt:
        attempt = Attempt(number=len(self.result.attempts) + 1, dialled=number,
                          outcome=self.outcome_for(number), request=source.number)
        self.result.attempts.append(attempt)
        return attempt

    def fetches_again(self, answer: RequestRecord) -> bool:
        if self.opts.exotel_version:
            return bool(answer.fetch_after_attempt)
        return self.opts.fetch_after_attempt

    def play(self) -> SimulationResult:
        res = self.result
        answer = self.fetch_round(previous=None)
        if answer is not None and self.opts.exotel_version:
            res.fetch_after_attempt = self.fetches_again(answer)
        tried: set[str] = set()
        while answer is not None:
            pending = [n for n in answer.numbers if n not in tried]
            if not pending:
                break  # every returned number attempted: the flow moves on
            if not self.fetches_again(answer):
                for number in pending:  # walk this list, no more requests
                    if self.dial(number, answer).outcome == "completed":
                        break
                break
            attempt = self.dial(pending[0], answer)
            tried.add(attempt.dialled)
            if attempt.outcome == "completed":
                break
            if self.budget_left() <= 0:
                res.notes.append(Finding(
                    "warning", f"stopped after {len(res.requests)} requests (--max-requests): "
                    "the URL keeps returning numbers not dialled yet"))
                break
            answer = self.fetch_round(previous=attempt)
        last = res.attempts[-1] if res.attempts else None
        if last is not None and last.outcome == "completed":
            res.outcome, res.answered_by = "answered", last.dialled
        else:
            res.outcome = "nobody answered" if res.attempts else "nobody dialled"
        return res


def _failure(rec: RequestRecord) -> str:
    if rec.error == "timeout":
        return "timed out"
    if rec.error:
        return rec.error
    return f"answered HTTP {rec.status}"


def simulate(url: str, *, options: SimulationOptions | None = None) -> SimulationResult:
    """Play one Exotel call against ``url``; raises :class:`UsageError` on bad input."""
    _check_url(url, "URL")
    return _Call(url, options or SimulationOptions()).play()


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

_COLOURS = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "dim": "2", "bold": "1"}


def _want_colour(stream: Any) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def _paint(text: str, colour: str, on: bool) -> str:
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m" if on else text


def _show_body(body: str | None, limit: int = 200) -> str:
    if body is None:
        return "-"
    text = json.dumps(body, ensure_ascii=False)  # quotes and visible \n, \t
    return text if len(text) <= limit else text[: limit - 4] + '..."'


# Parameters shown on each request line; the rest are constant and listed once in the header.
_FIRST_KEYS = ("CallFrom", "CallTo", "CustomField", "digits")
_REPEAT_KEYS = ("DialWhomNumber", "DialCallStatus", "CallType")
_KNOWN_KEYS = frozenset({
    "CallSid", "CallFrom", "CallTo", "From", "To", "Direction", "CallStatus", "Created",
    "StartTime", "EndTime", "CurrentTime", "CallType", "DialWhomNumber", "DialCallStatus",
    "DialCallDuration", "CustomField", "digits",
})


def _mode(result: SimulationResult) -> str:
    if result.exotel_version:
        return f"Dynamic URL (Exotel-Version: {result.exotel_version}, JSON)"
    return "Dial Whom URL (text/plain)"


def outcome_line(result: SimulationResult) -> str:
    """The one-line summary (all that ``--quiet`` prints)."""
    if result.outcome == "answered":
        what = f"answered by {result.answered_by} on attempt {len(result.attempts)}"
    elif result.outcome == "nobody answered":
        n = len(result.attempts)
        what = f"nobody answered ({n} attempt{'s' if n != 1 else ''})"
    else:
        what = "nobody dialled (the flow takes the \"didn't dial anyone\" exit)"
    v = len(result.violations)
    contract = ("contract kept" if not v else
                f"contract broken ({v} violation{'s' if v != 1 else ''})")
    return f"{what}; {contract}"


def render_transcript(result: SimulationResult, *, colour: bool = False) -> str:
    """The human-readable transcript printed by default."""
    c = colour
    lines = [
        _paint(f"Simulating Exotel's Connect applet against {result.url}", "bold", c),
        f"  {_mode(result)}; fallback URL: {result.fallback_url or 'none'}; "
        f"fetch after every attempt: {'on' if result.fetch_after_attempt else 'off'}; "
        f"limit {result.timeout:g} s",
        f"  CallSid {result.call_sid}",
        "",
    ]
    attempts_by_request: dict[int, list[Attempt]] = {}
    for a in result.attempts:
        attempts_by_request.setdefault(a.request, []).append(a)
    extra_keys: tuple[str, ...] = ()
    for rec in result.requests:
        if rec.number == 1:
            extra_keys = tuple(k for k in rec.params if k not in _KNOWN_KEYS)
        if rec.error:
            status = _paint(rec.error.upper() if rec.error == "timeout" else rec.error, "red", c)
        else:
            status = _paint(str(rec.status), "green" if rec.status == 200 else "red", c)
        ctype = f" {rec.content_type}" if rec.content_type else ""
        body = f" {_show_body(rec.body)}" if rec.error is None else ""
        lines.append(f"#{rec.number} GET {rec.target:<8} {status}{ctype} "
                     f"{rec.elapsed_ms:.0f} ms{body}")
        keys = (_REPEAT_KEYS if "DialCallStatus" in rec.params else _FIRST_KEYS) + extra_keys
        shown = " ".join(f"{k}={rec.params[k]}" for k in keys if k in rec.params)
        lines.append(_paint(f"   {shown}", "dim", c))
        for f in rec.problems:
            tag = _paint("violation", "red", c) if f.level == "violation" else _paint(
                "warning", "yellow", c)
            lines.append(f"   {tag}: {f.message}")
        for a in attempts_by_request.get(rec.number, []):
            colour_name = "green" if a.outcome == "completed" else "cyan"
            lines.append(f"   dial {a.dialled} -> {_paint(a.outcome, colour_name, c)}")
    for f in result.findings:
        if f.request is None:
            tag = "violation" if f.level == "violation" else "warning"
            lines.append(f"{_paint(tag, 'red' if tag == 'violation' else 'yellow', c)}: "
                         f"{f.message}")
    lines.append("")
    line = outcome_line(result)
    lines.append(_paint(line, "green" if result.contract_kept else "red", c))
    v, w = len(result.violations), len(result.warnings)
    if v or w:
        lines.append(f"  {v} violation{'s' if v != 1 else ''}, "
                     f"{w} warning{'s' if w != 1 else ''} (see above)")
    return "\n".join(lines) + "\n"


def render_json(result: SimulationResult) -> str:
    """The single JSON document printed by ``--json``."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

DESCRIPTION = """\
Play Exotel's Connect applet ("Dial Whom" URL) against URL: send the GET Exotel sends,
enforce its 10-second limit, fall back to --fallback-url as Exotel does, check the answer
(200, text/plain, comma-separated E.164), then play the dial attempts, re-requesting the URL
after each failed attempt. Who picks up is scripted; no real call is placed."""

EPILOG = """\
examples:
  dialwhom simulate 'http://127.0.0.1:8000/exotel/dial-whom?token=s3cret'
  dialwhom simulate URL --from 09812345678 --answers busy,completed
  dialwhom simulate URL --fallback-url http://127.0.0.1:8000/exotel/fallback --timeout 3
  dialwhom simulate URL --custom-field ACC-42 --digits 1234 --param flow_id=4711
  dialwhom simulate URL --scenario scenario.json --no-fetch-after-attempt
  dialwhom simulate http://127.0.0.1:8000/exotel/connect --exotel-version 1.0
  dialwhom simulate URL --json | jq .outcome
  dialwhom simulate URL -q && echo "contract kept"

exit codes:
  0  contract kept (whoever answered, even nobody)
  1  contract broken: non-200 or connection error without a working fallback, timeout,
     empty 200, invalid body
  2  usage error

See docs/simulate.md for the transcript and every finding."""


def _outcome_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in OUTCOMES]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{(bad or [text])[0]!r} is not an outcome; use {', '.join(OUTCOMES)}")
    return items


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 600 seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser(subparsers: Any | None = None) -> argparse.ArgumentParser:
    """Add ``simulate`` to a parent's ``add_subparsers()`` action, or build a standalone parser.

    The subcommand sets ``func=run_from_args`` so a parent can dispatch with ``args.func(args)``.
    """
    common = dict(description=DESCRIPTION, epilog=EPILOG,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    if subparsers is None:
        parser = argparse.ArgumentParser(prog="dialwhom simulate", **common)
    else:
        parser = subparsers.add_parser(
            "simulate", help="play Exotel against any URL, attempts and fallback included",
            **common)
    parser.add_argument("url", metavar="URL", help="the Dial Whom URL, as pasted into Exotel")
    parser.add_argument("--fallback-url", metavar="URL",
                        help="the applet's Fallback URL (default: none)")
    call = parser.add_argument_group("the call")
    call.add_argument("--from", dest="caller", metavar="NUMBER", default=DEFAULT_CALLER,
                      help=f"caller, sent as CallFrom and From (default {DEFAULT_CALLER})")
    call.add_argument("--to", dest="exophone", metavar="NUMBER", default=DEFAULT_EXOPHONE,
                      help=f"ExoPhone, sent as CallTo and To (default {DEFAULT_EXOPHONE})")
    call.add_argument("--call-sid", metavar="SID", help="CallSid (default: 32 random hex chars)")
    call.add_argument("--custom-field", metavar="VALUE", help="send CustomField=VALUE")
    call.add_argument("--digits", metavar="DIGITS",
                      help='keys from an earlier Gather applet; sent as digits="DIGITS" '
                      "on the first request only")
    call.add_argument("--param", dest="params", metavar="K=V", action="append",
                      type=_key_value, default=[],
                      help="extra query parameter, repeatable; overrides a built-in one")
    who = parser.add_argument_group("who answers").add_mutually_exclusive_group()
    who.add_argument("--answers", metavar="LIST", type=_outcome_list, default=[],
                     help="outcome of each successive attempt, comma-separated, from "
                     f"{', '.join(OUTCOMES)}; later attempts: no-answer (default: all no-answer)")
    who.add_argument("--scenario", metavar="FILE",
                     help='JSON file {"answers": {"+9198...": "completed", ...}}; numbers not '
                     "listed: no-answer")
    exo = parser.add_argument_group("Exotel settings")
    exo.add_argument("--fetch-after-attempt", action=argparse.BooleanOptionalAction,
                     default=True,
                     help="re-request the URL after each failed attempt (default: on)")
    exo.add_argument("--timeout", metavar="SECONDS", type=_positive_float,
                     default=DEFAULT_TIMEOUT,
                     help=f"limit for a whole request, body included (default {DEFAULT_TIMEOUT:g})")
    exo.add_argument("--exotel-version", metavar="VERSION", choices=["1.0"],
                     help="1.0: play the Dynamic URL (JSON) variant instead: sends the "
                     "Exotel-Version header, expects JSON, and the answer's "
                     "fetch_after_attempt replaces --fetch-after-attempt")
    exo.add_argument("--max-requests", metavar="N", type=_positive_int,
                     default=DEFAULT_MAX_REQUESTS,
                     help=f"stop after N requests (default {DEFAULT_MAX_REQUESTS})")
    out = parser.add_argument_group("output").add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document instead")
    out.add_argument("-q", "--quiet", action="store_true", help="print only the outcome line")
    parser.set_defaults(func=run_from_args)
    return parser


def load_scenario(path: str) -> dict[str, str]:
    """Read a ``--scenario`` file: ``{"answers": {number: outcome}}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read scenario {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"scenario {path} is not valid JSON: {exc}") from None
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in answers.items()):
        raise UsageError(f'scenario {path} must look like {{"answers": {{"+9198...": '
                         '"completed"}}')
    bad = {k: v for k, v in answers.items() if v not in OUTCOMES}
    if bad:
        number, outcome = next(iter(bad.items()))
        raise UsageError(f"scenario {path}: {number}: unknown outcome {outcome!r}; expected "
                         f"one of {', '.join(OUTCOMES)}")
    return answers


def options_from_args(args: argparse.Namespace) -> SimulationOptions:
    """Build :class:`SimulationOptions` from parsed arguments (raises :class:`UsageError`)."""
    return SimulationOptions(
        fallback_url=args.fallback_url,
        call_sid=args.call_sid,
        caller=args.caller,
        exophone=args.exophone,
        custom_field=args.custom_field,
        digits=args.digits,
        params=tuple(args.params),
        timeout=args.timeout,
        answers=tuple(args.answers),
        scenario=load_scenario(args.scenario) if args.scenario else None,
        fetch_after_attempt=args.fetch_after_attempt,
        max_requests=args.max_requests,
        exotel_version=args.exotel_version,
    )


def run_from_args(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    """Run a simulation from parsed arguments and print it; returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        options = options_from_args(args)
        result = simulate(args.url, options=options)
    except UsageError as exc:
        print(f"dialwhom simulate: error: {exc}", file=stderr)
        return EXIT_USAGE
    if args.json:
        stdout.write(render_json(result))
    elif args.quiet:
        stdout.write(outcome_line(result) + "\n")
    else:
        stdout.write(render_transcript(result, colour=_want_colour(stdout)))
    stdout.flush()
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m dialwhom.simulator URL [...]``."""
    parser = build_parser(None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_from_args(args)

