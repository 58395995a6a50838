"""The simulator's vocabulary: options, requests, attempts, findings and the result."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlsplit


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
            check_url(self.fallback_url, "fallback URL")
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

def check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{what} must be an http:// or https:// URL, got {url!r}")
