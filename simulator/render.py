"""The simulation for people (a transcript) and for machines (JSON)."""

from __future__ import annotations

import json
import os
from typing import Any


from dialwhom.simulator.model import Attempt, SimulationResult

# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

_COLOURS = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "dim": "2", "bold": "1"}


def want_colour(stream: Any) -> bool:
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


