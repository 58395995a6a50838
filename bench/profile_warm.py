"""Where the warm path's time goes: dialwhom vs the bare Flask app, in process, without gunicorn.

    python bench/profile_warm.py              # microseconds per request, both apps, WSGI call only
    python bench/profile_warm.py --profile    # plus cProfile of dialwhom's requests, by own time
    python bench/profile_warm.py --breakdown  # plus the cost of each step of a cached answer

Each request is a WSGI call with a realistic Exotel query string and a new CallSid; the caller
is in the lookup cache (as in bench/run.py's warm case). The difference between the two apps is
what dialwhom adds per request on top of Flask (gunicorn's own cost is the same for both).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from run import BASE_CONFIG, DIAL_WHOM, REPS  # noqa: E402


def environ(path: str) -> dict:
    p, _, q = path.partition("?")
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": p, "QUERY_STRING": q, "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }


def start_response(status, headers, exc_info=None):
    return None


def call(app, path: str) -> bytes:
    return b"".join(app(environ(path), start_response))


def paths(n: int, callers: int, offset: int = 0) -> list[str]:
    return [DIAL_WHOM.replace("{sid}", f"{offset:012x}{i:020d}").replace("{n}", f"9{i % callers:09d}") for i in range(n)]


def build_dialwhom(workdir: Path, callers: int, log_level: str = "WARNING", changes=None):
    import yaml

    from dialwhom.app import create_app

    rows = ["account_id,account_name,phones,owner"] + [f"A-{k:05d},Customer {k},09{k:09d},{REPS[k % len(REPS)][0]}" for k in range(callers)]
    (workdir / "accounts.csv").write_text("\n".join(rows) + "\n")
    cfg = dict(BASE_CONFIG, budget_ms=2000, log_level=log_level, connectors=[{"id": "accounts", "type": "directory", "path": "accounts.csv"}])
    if changes is not None:  # e.g. run.avail_config: the same config with availability keys
        cfg = changes(cfg)
    (workdir / "c.yaml").write_text(yaml.safe_dump(cfg))
    return create_app(str(workdir / "c.yaml"))


def per_request_us(app, ps: list[str]) -> float:
    t0 = time.perf_counter()
    for p in ps:
        call(app, p)
    return (time.perf_counter() - t0) / len(ps) * 1e6


def breakdown(app, n: int, callers: int) -> None:
    """Microseconds per call of each step dialwhom adds to a cached answer (best of three)."""
    from werkzeug.wrappers import Request

    from dialwhom.routing.deadline import Deadline
    from dialwhom.routing.request import parse_request

    rt = app.extensions["dialwhom"]
    svc = rt.service
    region = rt.settings.default_region

    def timed(name: str, fn, items) -> None:
        best = float("inf")
        for _ in range(3):
            gc.collect()
            gc.disable()  # garbage collection is measured as a whole, below
            t0 = time.perf_counter()
            for x in items:
                fn(x)
            best = min(best, (time.perf_counter() - t0) / len(items) * 1e6)
            gc.enable()
        print(f"  {name:<58} {best:6.1f} us")

    envs = [environ(p) for p in paths(n, callers, offset=500)]
    argss = [Request(e).args for e in envs]
    print("steps of a cached answer (in process):")
    timed("query string -> request.args (werkzeug, all 18 parameters)", lambda e: Request(e).args, envs)
    timed("parse_request(request.args)", lambda a: parse_request(a, region), argss)
    timed("parse_request(dict of the parameters read)", lambda a: parse_request(dict(a), region), argss)
    batch = [parse_request(a, region) for a in argss]  # each CallSid once: no best of three here
    gc.collect()
    gc.disable()
    t0 = time.perf_counter()
    decisions = [svc.decide(r, Deadline.from_ms(1975)) for r in batch]
    print(f"  {'service.decide (new CallSid, cached caller)':<58} {(time.perf_counter() - t0) / len(batch) * 1e6:6.1f} us")
    gc.enable()
    m = svc.metrics
    timed("metrics.decided (queued, tallied in batches)", lambda d: m.decided("dial-whom", d.trace.path, 0.001), decisions)
    timed("recent.record (the console's ring)", lambda d: svc.recent.record("dial-whom", batch[0], d), decisions)
    timed("trace.log_line (built even at log_level WARNING)", lambda d: d.trace.log_line("+919000000001"), decisions)
    timed("trace.header", lambda d: d.trace.header(), decisions)
    del envs, argss, batch, decisions
    # Garbage collection: the whole request with and without it.
    for label, enabled in (("whole request, garbage collector on", True), ("whole request, garbage collector off", False)):
        ps = paths(n, callers, offset=600 + enabled)
        gc.collect()
        if not enabled:
            gc.disable()
        pauses: list[float] = []
        t = {}

        def cb(phase, info):
            if phase == "start":
                t["s"] = time.perf_counter()
            elif info["generation"] == 2:
                pauses.append((time.perf_counter() - t["s"]) * 1000)

        gc.callbacks.append(cb)
        t0 = time.perf_counter()
        for p in ps:
            call(app, p)
        us = (time.perf_counter() - t0) / len(ps) * 1e6
        gc.callbacks.remove(cb)
        gc.enable()
        extra = f"; {len(pauses)} full collections of {statistics.mean(pauses):.0f} ms (max {max(pauses):.0f})" if pauses else ""
        print(f"  {label:<58} {us:6.1f} us{extra}")
    print(f"  objects tracked by the garbage collector: {len(gc.get_objects())} ({len(svc.calls)} per-call plans kept)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="requests per measurement")
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)

    from bare_app import create_app as bare_app

    with tempfile.TemporaryDirectory() as tmp:
        dw = build_dialwhom(Path(tmp), args.callers)
        bare = bare_app()
        for p in paths(args.callers, args.callers, offset=1):  # fill the lookup cache
            call(dw, p)
        results = {}
        for rnd in range(3):  # alternate, take the best of three (least disturbed)
            for name, app in (("bare Flask", bare), ("dialwhom", dw)):
                us = per_request_us(app, paths(args.n, args.callers, offset=100 + rnd))
                results[name] = min(results.get(name, us), us)
        print(f"per request, WSGI call only (best of 3 x {args.n}):")
        for name, us in results.items():
            print(f"  {name:<11} {us:7.1f} us")
        print(f"  dialwhom adds {results['dialwhom'] - results['bare Flask']:.1f} us per request")
        if args.breakdown:
            breakdown(dw, args.n, args.callers)
        if args.profile:
            prof = cProfile.Profile()
            ps = paths(args.n, args.callers, offset=999)
            prof.enable()
            for p in ps:
                call(dw, p)
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("cumulative").print_stats(args.top + 20)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
