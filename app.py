"""dialwhom: sticky call routing for Exotel's Connect applet.

`create_app(config=None)` builds the Flask app (a factory, no module-level state). It is the
WSGI factory, from any folder: ``gunicorn 'dialwhom.app:create_app()'`` or
``flask --app dialwhom.app run``; ``dialwhom serve`` (`dialwhom.cli`) runs it with the shipped
gunicorn settings.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from typing import Any, Mapping

from flask import Flask, Response, current_app, request

from dialwhom import console
from dialwhom.integrations.registry import ConnectorType
from dialwhom.integrations.runtime import Runtime, build_runtime
from dialwhom.routing.availability import connect_options
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.ports import Clock
from dialwhom.routing.redact import install_log_redaction, loggable, mask, outgoing, printable
from dialwhom.routing.request import QueryString, parse_request

log = logging.getLogger("dialwhom")

#: time kept back from the budget to write the answer
ANSWER_RESERVE_MS = 25
TRACE_HEADER = "X-Dialwhom-Trace"
#: WSGI environ key: `time.monotonic()` when the request reached the server (dialwhom.server)
ARRIVED_KEY = "dialwhom.arrived"
TEXT = "text/plain; charset=utf-8"

def create_app(config: Any = None, *, registry: Mapping[str, list[ConnectorType]] | None = None, clock: Clock | None = None) -> Flask:
    """The web app. `config`: a path, a mapping (tests), Settings, or None for the search order;
    `registry`: connector types (default: the installed entry points); `clock`: for tests."""
    install_log_redaction()  # every log record, from any library, loses URLs' secrets and control characters
    runtime = build_runtime(config, registry=registry, clock=clock)
    _setup_logging(runtime.settings.log_level)
    app = Flask(__name__)
    app.extensions["dialwhom"] = runtime
    # Routes on the app itself, not in blueprints: Flask walks a blueprint's hook chains on
    # every request (~10k instructions, bench/instructions.py), and these need none.
    for rule, view, methods in ROUTES:
        app.add_url_rule(rule, view_func=view, methods=methods)
    if runtime.settings.tokens:  # no hook at all when there is nothing to check
        app.before_request(_check_token)
    console.register(app, runtime)  # /console, only when console_token is set (docs/console.md)
    log.info(
        "dialwhom ready: config=%s connectors=[%s] reps=%d teams=%d budget_ms=%d token=%s",
        runtime.settings.source,
        ", ".join(f"{c.id}:{c.type_name}" for c in runtime.connectors) or "none",
        len(runtime.settings.reps), len(runtime.settings.teams), runtime.settings.budget_ms,
        "on" if runtime.settings.tokens else "off",
    )
    return app


def _runtime() -> Runtime:
    return current_app.extensions["dialwhom"]


def _text(body: str, status: int = 200, trace: str | None = None) -> Response:
    resp = Response(body, status, content_type=TEXT)
    if trace:
        resp.headers.add(TRACE_HEADER, trace)  # add: no search for an existing header to replace
    return resp


def _check_token() -> Response | None:
    """Before every Exotel endpoint, when the config sets `token` (registered by `create_app`)."""
    if request.endpoint not in EXOTEL_ENDPOINTS:  # operators' endpoints need no token
        return None
    tokens = _runtime().settings.tokens
    given = _params().get("token", "")
    ok = False
    for tok in tokens:  # compare with every token, in constant time, so timing tells nothing
        ok |= hmac.compare_digest(given.encode(), tok.encode())
    return None if ok else _text("forbidden: missing or wrong token\n", 403)


def _params() -> QueryString:
    """The query string's parameters, each read when asked for (see `QueryString`)."""
    query = request.environ.get("QUERY_STRING", "")
    if not query.isascii():  # WSGI gives the raw bytes as latin-1; Exotel sends UTF-8
        query = query.encode("latin-1").decode("utf-8", "replace")
    return QueryString(query)


def _decide(endpoint: str):
    """The decision for this request (never an exception: see `RoutingService.answer`)."""
    rt = _runtime()
    # From when the request reached the server (the worker stamps it), so time spent queued
    # for a server thread counts against the budget; else from now.
    arrived = request.environ.get(ARRIVED_KEY)
    started = time.monotonic()
    deadline = Deadline((rt.settings.budget_ms - ANSWER_RESERVE_MS) / 1000.0, started=arrived)
    req = parse_request(_params(), rt.settings.default_region, outcome=False)
    decision = rt.service.answer(endpoint, req, deadline)
    if arrived is not None:
        decision.trace.queued_ms = (started - arrived) * 1000.0
    if log.isEnabledFor(logging.INFO):  # the line costs ~3 us to build: not when nobody reads it
        log.info("%s endpoint=%s", decision.trace.log_line(req.caller or req.caller_raw), endpoint)
    return decision


def dial_whom() -> Response:
    """Exotel's Dial Whom URL: text/plain, comma-separated E.164."""
    return _plain_answer("dial-whom")


def fallback() -> Response:
    """Exotel's Fallback URL: from config alone, never a connector call."""
    return _plain_answer("fallback")


def _plain_answer(endpoint: str) -> Response:
    decision = _decide(endpoint)
    body = decision.plan.body()
    if not body:
        # An empty 200 would make Exotel dial nobody and skip its Fallback URL; a 503 makes it
        # try the Fallback URL. Only reachable when config holds no number at all.
        return _text("no number to ring: add 'fallback' numbers to the config\n", 503, decision.trace.header())
    return _text(body, 200, decision.trace.header())


def connect() -> Response:
    """The Connect applet's Dynamic URL: the same decision as JSON (docs/exotel.md §5)."""
    decision = _decide("connect")
    numbers = decision.plan.numbers
    if not numbers:
        return _text("no number to ring: add 'fallback' numbers to the config\n", 503, decision.trace.header())
    doc = {"fetch_after_attempt": False, "destination": {"numbers": numbers}}
    doc.update(connect_options(_runtime().settings.teams.get(decision.plan.team)))
    resp = Response(json.dumps(doc), 200, mimetype="application/json")
    resp.headers.add(TRACE_HEADER, decision.trace.header())
    return resp


def passthru() -> Response:
    """Passthru applet after Connect: remember who talked to the caller (docs/exotel.md §6).

    Answers 200 whatever it learnt, so a sync-mode Passthru always takes its 200 branch.
    """
    rt = _runtime()
    params = request.args.to_dict()
    if request.method == "POST":
        params.update(request.form.to_dict())
    req = parse_request(params, rt.settings.default_region)
    recorded = rt.service.record_outcome(req)
    log.info(
        "passthru call=%s caller=%s status=%s agent=%s recorded=%s",
        printable(req.call_sid), mask(req.caller or req.caller_raw), loggable(req.dial_call_status),
        mask(req.dial_whom_number), recorded,
    )
    return _text("ok\n")


def agent_event() -> Response:
    """The Connect applet's popup URL (exotel.md §9): who is busy right now, for the busy ledger.

    Always 200 with a short text body: Exotel shows nothing to anyone from it, and an event
    for a number we never offered is recorded as busy for nobody.
    """
    rt = _runtime()
    params = request.args.to_dict()
    if request.method == "POST":
        params.update(request.form.to_dict())
        body = request.get_json(silent=True) if request.is_json else None
        if isinstance(body, dict):
            params.update({k: v for k, v in body.items() if isinstance(v, str)})
    try:
        recorded = rt.service.record_agent_event(params.get("CallSid"), params.get("DialWhomNumber"), params.get("Status"))
    except Exception:  # never an error page for Exotel; the bug is logged
        log.exception("agent event failed")
        recorded = "error"
    log.info("agent-event call=%s agent=%s status=%s event=%s recorded=%s", params.get("CallSid") or "-",
             mask(params.get("DialWhomNumber")), params.get("Status") or "-", params.get("EventType") or "-", recorded)
    return _text(f"ok: {recorded}\n")


def healthz() -> Response:
    return _text("ok\n")


def readyz() -> Response:
    """Ready once config is loaded and connectors are built; detail shows breakers and caches."""
    return Response(outgoing(json.dumps(_runtime().service.readiness(), indent=1), one_line=False), mimetype="application/json")


def metrics() -> Response:
    return Response(_runtime().service.scrape(), mimetype="text/plain; version=0.0.4")


#: (rule, view, methods): what Exotel calls, then what operators call
ROUTES = (
    ("/exotel/dial-whom", dial_whom, ["GET"]),
    ("/exotel/fallback", fallback, ["GET"]),
    ("/exotel/connect", connect, ["GET"]),
    ("/exotel/passthru", passthru, ["GET", "POST"]),
    ("/exotel/agent-event", agent_event, ["GET", "POST"]),
    ("/healthz", healthz, ["GET"]),
    ("/readyz", readyz, ["GET"]),
    ("/metrics", metrics, ["GET"]),
)
#: the endpoints the shared-secret `token` guards
EXOTEL_ENDPOINTS = frozenset(view.__name__ for rule, view, _ in ROUTES if rule.startswith("/exotel/"))


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("dialwhom").setLevel(level)
    # The dev server's access log prints full query strings: phone numbers and the token.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
