"""The operator console at /console: live decisions, try a number, now, charts (docs/console.md).

Read-only, server-rendered (templates/console/), a little plain JavaScript (static/console/) for
the live list. Off unless the config sets `console_token`; then a sign-in form sets a signed,
HttpOnly, SameSite=Strict cookie. Nothing it shows holds a full phone number or a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from dialwhom.integrations.runtime import Runtime
from dialwhom.routing.availability import team_policy
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.metrics import Metrics
from dialwhom.routing.redact import mask, scrub
from dialwhom.routing.recent import Bucket, merge, minutes
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import Decision, RoutingService

COOKIE = "dialwhom_console"
#: a signed-in session lasts this long
SESSION_S = 12 * 3600
#: sessions signed out, remembered so their cookie stops working (per process, bounded)
_REVOKED_MAX = 10_000
_HERE = Path(__file__).resolve().parent
PAGES = (("live", "Live"), ("try_number", "Try a number"), ("now", "Now"), ("charts", "Charts"))
#: chart colours per decision path (others grey)
PATH_COLOURS = {
    "cache": "#2b7bb9", "fresh": "#3aa655", "stale": "#e0a030", "repeat": "#9aa5b1", "not-found": "#8e6cc1",
    "no-key": "#c9a0dc", "timeout": "#d9534f", "breaker-open": "#b03a2e", "error": "#e8743b", "fallback": "#5f6b7a",
    "error-fallback": "#000000",
}


def register(app: Flask, runtime: Runtime) -> None:
    """The console's routes on `app`; each answers 404 while the config sets no `console_token`
    (checked per request, so a reload that sets or drops the token applies at once)."""
    bp = Blueprint("console", __name__, url_prefix="/console", template_folder=str(_HERE / "templates"),
                   static_folder=str(_HERE / "static" / "console"), static_url_path="/static")
    bp.before_request(_require_session)
    bp.after_request(_headers)
    for rule, view, methods in VIEWS:
        bp.add_url_rule(rule, view_func=view, methods=methods)
    app.register_blueprint(bp)
    app.extensions["dialwhom.console"] = {"revoked": set()}


# -- sessions -------------------------------------------------------------------------------------


def _rt() -> Runtime:
    # read per request: a reload may swap the runtime in
    return current_app.extensions["dialwhom"]


def _serializer() -> URLSafeTimedSerializer:
    # The signing key is derived from console_token: changing the token signs everyone out, and
    # several workers or instances with one config accept each other's cookies.
    token = str(_rt().settings.console_token)
    key = hmac.new(token.encode(), b"dialwhom console session v1", hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt="dialwhom-console")


def _session() -> dict | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer().loads(raw, max_age=SESSION_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("n") in current_app.extensions["dialwhom.console"]["revoked"]:
        return None
    return data


def _require_session() -> Response | None:
    if not _rt().settings.console_token:
        abort(404)  # no console without its token
    if request.endpoint in ("console.login", "console.static"):
        return None
    sess = _session()
    if sess is None:
        if request.path.startswith("/console/api/"):
            return _json({"error": "sign in first"}, 401)
        return redirect(url_for("console.login"))
    request.environ["dialwhom.console.session"] = sess
    if request.method == "POST" and not hmac.compare_digest(request.form.get("csrf", "").encode(), str(sess.get("csrf", "")).encode()):
        return Response("forbidden: the form is stale, reload the page\n", 403, content_type="text/plain; charset=utf-8")
    return None


def _csrf() -> str:
    return request.environ.get("dialwhom.console.session", {}).get("csrf", "")


def _headers(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Content-Security-Policy"] = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return resp


def login() -> Response | str:
    """GET: the sign-in form; POST: check the token (constant time) and set the cookie."""
    error = None
    if request.method == "POST":
        given = request.form.get("token", "")
        expected = str(_rt().settings.console_token)
        if hmac.compare_digest(given.encode(), expected.encode()):
            sess = {"csrf": secrets.token_urlsafe(18), "n": secrets.token_urlsafe(12)}
            resp = redirect(url_for("console.live"), 303)
            resp.set_cookie(COOKIE, _serializer().dumps(sess), max_age=SESSION_S, path="/console",
                            httponly=True, samesite="Strict", secure=request.is_secure)
            return resp
        error = "wrong token"
    body = render_template("console/login.html", error=error, pages=(), csrf="")
    return Response(body, 403 if error else 200)


def logout() -> Response:
    revoked = current_app.extensions["dialwhom.console"]["revoked"]
    if len(revoked) >= _REVOKED_MAX:
        revoked.clear()  # bounded; an old cookie still expires after SESSION_S
    revoked.add(request.environ["dialwhom.console.session"].get("n"))
    resp = redirect(url_for("console.login"), 303)
    resp.delete_cookie(COOKIE, path="/console", httponly=True, samesite="Strict", secure=request.is_secure)
    return resp


def _page(template: str, active: str, **kw: Any) -> str:
    return render_template(f"console/{template}", pages=PAGES, active=active, csrf=_csrf(), **kw)


def _json(doc: Any, status: int = 200) -> Response:
    resp = jsonify(doc)
    resp.status_code = status
    return resp


# -- live decisions ---------------------------------------------------------------------------


def _filters() -> dict[str, str]:
    return {k: request.args.get(k, "")[:64] for k in ("path", "team", "connector")}


def index() -> Response:
    return redirect(url_for("console.live"))


def live() -> str:
    rt = _rt()
    f = _filters()
    return _page("live.html", "live", entries=rt.service.recent.entries(**f, limit=50), filters=f,
                 paths=sorted(PATH_COLOURS), teams=sorted(rt.settings.teams), connectors=[c.id for c in rt.connectors])


def api_decisions() -> Response:
    return _json({"decisions": _rt().service.recent.entries(**_filters(), limit=100), "now": time.time()})


def decision(entry_id: str) -> str:
    e = _rt().service.recent.get(entry_id[:80])
    if e is None:
        abort(404)
    return _page("decision.html", "live", e=e)


def api_decision(entry_id: str) -> Response:
    e = _rt().service.recent.get(entry_id[:80])
    return _json(e) if e is not None else _json({"error": "no such decision (it may have left the list)"}, 404)


# -- try a number -----------------------------------------------------------------------------


def try_number() -> str:
    form = {k: request.form.get(k, "").strip()[:64] for k in ("number", "custom_field", "digits", "line", "at")}
    result = error = None
    if request.method == "POST":
        try:
            result = explain(_rt(), **form)
        except ValueError as exc:
            error = str(exc)
    return _page("try.html", "try_number", form=_masked_form(form) if result or error else form, result=result, error=error,
                 moments=_moment_supported())


def _masked_form(form: dict[str, str]) -> dict[str, str]:
    """The form as shown back: the caller's number masked too (the page must not hold it)."""
    shown = dict(form)
    for k in ("number", "line"):
        if shown[k]:
            shown[k] = mask(shown[k])
    return shown


def explain(rt: Runtime, *, number: str = "", custom_field: str = "", digits: str = "", line: str = "", at: str = "") -> dict:
    """What `dialwhom lookup --explain [--at]` prints for these inputs, numbers masked.

    The same steps as the command (`cli.cmd_lookup`): the request read by `parse_request`, the
    plan from `RoutingService.decide` of a service of its own (empty cache, own breakers and
    metrics, like the command's fresh process) over the running connectors, and the words from
    `Trace.explain`. Not `answer()`: nothing is counted, no per-call plan or recent entry kept.
    """
    if not (number or custom_field or digits):
        raise ValueError("give a number, a CustomField or digits")
    params = {"CallFrom": number, "CustomField": custom_field, "To": line}
    if digits:
        params["digits"] = f'"{digits}"'
    req = parse_request(params, rt.settings.default_region)
    if number and req.caller is None:
        raise ValueError(f"'{mask(number)}' is not a phone number (region {rt.settings.default_region})")
    service = _scratch_service(rt, _moment_clock(rt, at))
    try:
        d: Decision = service.decide(req, Deadline.from_ms(rt.settings.budget_ms))
    finally:
        service._executor.shutdown(wait=False, cancel_futures=True)  # not close(): the connectors are the live ones
    plan_lines = [f"{i}. {mask(s.number)}  ({s.why})" for i, s in enumerate(d.plan.steps, 1)] or ["nobody: the config has no number to ring"]
    return {
        "plan": [{"number": mask(s.number), "why": s.why} for s in d.plan.steps],
        "path": d.trace.path,
        "text": "\n".join(plan_lines + [""] + d.trace.explain()),
        "at": at or None,
    }


def _scratch_service(rt: Runtime, clock: Any) -> RoutingService:
    """A service for one try: the live settings and connectors, nothing of the live state."""
    return RoutingService(rt.settings, rt.connectors, metrics=Metrics(), shared=rt.service.shared,
                          clock=clock or rt.service.clock, max_workers=4)


def _moment_supported() -> bool:
    try:
        from dialwhom.routing import availability  # noqa: F401  (lands with issue 11)
    except ImportError:
        return False
    return True


def _moment_clock(rt: Runtime, at: str) -> Any:
    """A clock stopped at `at` (as `lookup --at` reads it), or None for now."""
    if not at:
        return None
    if not _moment_supported():
        raise ValueError("this version has no availability rules: a moment would change nothing")
    from dialwhom.routing.availability import FixedClock, parse_at

    return FixedClock(parse_at(at, rt.settings.timezone))


# -- now ----------------------------------------------------------------------------------------


def now() -> str:
    return _page("now.html", "now", state=state(_rt()))


def api_now() -> Response:
    return _json(state(_rt()))


def state(rt: Runtime) -> dict:
    """Everything the Now page shows: people, teams, connectors, caches, Redis, config."""
    s, service = rt.settings, rt.service
    at = service.clock.now()
    ts = at.timestamp()
    teams = []
    for name, numbers in s.teams.items():
        teams.append({"name": name, "backups": [mask(n) for n in numbers], "order": _team_order(rt, name), "next": _next_backup(rt, name, ts)})
    people = []
    for rep in s.reps:
        people.append({"name": rep.name or rep.owners[0], "owners": list(rep.owners), "phones": [mask(p) for p in rep.phones],
                       "team": rep.team, "availability": _availability(rt, rep.phones[0], rep.team, ts)})
    known = {p for r in s.reps for p in r.phones}
    for name, numbers in s.teams.items():
        for n in numbers:
            if n not in known:
                known.add(n)
                people.append({"name": f"backup of {name}", "owners": [], "phones": [mask(n)], "team": name, "availability": _availability(rt, n, name, ts)})
    recent = service.recent.entries()
    ready = service.readiness()
    connectors = []
    for c in rt.connectors:
        calls = [step for e in recent for step in e["lookups"] if step["connector"] == c.id and not step["outcome"].startswith("cache") and step["outcome"] != "breaker-open"]
        errors = [(e["time"], step) for e in recent for step in e["lookups"] if step["connector"] == c.id and step["outcome"] not in ("found", "not-found", "cache-hit", "cache-negative")]
        ms = [step["ms"] for step in calls]
        connectors.append({
            "id": c.id, "type": getattr(c, "type_name", "?"), "breaker": service.breakers[c.id].snapshot(),
            "last_error": ({"time": errors[0][0], "outcome": errors[0][1]["outcome"], "detail": errors[0][1]["detail"]} if errors else None),
            "rate_limit_remaining": getattr(c, "rate_limit_remaining", None),
            "latency_ms": {"calls": len(ms), "avg": round(sum(ms) / len(ms), 1) if ms else None, "max": max(ms) if ms else None},
        })
    known_keys = {"status", "config", "connectors", "cached_lookups", "remembered_calls", "last_agents", "shared_state", "lookups_in_flight"}
    return {
        "at": _local(at, s).isoformat(timespec="minutes"),
        "people": people,
        "teams": teams,
        "connectors": connectors,
        "caches": {k: ready.get(k) for k in ("cached_lookups", "remembered_calls", "last_agents", "lookups_in_flight")},
        "shared_state": ready.get("shared_state"),
        "recent_redis_errors": service.recent.redis_errors,
        "config": {"file": Path(str(ready.get("config") or s.source)).name, "version": getattr(s, "version", None), "last_reload": _last_reload()},
        "worker": os.getpid(),
        # whatever else /readyz reports (newer keys), shown as they are
        "more": {k: v for k, v in ready.items() if k not in known_keys},
    }


def _local(at: datetime, settings: Any) -> datetime:
    """`at` in the config's timezone (the one schedules are read in), when it has one."""
    zone = getattr(settings, "timezone", None)
    return at.astimezone(ZoneInfo(zone)) if zone else at


def _last_reload() -> Any:
    """How the last reload went (dialwhom.integrations.reload, issue 14), if this app reloads."""
    reloader = current_app.extensions.get("dialwhom.reload")
    status = reloader.status() if reloader is not None else None
    # a refused reload's message may quote the bad value (a number one digit short): scrubbed
    return {k: scrub(v) if isinstance(v, str) else v for k, v in status.items()} if status else None


def _availability(rt: Runtime, number: str, team: str | None, ts: float) -> str:
    """An agent's availability at `ts` in words: inactive is only known per call (the CRM
    says so on the owner it returns), so this shows hours, holidays, leave and busy."""
    service = rt.service
    rules = getattr(service, "availability", None)  # routing/availability.py (issue 11)
    ledger = getattr(service, "ledger", None)
    if rules is None or ledger is None:
        return "no hours or leave in this version: always available"
    why = rules.check(number, team, ts)
    busy = ledger.busy_map().get(number)
    busy_text = f"busy since {rules.clock_time(busy)}" if busy is not None and ts - busy < ledger.ttl else None
    if why is not None:
        text = why.text + (f"; delegate {why.delegate}" if why.delegate else "")
        return text + (f"; {busy_text}" if busy_text else "")
    if busy_text:
        return busy_text
    schedule = getattr(rules._rules(number, team), "schedule", None) if rules.enabled else None
    return f"in hours '{schedule.name}'" if schedule is not None else "available (no hours set)"


def _team_order(rt: Runtime, team: str) -> str:
    body = rt.settings.teams.get(team)
    order = getattr(body, "order", None)
    stickiness = getattr(body, "stickiness", None)
    return f"{order or 'in-order'}" + (f", {stickiness}" if stickiness else "")


def _next_backup(rt: Runtime, team: str, ts: float) -> str | None:
    """Who leads the team's backups for the next new call, read without taking a turn."""
    numbers = list(rt.settings.teams.get(team) or ())
    if not numbers:
        return None
    service = rt.service
    rules, ledger = getattr(service, "availability", None), getattr(service, "ledger", None)
    if rules is not None:
        numbers = [n for n in numbers if rules.check(n, team, ts) is None] or numbers
    order = team_policy(rt.settings.teams.get(team), "order")
    if order == "round-robin" and ledger is not None:
        turns = getattr(ledger, "_turns", {}).get(team, 0)  # peek: turn() would advance the rotation
        return mask(numbers[turns % len(numbers)]) + (" (rotation kept in Redis)" if ledger.shared else "")
    if order == "longest-idle" and ledger is not None:
        idle = ledger.idle_map()
        return mask(min(numbers, key=lambda n: idle.get(n, float("-inf"))))
    return mask(numbers[0])


# -- charts -------------------------------------------------------------------------------------


def charts() -> str:
    series = _rt().service.recent.buckets()
    wall = _rt().service.clock.time()
    hour = minutes(series, wall, 60)
    day = minutes(series, wall, 48, width=30)
    sections = []
    for title, rows, unit in (("last hour", hour, "per minute"), ("last day", day, "per half hour")):
        total = merge(b for _, b in rows)
        sections.append({
            "title": title, "unit": unit, "total": total,
            "answers": Markup(bars(rows)),
            "owner": Markup(line_chart(rows, lambda b: (100.0 * b.owner_first / b.routed) if b.routed else None, "%", 100.0)),
            "latency": Markup(line_chart(rows, lambda b: (b.crm_ms / b.crm_calls) if b.crm_calls else None, "ms", None, peak=lambda b: b.crm_max_ms if b.crm_calls else None)),
            "paths": sorted(total.paths.items(), key=lambda kv: -kv[1]),
        })
    return _page("charts.html", "charts", sections=sections, colours=PATH_COLOURS)


W, H, PAD = 300, 120, 24


def _label(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, timezone.utc).strftime("%H:%M")


def _frame(rows: list[tuple[int, Bucket]], top: float, unit: str, body: str, title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {W} {H + 16}" role="img" aria-label="{escape(title)}">'
            f'<line x1="{PAD}" y1="{H}" x2="{W}" y2="{H}" stroke="#999"/>'
            f'<text x="0" y="10" class="axis">{top:g}{escape(unit)}</text><text x="0" y="{H}" class="axis">0</text>'
            f'<text x="{PAD}" y="{H + 14}" class="axis">{_label(rows[0][0])} UTC</text>'
            f'<text x="{W}" y="{H + 14}" class="axis" text-anchor="end">now</text>{body}</svg>')


def bars(rows: list[tuple[int, Bucket]]) -> str:
    """Stacked bars of answers per path, one bar per bucket."""
    top = max([b.answers for _, b in rows] + [1])
    step = (W - PAD) / len(rows)
    parts = []
    for i, (minute, b) in enumerate(rows):
        y = H
        for path, n in sorted(b.paths.items()):
            h = (H - 12) * n / top
            y -= h
            parts.append(f'<rect x="{PAD + i * step:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
                         f'fill="{PATH_COLOURS.get(path, "#777")}"><title>{_label(minute)} {escape(path)}: {n}</title></rect>')
    return _frame(rows, top, "", "".join(parts), "answers per path")


def line_chart(rows: list[tuple[int, Bucket]], value: Callable[[Bucket], float | None], unit: str, top: float | None,
               peak: Callable[[Bucket], float | None] | None = None) -> str:
    """A polyline of `value` per bucket (gaps where there is none); `peak` drawn as dots."""
    values = [value(b) for _, b in rows]
    peaks = [peak(b) for _, b in rows] if peak else []
    top = top or max([v for v in values + peaks if v is not None] + [1.0])
    step = (W - PAD) / len(rows)

    def xy(i: int, v: float) -> str:
        return f"{PAD + (i + 0.5) * step:.1f},{H - (H - 12) * min(v, top) / top:.1f}"

    parts, run = [], []
    for i, v in enumerate(values):
        if v is None:
            if run:
                parts.append(run)
            run = []
        else:
            run.append(xy(i, v))
    if run:
        parts.append(run)
    body = "".join(f'<polyline points="{" ".join(p)}" fill="none" stroke="#2b7bb9" stroke-width="2"/>' if len(p) > 1
                   else f'<circle cx="{p[0].split(",")[0]}" cy="{p[0].split(",")[1]}" r="2.5" fill="#2b7bb9"/>' for p in parts)
    for i, v in enumerate(peaks):
        if v is not None:
            x, y = xy(i, v).split(",")
            body += f'<circle cx="{x}" cy="{y}" r="2" fill="#d9534f"><title>max {v:.0f}{escape(unit)}</title></circle>'
    return _frame(rows, round(top, 1), unit, body, "chart")


#: (rule, view, methods) under /console
VIEWS = (
    ("", index, ["GET"]),
    ("/login", login, ["GET", "POST"]),
    ("/logout", logout, ["POST"]),
    ("/live", live, ["GET"]),
    ("/decision/<entry_id>", decision, ["GET"]),
    ("/try", try_number, ["GET", "POST"]),
    ("/now", now, ["GET"]),
    ("/charts", charts, ["GET"]),
    ("/api/decisions", api_decisions, ["GET"]),
    ("/api/decisions/<entry_id>", api_decision, ["GET"]),
    ("/api/now", api_now, ["GET"]),
)
