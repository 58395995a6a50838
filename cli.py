"""The ``dialwhom`` command: serve, reload, forget, lookup, check, connectors, simulate."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dialwhom.routing.config import ConfigError
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.redact import mask, scrub


def _freeze_startup_objects(worker) -> None:
    """gunicorn post_worker_init: move everything built at startup (modules, Flask, config,
    phone metadata) out of the garbage collector's sight, so a full collection, which holds
    the GIL while every request waits, walks only what requests created."""
    import gc

    gc.collect()
    gc.freeze()


#: gunicorn settings for production; examples/gunicorn.conf.py loads the same ones.
#: One worker with many threads keeps caches and per-call plans in one process; the worker
#: timeout sits above the 8 s budget ceiling and below Exotel's 10 s.
GUNICORN_SETTINGS: dict[str, Any] = {
    # gthread, stamping each request's arrival so budget_ms counts the wait for a thread, and
    # answering malformed requests without echoing them (dialwhom/server.py; README "Running
    # in production" says why threads and not gevent)
    "worker_class": "dialwhom.server.ArrivalThreadWorker",
    # gunicorn's error and access logs redacted (dialwhom.server.RedactingLogger) and in
    # dialwhom's one format, text or JSON (dialwhom.serve.GunicornLogger, a subclass)
    "logger_class": "dialwhom.serve.GunicornLogger",
    "limit_request_line": 4094,
    "workers": 1,
    "threads": 32,
    "timeout": 9,
    "graceful_timeout": 5,
    "keepalive": 5,
    "backlog": 512,
    # %(U)s is the path without the query string: no phone number or token in access logs
    "accesslog": "-",
    "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)sB %(M)sms',
    # gunicorn >= 24 opens a control socket at one fixed path per user; two instances on one
    # host would take it from each other, and dialwhom does not use it
    "control_socket_disable": True,
    "post_worker_init": _freeze_startup_objects,
}

EPILOG = """examples:
  dialwhom serve                              development server on 127.0.0.1:8080
  dialwhom serve --host 0.0.0.0 --workers 1   production (gunicorn, 32 threads)
  dialwhom lookup 09876543210 --explain       whom a caller would reach, and why
  dialwhom lookup --custom-field A-1004       by the CustomField an API call would pass
  dialwhom lookup 09876543210 --at "2026-12-24 19:30" --explain   the plan at another moment
  dialwhom check                              validate config and reach every connector
  dialwhom reload                             validate, then apply the changed config (kill -HUP)
  dialwhom forget 09876543210                 drop one caller's cached owner everywhere
  dialwhom connectors                         connector types installed, with packages
  dialwhom simulate http://127.0.0.1:8080/exotel/dial-whom --answers busy,completed
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialwhom",
        description="Sticky call routing for Exotel: ring the caller's CRM owner first.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from dialwhom import __version__

    parser.add_argument("--version", action="version", version=f"dialwhom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def example(text: str) -> dict[str, Any]:
        return {"epilog": "example:\n  " + text, "formatter_class": argparse.RawDescriptionHelpFormatter}

    def run_dir_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", type=int, default=int(os.environ.get("DIALWHOM_PORT", "8080")), help="the port the service listens on (finds its run directory)")
        p.add_argument("--run-dir", metavar="DIR", help="the service's run directory (default: $DIALWHOM_RUN_DIR, else <tmp>/dialwhom-<port>)")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH", help="config file (default: $DIALWHOM_CONFIG, ./dialwhom.yaml, then the shipped example)")
        return p

    p = with_config(sub.add_parser("serve", help="run the service", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--host", default=os.environ.get("DIALWHOM_HOST", "127.0.0.1"), help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("DIALWHOM_PORT", "8080")), help="port (default 8080)")
    p.add_argument("--workers", type=_positive("--workers"), help="run under gunicorn with N worker processes (production)")
    p.add_argument("--threads", type=_positive("--threads"), default=GUNICORN_SETTINGS["threads"], help="threads per gunicorn worker (default 32)")
    p.add_argument("--run-dir", metavar="DIR", help="pid file, reload verdicts, multi-worker metrics (default: $DIALWHOM_RUN_DIR, else <tmp>/dialwhom-<port>)")

    p = sub.add_parser("reload", help="validate the running service's config file, then apply it (no restart)",
                       **example("dialwhom reload --port 8080     # after editing the service's dialwhom.yaml"))
    run_dir_args(p)
    p.add_argument("--wait", type=float, default=10.0, metavar="S", help="seconds to wait for the service's verdict (default 10)")

    p = with_config(sub.add_parser("forget", help="drop one caller's cached owner everywhere (every worker, Redis)",
                                   **example("dialwhom forget 09876543210 --port 8080   # after moving the account to another owner")))
    p.add_argument("number", help="the caller's number, in any common format")
    run_dir_args(p)

    p = with_config(sub.add_parser("lookup", help="the dial plan for one caller, with the decision trace",
                                   **example("dialwhom lookup 09876543210 --explain")))
    p.add_argument("number", nargs="?", help="the caller's number, in any common format")
    p.add_argument("--custom-field", metavar="V", help="a CustomField value, as Exotel's API would pass it")
    p.add_argument("--digits", metavar="D", help="digits keyed in an IVR")
    p.add_argument("--to", metavar="LINE", help="the ExoPhone called (picks the line's team for unknown callers)")
    p.add_argument("--explain", action="store_true", help="print the decision trace in words")
    p.add_argument("--at", metavar='"YYYY-MM-DD HH:MM"', help="the plan at that moment (the config's timezone unless an offset is given)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the answer Exotel would get")

    p = with_config(sub.add_parser("check", help="validate config and reach each connector",
                                   **example("dialwhom check --config /etc/dialwhom/dialwhom.yaml --json")))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")

    p = sub.add_parser("connectors", help="list installed connector types", **example("dialwhom connectors --json"))
    p.add_argument("--json", action="store_true", help="machine-readable output")

    try:
        from dialwhom import simulator
    except ImportError:  # pragma: no cover - the simulator ships with the package
        simulator = None
    if simulator is not None:
        simulator.build_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dialwhom.routing.redact import install_log_redaction

    install_log_redaction()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        code = {
            "serve": cmd_serve,
            "reload": cmd_reload,
            "forget": cmd_forget,
            "lookup": cmd_lookup,
            "check": cmd_check,
            "connectors": cmd_connectors,
            "simulate": cmd_simulate,
        }[args.command](args)
        sys.stdout.flush()  # here, so a closed pipe is met below and not at interpreter exit
        return code
    except ConfigError as exc:
        print(f"dialwhom: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # --json: stdout is JSON whatever happens
            print(json.dumps({"ok": False, "config_error": {"key": exc.key, "message": exc.message}}, indent=1))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `dialwhom lookup ... | head`: the reader left; no traceback
        # Python flushes stdout again at exit; point it at /dev/null so that cannot fail too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it


# -- serve ------------------------------------------------------------------------------------


def cmd_serve(args) -> int:
    from dialwhom.integrations.rundir import RunDir, default_path

    run_dir = RunDir(args.run_dir or default_path(args.port))
    if args.workers and args.workers > 1:
        # set before prometheus_client is first imported: it picks its value class at import
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir.metrics_dir)
    os.environ["DIALWHOM_RUN_DIR"] = str(run_dir.path)  # the workers find it here

    from dialwhom.integrations.reload import validate
    from dialwhom.serve import ServeState

    settings = validate(args.config)  # fail fast on bad config, before binding
    run_dir.prepare(pid=os.getpid(), config=str(Path(settings.source).resolve()) if Path(settings.source).is_file() else None,
                    bind=f"{args.host}:{args.port}")
    state = ServeState(args.config, settings, run_dir)
    if args.workers is None:
        from dialwhom.app import create_app
        from dialwhom.serve import run_dev_server

        app = create_app(settings)
        print(f"dialwhom: development server on http://{args.host}:{args.port}/exotel/dial-whom (use --workers N for production)", file=sys.stderr)
        run_dev_server(app, state, args.host, args.port)
        return 0
    if args.workers > 1 and settings.shared_state is None:
        print(f"dialwhom: warning: {args.workers} workers without shared_state: per-call plans and last agents are per worker, "
              "so a call's repeat request may get another plan; set shared_state.url to a Redis (README, Running in production)", file=sys.stderr)
    run_gunicorn(state, host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    return 0


def run_gunicorn(state, *, host: str, port: int, workers: int, threads: int) -> None:
    from dialwhom import serve

    serve.run_gunicorn(state, dict(GUNICORN_SETTINGS, workers=workers, threads=threads, bind=f"{host}:{port}"))


def _positive(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1 (got {value}): 0 would serve nothing")
        return value
    return parse


# -- reload, forget ---------------------------------------------------------------------------


def _run_dir(args):
    from dialwhom.integrations.rundir import RunDir, default_path

    return RunDir(args.run_dir or default_path(args.port))


def cmd_reload(args) -> int:
    import signal
    import time

    from dialwhom.integrations.reload import validate

    run_dir = _run_dir(args)
    pid, server = run_dir.master_pid(), run_dir.server() or {}
    if pid is None or not _alive(pid):
        print(f"dialwhom reload: no running 'dialwhom serve' with run directory {run_dir.path} (give --port or --run-dir)", file=sys.stderr)
        return 2
    _quiet_logs()
    try:
        settings = validate(server.get("config"))
    except ConfigError as exc:
        print(f"dialwhom reload: refused, nothing sent: {exc}", file=sys.stderr)
        return 2
    sent = time.time()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        status = run_dir.read_status()
        if status and status.get("at", 0) >= sent:
            if status.get("ok"):
                print(f"reloaded: config {status['version']} (was {status.get('from')}); every worker swaps it in now")
                return 0
            print(f"dialwhom reload: refused by the service: {status.get('error')}; it keeps serving {status.get('serving')}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"dialwhom reload: sent SIGHUP to {pid}, no verdict within {args.wait:g} s (config {settings.version} is valid)", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cmd_forget(args) -> int:
    from dialwhom.integrations.runtime import load_settings, make_shared
    from dialwhom.routing.phones import to_e164

    run_dir = _run_dir(args)
    server = run_dir.server() or {}
    _quiet_logs()
    settings = load_settings(args.config or server.get("config"))
    e164 = to_e164(args.number, settings.default_region)
    if e164 is None:
        print(f"dialwhom forget: '{args.number}' is not a phone number (region {settings.default_region})", file=sys.stderr)
        return 2
    done = []
    pid = run_dir.master_pid()
    if pid is not None and _alive(pid):
        run_dir.post_forget(e164)
        done.append(f"every worker of the service at {server.get('bind', '?')} (within a second)")
    shared = make_shared(settings)
    if shared is not None:
        try:
            shared.forget_caller(e164)
            done.append("Redis")
        except Exception as exc:
            print(f"dialwhom forget: Redis failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    if not done:
        print(f"dialwhom forget: no running service at {run_dir.path} and no shared_state: nothing holds {mask(e164)}", file=sys.stderr)
        return 1
    print(f"forgot {mask(e164)}: " + ", ".join(done))
    return 0


# -- lookup -----------------------------------------------------------------------------------


def cmd_lookup(args) -> int:
    from dialwhom.integrations.runtime import build_runtime, load_settings
    from dialwhom.routing.request import parse_request

    if not (args.number or args.custom_field or args.digits):
        print("dialwhom lookup: give a NUMBER, --custom-field or --digits", file=sys.stderr)
        return 2
    _quiet_logs()
    settings = load_settings(args.config)
    clock = None
    if args.at:  # the plan at another moment: the service reads this clock
        from dialwhom.routing.availability import FixedClock, parse_at

        try:
            clock = FixedClock(parse_at(args.at, settings.timezone))
        except ValueError as exc:
            print(f"dialwhom lookup: --at {exc}", file=sys.stderr)
            return 2
    rt = build_runtime(settings, clock=clock)
    try:
        params = {"CallFrom": args.number or "", "CustomField": args.custom_field or "", "To": args.to or ""}
        if args.digits:
            params["digits"] = f'"{args.digits}"'
        req = parse_request(params, rt.settings.default_region)
        if args.number and req.caller is None:
            print(f"dialwhom lookup: '{args.number}' is not a phone number (region {rt.settings.default_region})", file=sys.stderr)
            return 2
        decision = rt.service.decide(req, Deadline.from_ms(rt.settings.budget_ms))
    finally:
        rt.close()
    if args.json:
        print(json.dumps({
            "numbers": decision.plan.numbers,
            "reasons": [s.why for s in decision.plan.steps],
            "path": decision.trace.path,
            "key": decision.trace.key,
            "connector": decision.trace.connector,
            "steps": [dataclasses.asdict(s) for s in decision.trace.steps],
            "notes": decision.trace.notes,
            "skipped": list(decision.trace.skips),
            "elapsed_ms": round(decision.trace.elapsed_ms, 1),
        }, indent=1))
        return 0
    if args.quiet:
        print(decision.plan.body())
        return 0
    for i, step in enumerate(decision.plan.steps, 1):
        print(f"{i}. {step.number}  ({step.why})")
    if not decision.plan.steps:
        print("nobody: the config has no number to ring")
    if args.explain:
        print()
        print("\n".join(decision.trace.explain()))
    return 0


# -- check ------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    from dialwhom.integrations.base import Connector
    from dialwhom.integrations.runtime import build_runtime
    from dialwhom.routing.model import Query

    _quiet_logs()
    out = _Out(sys.stderr if args.json else None, quiet=args.quiet)  # --json: stdout is the JSON document only
    rt = build_runtime(args.config)
    s = rt.settings
    problems = 0
    report: dict[str, Any] = {"config": s.source, "connectors": [], "problems": []}
    out.ok(f"config {s.source}: valid ({len(s.connectors)} connectors, {len(s.reps)} reps, {len(s.teams)} teams)")
    if not s.fallback:
        problems += 1
        msg = "no 'fallback' numbers: an unknown caller on a line without a team would get no answer"
        out.bad(msg)
        report["problems"].append(msg)
    if not s.tokens:
        out.warn("no token: anyone who finds the URL can ask it (set token: ${DIALWHOM_TOKEN})")
    for team, numbers in s.teams.items():
        if not numbers:
            out.warn(f"team '{team}' has no backup numbers")
    try:
        for c in rt.connectors:
            entry: dict[str, Any] = {"id": c.id, "type": c.type_name}
            if type(c).check is Connector.check:  # nothing to call: say so, never "ok"
                entry["check"] = "skipped"
                hint = "" if s.check_number else "; set check_number to a known customer's number to prove it answers"
                out.warn(f"connector {c.id} ({c.type_name}): not checked: this type has no connectivity check{hint}")
            else:
                try:
                    note = c.check(deadline=Deadline.from_ms(max(s.budget_ms, 5000)))
                    entry["check"] = note = scrub(str(note))
                    # a note starting "warn: " is a check that ran only in part, or found a gap
                    warned = note.startswith("warn: ")
                    (out.warn if warned else out.ok)(f"connector {c.id} ({c.type_name}): {note.removeprefix('warn: ')}")
                except Exception as exc:  # report every failure, whatever its kind
                    problems += 1
                    entry["error"] = scrub(f"{type(exc).__name__}: {exc}")
                    out.bad(f"connector {c.id} ({c.type_name}): {entry['error']}")
                    report["problems"].append(entry["error"])
            if s.check_number:
                try:
                    m = c.lookup(Query("phone", s.check_number, "caller"), deadline=Deadline.from_ms(max(s.budget_ms, 5000)))
                    who = (m.owner.email or m.owner.id or m.owner.name or "?") if m else None
                    entry["check_number"] = who
                    (out.ok if m else out.warn)(f"connector {c.id}: check_number {mask(s.check_number)} -> {who or 'not found'}")
                    if m and not any(s.rep_for(k) for k in m.owner.keys()) and not m.owner.phone:
                        out.warn(f"owner {who} has no 'reps' entry and no phone in the CRM: callers will reach the team or fallback")
                except Exception as exc:
                    problems += 1
                    entry["check_number_error"] = scrub(f"{type(exc).__name__}: {exc}")
                    out.bad(f"connector {c.id}: lookup of check_number failed: {entry['check_number_error']}")
                    report["problems"].append(entry["check_number_error"])
            report["connectors"].append(entry)
    finally:
        rt.close()
    if s.shared_state is not None:
        problem = _check_redis(s, out)
        report["shared_state"] = problem or "ok"
        if problem:
            problems += 1
            report["problems"].append(problem)
    report["ok"] = not problems
    if args.json:
        print(json.dumps(report, indent=1))
    out.line("all good" if not problems else f"{problems} problem(s) found")
    return 1 if problems else 0


def _check_redis(s, out) -> str | None:
    """Reach, authenticate and write under the prefix; the problem, or None when all work."""
    import redis

    where = s.shared_state.url.split("@")[-1]  # never the password
    client = redis.Redis.from_url(s.shared_state.url, socket_timeout=2, socket_connect_timeout=2)
    probe = f"{s.shared_state.prefix}check:{os.getpid()}"
    try:
        client.ping()
        client.set(probe, "1", ex=10)
        if client.get(probe) != b"1":
            raise redis.RedisError("a value written under the prefix did not read back")
        client.delete(probe)
    except redis.AuthenticationError as exc:
        msg = f"shared_state: Redis at {where} refused the credentials: {exc}"
    except redis.ResponseError as exc:  # NOPERM, READONLY replica, OOM ...
        msg = f"shared_state: Redis at {where} does not let us write under '{s.shared_state.prefix}': {exc}"
    except redis.RedisError as exc:
        msg = f"shared_state: Redis at {where} unreachable: {type(exc).__name__}: {exc}"
    else:
        out.ok(f"shared_state: Redis at {where} reachable, authenticated, '{s.shared_state.prefix}' writable")
        return None
    finally:
        client.close()
    out.bad(msg)
    return msg


# -- connectors -------------------------------------------------------------------------------


def cmd_connectors(args) -> int:
    from dialwhom.integrations.registry import discover

    rows = []
    for name, entries in sorted(discover().items()):
        for e in entries:
            try:
                cls = e.load()
                status = "ok" if len(entries) == 1 else "DUPLICATE type name"
                doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            except Exception as exc:
                status, doc = f"fails to load: {type(exc).__name__}: {exc}", ""
            rows.append({"type": name, "target": e.value, "package": e.package, "version": e.version, "status": status, "summary": doc})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['type']:<12} {r['package'] or '?'} {r['version'] or ''}  {r['target']}  [{r['status']}]  {r['summary']}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


# -- simulate ---------------------------------------------------------------------------------


def cmd_simulate(args) -> int:
    from dialwhom import simulator

    return simulator.run_from_args(args)


# -- helpers ----------------------------------------------------------------------------------


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")


class _Out:
    """Check marks, coloured only on a terminal (and never with NO_COLOR)."""

    def __init__(self, stream=None, *, quiet: bool = False):
        self.stream = sys.stdout if stream is None else stream
        self.quiet = quiet
        self.colour = self.stream.isatty() and "NO_COLOR" not in os.environ

    def _p(self, mark: str, colour: str, text: str) -> None:
        if self.colour:
            mark = f"\033[{colour}m{mark}\033[0m"
        print(f"{mark} {text}", file=self.stream)

    def ok(self, text: str) -> None:
        if not self.quiet:
            self._p("ok  ", "32", text)

    def warn(self, text: str) -> None:
        if not self.quiet:
            self._p("warn", "33", text)

    def bad(self, text: str) -> None:
        self._p("FAIL", "31", text)

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream)
