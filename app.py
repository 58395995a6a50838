"""dialwhom: sticky call routing for Exotel's Connect applet.

`create_app(config=None)` builds the Flask app (a factory, no module-level state). It is the
WSGI factory, from any folder: ``gunicorn 'dialwhom.app:create_app()'`` or
``flask --app dialwhom.app run``; ``dialwhom serve`` (`dialwhom.cli`) runs it with the shipped
gunicorn settings.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import signal
import time
from typing import Any, Mapping

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from dialwhom import logs
from dialwhom.integrations.operations import Watcher, forget_caller
from dialwhom.integrations.reload import Reloader, source_of
from dialwhom.integrations.rundir import RunDir

from dialwhom import console
from dialwhom.integrations.registry import ConnectorType
from dialwhom.integrations.runtime import Runtime, build_runtime
from dialwhom.routing.availability import connect_options
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.ports import Clock
from dialwhom.routing.phones import to_e164
from dialwhom.routing.redact import install_log_redaction, loggable, mask, outgoing, printable
from dialwhom.routing.request import QueryString, parse_request

log = logging.getLogger("dialwhom")
decision_log = logging.getLogger("dialwhom.decision")

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
    logs.setup(runtime.settings.log_level, runtime.settings.log_format)
    app = Flask(__name__)
    app.extensions["dialwhom"] = runtime  # swapped whole by a reload (dialwhom.integrations.reload)
    run_dir = RunDir.from_env()
    app.extensions["dialwhom.reload"] = Reloader(app.extensions, source_of(config, runtime.settings), registry=registry, run_dir=run_dir)
    app.extensions["dialwhom.watcher"] = Watcher(app, run_dir).start()
    # Routes on the app itself, not in blueprints: Flask walks a blueprint's hook chains on
    # every request (~10k instructions, bench/instructions.py), and these need none. Each
    # view is given the app's extensions: reading them through `current_app` costs a context
    # lookup on every answer.
    for rule, view, methods in ROUTES:
        app.add_url_rule(rule, endpoint=view.__name__, view_func=functools.partial(view, app.extensions), methods=methods)
    if runtime.settings.trusted_proxies:  # the access log and request.remote_addr show the caller
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=runtime.settings.trusted_proxies,
                                x_proto=runtime.settings.trusted_proxies, x_host=runtime.settings.trusted_proxies)
    console.register(app, runtime)  # /console, only when console_token is set (docs/console.md)
    log.info(
        "dialwhom ready: config=%s version=%s connectors=[%s] reps=%d teams=%d budget_ms=%d token=%s pid=%d",
        runtime.settings.source, runtime.settings.version,
        ", ".join(f"{c.id}:{c.type_name}" for c in runtime.connectors) or "none",
        len(runtime.settings.reps), len(runtime.settings.teams), runtime.settings.budget_ms,
        "on" if runtime.settings.tokens else "off", os.getpid(),
    )
    return app


class Answer(Response):
    """A response whose every header this module wrote: the content type, the length (set with
    the body) and the trace, each already checked by werkzeug when it was set.

    werkzeug's `get_wsgi_headers` copies the headers, checking each one again, to fix up
    Location, Content-Location and Content-Length; none of that applies to these answers
    (status 200, 403 or 503, no Location, the length already set). Skipping it took over a
    quarter of the instructions dialwhom added to Flask per cached answer (bench/RESULTS.md,
    session 5), so these answers are sent with their headers as they are.
    """

    def get_wsgi_headers(self, environ: Any) -> Any:
        return self.headers


#: Exotel's answer when config holds no number at all (a 503 makes Exotel try its Fallback URL)
NO_NUMBER = "no number to ring: add 'fallback' numbers to the config\n"


def _text(body: str, status: int = 200, trace: str | None = None, content_type: str = TEXT) -> Response:
    resp = Answer(body, status, content_type=content_type)
    if trace:
        resp.headers.add(TRACE_HEADER, trace)  # add: no search for an existing header to replace
    return resp


def _token_refused(rt: Runtime, params) -> Response | None:
    """403 unless the request carries a configured `token` (checked in every Exotel view, so a
    reload that adds or removes tokens applies at once)."""
    tokens = rt.settings.tokens
    if not tokens:
        return None
    given = (params.get("token", "") or "").encode()
    ok = False
    for tok in tokens:  # compare with every token, in constant time, so timing tells nothing
        ok |= hmac.compare_digest(given, tok.encode())
    return None if ok else _text("forbidden: missing or wrong token\n", 403)


def _params(environ: dict):
    """The request's parameters: for GET the raw query string, each read when asked for (see
    `QueryString`: the fast path); for POST a dict of the query merged with the form or JSON
    body (the body wins), since Exotel's newer docs show POST for some applets."""
    if environ["REQUEST_METHOD"] != "POST":
        query = environ.get("QUERY_STRING", "")
        if not query.isascii():  # WSGI gives the raw bytes as latin-1; Exotel sends UTF-8
            query = query.encode("latin-1").decode("utf-8", "replace")
        return QueryString(query)
    params = request.args.to_dict()
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update({str(k): v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
                           for k, v in body.items() if v is not None})
    else:
        params.update(request.form.to_dict())
    return params


def _exotel_decision(rt: Runtime, endpoint: str) -> tuple[Any, Response | None]:
    """(decision, None) for a Dial Whom or Connect request, or (None, the 403) without a token."""
    environ = request.environ  # one context lookup: this runs on every answer
    params = _params(environ)
    refused = _token_refused(rt, params)
    if refused is not None:
        return None, refused
    return _decide(rt, params, endpoint, environ), None


def _decide(rt: Runtime, params, endpoint: str, environ: dict):
    """The decision for this request (never an exception: see `RoutingService.answer`)."""
    # From when the request reached the server (the worker stamps it), so time spent queued
    # for a server thread counts against the budget; else from now.
    arrived = environ.get(ARRIVED_KEY)
    started = time.monotonic()
    deadline = Deadline((rt.settings.budget_ms - ANSWER_RESERVE_MS) / 1000.0, started=arrived)
    req = parse_request(params, rt.settings.default_region, outcome=False)
    decision = rt.service.answer(endpoint, req, deadline)
    if arrived is not None:
        decision.trace.queued_ms = (started - arrived) * 1000.0
    if decision_log.isEnabledFor(logging.INFO):  # one deque append here (dialwhom.logs)
        logs.log_decision(decision_log, decision.trace, req.caller or req.caller_raw, endpoint)
    return decision


def dial_whom(ext: dict) -> Response:
    """Exotel's Dial Whom URL: text/plain, comma-separated E.164."""
    return _plain_answer(ext["dialwhom"], "dial-whom")


def fallback(ext: dict) -> Response:
    """Exotel's Fallback URL: from config alone, never a connector call."""
    return _plain_answer(ext["dialwhom"], "fallback")


def _plain_answer(rt: Runtime, endpoint: str) -> Response:
    decision, refused = _exotel_decision(rt, endpoint)
    if refused is not None:
        return refused
    body = decision.plan.body()
    if not body:
        # An empty 200 would make Exotel dial nobody and skip its Fallback URL; a 503 makes it
        # try the Fallback URL. Only reachable when config holds no number at all.
        return _text(NO_NUMBER, 503, decision.trace.header())
    return _text(body, 200, decision.trace.header())


def connect(ext: dict) -> Response:
    """The Connect applet's Dynamic URL: the same decision as JSON (docs/exotel.md §5)."""
    rt: Runtime = ext["dialwhom"]
    decision, refused = _exotel_decision(rt, "connect")
    if refused is not None:
        return refused
    numbers = decision.plan.numbers
    if not numbers:
        return _text(NO_NUMBER, 503, decision.trace.header())
    doc = {"fetch_after_attempt": False, "destination": {"numbers": numbers}}
    doc.update(connect_options(rt.settings.teams.get(decision.plan.team)))  # the config that decided
    return _text(json.dumps(doc), 200, decision.trace.header(), content_type="application/json")


def passthru(ext: dict) -> Response:
    """Passthru applet after Connect: remember who talked to the caller (docs/exotel.md §6).

    Answers 200 whatever it learnt, so a sync-mode Passthru always takes its 200 branch.
    """
    rt: Runtime = ext["dialwhom"]
    params = _params(request.environ)
    refused = _token_refused(rt, params)
    if refused is not None:
        return refused
    req = parse_request(params, rt.settings.default_region)
    recorded = rt.service.record_outcome(req)
    log.info(
        "passthru call=%s caller=%s status=%s agent=%s recorded=%s",
        printable(req.call_sid), mask(req.caller or req.caller_raw), loggable(req.dial_call_status),
        mask(req.dial_whom_number), recorded,
    )
    return _text("ok\n")


def agent_event(ext: dict) -> Response:
    """The Connect applet's popup URL (exotel.md §9): who is busy right now, for the busy ledger.

    Always 200 with a short text body: Exotel shows nothing to anyone from it, and an event
    for a number we never offered is recorded as busy for nobody.
    """
    rt: Runtime = ext["dialwhom"]
    params = _params(request.environ)
    refused = _token_refused(rt, params)
    if refused is not None:
        return refused
    try:
        recorded = rt.service.record_agent_event(params.get("CallSid"), params.get("DialWhomNumber"), params.get("Status"))
    except Exception:  # never an error page for Exotel; the bug is logged
        log.exception("agent event failed")
        recorded = "error"
    log.info("agent-event call=%s agent=%s status=%s event=%s recorded=%s", params.get("CallSid") or "-",
             mask(params.get("DialWhomNumber")), params.get("Status") or "-", params.get("EventType") or "-", recorded)
    return _text(f"ok: {recorded}\n")


def healthz(ext: dict) -> Response:
    return _text("ok\n")


def _ops_refused(rt: Runtime) -> Response | None:
    """401 unless `ops_token` is unset or sent as ``Authorization: Bearer <ops_token>``."""
    if rt.settings.ops_token is None:
        return None
    return None if _ops_authenticated(rt) else _text("unauthorized: send Authorization: Bearer <ops_token>\n", 401)


def _ops_authenticated(rt: Runtime) -> bool:
    tok = rt.settings.ops_token
    given = request.headers.get("Authorization", "")
    return tok is not None and hmac.compare_digest(given.encode(), f"Bearer {tok}".encode())


def readyz(ext: dict) -> Response:
    """Ready once config is loaded and connectors are built; detail shows breakers, caches,
    the config version, which worker answered and how the last reload went."""
    rt: Runtime = ext["dialwhom"]
    refused = _ops_refused(rt)
    if refused is not None:
        return refused
    detail = rt.service.readiness()
    source = detail.pop("config")
    reload = ext["dialwhom.reload"].status()
    if reload is not None:  # a time, not a long number (the redaction would mask one)
        reload = dict(reload, at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reload["at"])))
    detail.update(config_version=rt.settings.version, worker=os.getpid(), reload=reload)
    if _ops_authenticated(rt):  # where the config lives is for operators only
        detail["config"] = source
    return Response(outgoing(json.dumps(detail, indent=1), one_line=False), mimetype="application/json")


def metrics(ext: dict) -> Response:
    rt: Runtime = ext["dialwhom"]
    refused = _ops_refused(rt)
    if refused is not None:
        return refused
    return Response(rt.service.scrape(), mimetype="text/plain; version=0.0.4")


def _ops_only(ext: dict) -> tuple[Runtime, Response | None]:
    """The operator actions need `ops_token` configured and sent."""
    rt: Runtime = ext["dialwhom"]
    if rt.settings.ops_token is None:
        return rt, _text("forbidden: set ops_token in the config to enable operator actions\n", 403)
    return rt, _ops_refused(rt)


def ops_forget(ext: dict) -> Response:
    """Drop one caller's cached owner everywhere: this worker, the others (run dir), Redis."""
    rt, refused = _ops_only(ext)
    if refused is not None:
        return refused
    raw = _params(request.environ).get("number") or ""
    e164 = to_e164(raw, rt.settings.default_region)
    if e164 is None:
        return _text("bad request: give number=<the caller's number>\n", 400)
    report = forget_caller(rt, e164)
    run_dir = ext["dialwhom.reload"].run_dir
    if run_dir is not None:
        run_dir.post_forget(e164)
    report["caller"] = mask(e164)
    report["workers"] = "all (run dir)" if run_dir is not None else "this process"
    log.info("forgot caller=%s cached_answers=%d redis=%s", mask(e164), report["cached_answers"], report["redis"])
    return Response(json.dumps(report), mimetype="application/json")


def ops_reload(ext: dict) -> Response:
    """Reload the config: under `dialwhom serve` via the master (every worker), else here."""
    rt, refused = _ops_only(ext)
    if refused is not None:
        return refused
    reloader = ext["dialwhom.reload"]
    pid = reloader.run_dir.master_pid() if reloader.run_dir is not None else None
    if pid is not None and pid != os.getpid():
        os.kill(pid, signal.SIGHUP)
        return Response(json.dumps({"sent": "SIGHUP", "to": "master"}), 202, mimetype="application/json")
    result = reloader.reload()
    return Response(json.dumps(result), 200 if result["ok"] else 422, mimetype="application/json")


#: (rule, view, methods): what Exotel calls, then what operators call
ROUTES = (
    ("/exotel/dial-whom", dial_whom, ["GET", "POST"]),
    ("/exotel/fallback", fallback, ["GET", "POST"]),
    ("/exotel/connect", connect, ["GET", "POST"]),
    ("/exotel/passthru", passthru, ["GET", "POST"]),
    ("/exotel/agent-event", agent_event, ["GET", "POST"]),
    ("/healthz", healthz, ["GET"]),
    ("/readyz", readyz, ["GET"]),
    ("/metrics", metrics, ["GET"]),
    ("/ops/forget", ops_forget, ["POST"]),
    ("/ops/reload", ops_reload, ["POST"]),
)
