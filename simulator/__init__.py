"""Exotel call simulator: plays Exotel's Connect applet ("Dial Whom" URL) against any URL.

Contract: docs/exotel.md §1-4 (user page: docs/simulate.md).

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

from dialwhom.simulator.command import build_parser, main, run_from_args
from dialwhom.simulator.model import OUTCOMES, Attempt, BodyCheck, Finding, RequestRecord, SimulationOptions, SimulationResult, UsageError
from dialwhom.simulator.player import mask_url, simulate
from dialwhom.simulator.render import render_json, render_transcript
from dialwhom.simulator.rules import check_body, check_json_body


__all__ = [
    "OUTCOMES",
    "Attempt",
    "BodyCheck",
    "Finding",
    "RequestRecord",
    "SimulationOptions",
    "SimulationResult",
    "UsageError",
    "build_parser",
    "check_body",
    "check_json_body",
    "main",
    "mask_url",
    "render_json",
    "render_transcript",
    "run_from_args",
    "simulate",
]

