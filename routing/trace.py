"""The decision trace: which path produced an answer, with per-connector timings.

Logged once per answer and sent back in the ``X-Dialwhom-Trace`` header, so an admin can see
*why* a call went where it went. Phone numbers appear masked only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dialwhom.routing.redact import header_value, mask, printable, scrub

#: every decision path (``Trace.path``): the one vocabulary of logs, headers, metrics and docs
PATHS: dict[str, str] = {
    "cache": "the owner came from a cached connector answer",
    "fresh": "a connector found the owner during this request",
    "stale": "the connectors failed; the last owner known for this caller was used",
    "repeat": "a repeat request of a call: the call's first plan again",
    "not-found": "no connector knows the caller: the line's team (or last agent), then fallback",
    "no-key": "the request carried nothing to look up (no caller, CustomField or digits)",
    "timeout": "a connector did not answer in time and nothing else was known",
    "breaker-open": "a failing connector was skipped while it recovers",
    "bulkhead-full": "a connector had max_in_flight lookups running; answered at once without it",
    "no-time-left": "the budget was spent (e.g. waiting for a server thread) before a lookup could start",
    "error": "a connector failed and nothing else was known",
    "fallback": "Exotel's Fallback URL: from config alone, no connector asked",
    "error-fallback": "deciding raised a bug; answered from config (and logged)",
}


@dataclass(slots=True)
class Step:
    connector: str
    key: str  # "caller", "custom_field", "digits"
    outcome: str  # cache-hit, cache-negative, found, not-found, stale, breaker-open, timeout, <error kind>
    ms: float = 0.0
    detail: str = ""
    _short: str | None = field(default=None, init=False, repr=False, compare=False)

    def short(self) -> str:
        """``crm[caller]=found 12ms (detail)``: in the header and the log line, made once."""
        text = self._short
        if text is None:
            extra = f" ({scrub(self.detail)})" if self.detail else ""
            text = self._short = f"{self.connector}[{self.key}]={self.outcome} {self.ms:.0f}ms{extra}"
        return text


@dataclass(slots=True)
class Trace:
    call_sid: str | None = None
    path: str = "no-key"
    key: str | None = None  # which request value identified the customer
    connector: str | None = None  # which connector's answer was used
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: agents left out of the plan or moved back, and why (availability)
    skips: tuple[str, ...] = ()
    plan: str = ""
    elapsed_ms: float = 0.0  # from arrival at the server, queue wait included
    queued_ms: float = 0.0  # of which waiting for a server thread
    config: str = ""  # the config version that answered (Settings.version)

    def add(self, connector: str, key: str, outcome: str, ms: float = 0.0, detail: str = "") -> None:
        self.steps.append(Step(connector, key, outcome, ms, detail))

    def header(self) -> str:
        """One line for the ``X-Dialwhom-Trace`` header (ASCII, no full numbers)."""
        return header_value(self.header_text())

    def header_text(self) -> str:
        """The header's text before `header_value` makes it safe: ``path=…; key=…; via=…;
        <steps>; skipped=…; plan=…; 12ms; queued=…; cfg=…``, absent parts left out."""
        # One f-string whose optional parts are empty when absent (this runs on every answer:
        # a list of parts and a join took half as long again)
        key = "; key=" + self.key if self.key else ""
        via = "; via=" + self.connector if self.connector else ""
        steps = "".join(["; " + s.short().replace(";", ",") for s in self.steps])
        # built by routing/plan.py from config and masked numbers only: scrub would mask dates
        skipped = "; skipped=" + " | ".join(self.skips).replace(";", ",") if self.skips else ""
        queued = f"; queued={self.queued_ms:.0f}ms" if self.queued_ms >= 1 else ""
        cfg = "; cfg=" + self.config if self.config else ""
        return f"path={self.path}{key}{via}{steps}{skipped}; plan={self.plan}; {self.elapsed_ms:.0f}ms{queued}{cfg}"

    def log_line(self, caller: str | None, endpoint: str | None = None) -> str:
        """The one log line per answer (``endpoint=`` last, when given)."""
        steps = self.steps
        # one step is the common case: no join (this runs once per answer, on the log writer)
        text = steps[0].short() if len(steps) == 1 else " | ".join([s.short() for s in steps]) or "-"
        notes = (" notes=" + scrub(" / ".join(self.notes))) if self.notes else ""
        if self.skips:
            notes += " skipped=[" + " | ".join(self.skips) + "]"
        tail = "" if endpoint is None else " endpoint=" + endpoint
        return (
            f"decision call={printable(self.call_sid)} caller={mask(caller)} path={self.path} key={self.key or '-'} "
            f"via={self.connector or '-'} plan=[{self.plan}] steps=[{text}] elapsed_ms={self.elapsed_ms:.1f} "
            f"queued_ms={self.queued_ms:.1f} cfg={self.config or '-'}{notes}{tail}"
        )

    def explain(self) -> list[str]:
        """The trace in words, for `dialwhom lookup --explain`."""
        lines = [f"answer path: {self.path}" + (f" (customer identified by {self.key} via {self.connector})" if self.connector else "")]
        for s in self.steps:
            lines.append(f"  {s.connector}: looked up by {s.key} -> {s.outcome} in {s.ms:.0f} ms" + (f"; {scrub(s.detail)}" if s.detail else ""))
        for n in self.notes:
            lines.append(f"  note: {scrub(n)}")
        for x in self.skips:
            lines.append(f"  skipped: {x}")
        lines.append(f"plan: {self.plan}")
        lines.append(f"decided in {self.elapsed_ms:.1f} ms")
        return lines
