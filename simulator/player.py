"""Plays one call: the requests Exotel would make, attempts, fallback (docs/exotel.md §3-4)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import requests

from dialwhom.simulator.model import IST, MAX_BODY_BYTES, SLOW_MS, USER_AGENT, Attempt, Finding, RequestRecord, SimulationOptions, SimulationResult, check_url
from dialwhom.simulator.rules import check_body, check_json_body, media_type
from dialwhom.routing.redact import mask_query_secrets as mask_url  # the simulator's name for it
from dialwhom.routing.redact import mask_secret_params as _mask_params

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



class _Call:
    """State of one simulated call while it is being played."""

    def __init__(self, url: str, opts: SimulationOptions) -> None:
        self.url = url
        self.opts = opts
        self.call_sid = opts.call_sid or uuid.uuid4().hex
        self.created = _ist_now()
        self.result = SimulationResult(
            url=mask_url(url),
            fallback_url=mask_url(opts.fallback_url) if opts.fallback_url else None,
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
                            url=mask_url(url), params=_mask_params(params))
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
            where = f" to {mask_url(raw.location)}" if raw.location else ""
            add("warning", f"redirect{where} not followed: Exotel documents no redirects; "
                "give Exotel the final URL")
        if rec.status != 200:
            return
        slow_ms = min(SLOW_MS, self.opts.timeout * 500)
        if rec.elapsed_ms > slow_ms:
            add("warning", f"answered in {rec.elapsed_ms:.0f} ms: the caller hears silence "
                "meanwhile; aim for tens of milliseconds")
        expected = "application/json" if self.opts.exotel_version else "text/plain"
        if media_type(rec.content_type) != expected:
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
    check_url(url, "URL")
    return _Call(url, options or SimulationOptions()).play()


