"""Instructions per cached answer, counted by valgrind: dialwhom against the bare Flask app.

    python bench/instructions.py            # both apps, about a minute on 2 cores

Request throughput on a shared machine moves by 10-30% from one run to the next; the number
of instructions a request executes does not (callgrind counts them, whatever else the machine
does). Each app serves N and then 2N requests in process (WSGI calls, as in
bench/profile_warm.py); the difference divided by N is the cost of one request, with startup
and the first requests cancelled out. gunicorn's own work per request is the same for both
apps and is not counted here (see bench/RESULTS.md for how the two figures relate).

The background threads that run by wall time (the CSV watcher, the housekeeping tick) are off,
so a count repeats exactly for the same code. The INFO figure still moves: the decision lines
are written by a thread every 0.1 s, and under valgrind (about 50 times slower) each flush
carries a few lines instead of a hundred, so its fixed cost is spread over fewer answers than
in a real run. Periodic work on the request thread (tallies every 256 answers, cache
evictions) makes -n 300 and -n 1000 differ by up to ~10%: compare counts made with the same -n.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

APPS = ("bare", "dialwhom", "dialwhom-info", "dialwhom-repeat", "dialwhom-avail")


def _no_watch(cfg: dict) -> dict:
    """No CSV watcher thread: it runs by wall time, and under valgrind its share of a request
    moved the count by tens of thousands from run to run (so does the housekeeping tick, turned
    off by DIALWHOM_WATCH_S in `count`)."""
    cfg["connectors"] = [dict(c, reload=False) for c in cfg["connectors"]]
    return cfg


def serve(which: str, n: int) -> None:
    """Run inside valgrind: build one app, then answer `n` requests."""
    from profile_warm import build_dialwhom, call, paths

    if which == "bare":
        from bare_app import create_app

        app = create_app()
    elif which == "dialwhom-avail":  # hours, leave, holidays and a busy ledger (issue 11)
        from run import avail_config

        app = build_dialwhom(Path(tempfile.mkdtemp()), 200, changes=lambda c: _no_watch(avail_config(c)))
        service = app.extensions["dialwhom"].service
        for number, status in (("09800000003", "busy"), ("09800000002", "free"), ("09800000001", "busy")):
            service.record_agent_event(None, number, status)
        for p in paths(200, 200, offset=1):
            call(app, p)
    else:
        app = build_dialwhom(Path(tempfile.mkdtemp()), 200, log_level="INFO" if which == "dialwhom-info" else "WARNING",
                             changes=_no_watch)
        for p in paths(200, 200, offset=1):  # every caller in the lookup cache
            call(app, p)
    ps = paths(n + 200, 200, offset=5)
    if which == "dialwhom-repeat":  # one CallSid: the per-call plan answers
        ps = [re.sub(r"CallSid=\w+", "CallSid=repeat0001", p) for p in ps]
    for p in ps[:200]:  # warm every path through the code before counting
        call(app, p)
    gc.collect()
    gc.freeze()
    for p in ps[200:]:
        call(app, p)


def count(which: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, "--serve", which, str(n)],
        capture_output=True, text=True, check=True,
        # a fixed string hash: dict and set layouts, and so the count, the same run to run
        env=dict(os.environ, PYTHONHASHSEED="0", DIALWHOM_WATCH_S="100000"))
    m = re.search(r"Collected : (\d+)", out.stderr)
    if not m:
        raise RuntimeError(f"no count from valgrind: {out.stderr[-500:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="requests per measurement")
    parser.add_argument("--serve", nargs=2, metavar=("APP", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    jobs = [(app, k * args.n) for app in APPS for k in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        counts = dict(zip(jobs, pool.map(lambda j: count(*j), jobs), strict=True))
    per = {app: (counts[(app, 2 * args.n)] - counts[(app, args.n)]) / args.n for app in APPS}
    print(f"instructions per request, in process (valgrind callgrind, {args.n} requests):")
    for app in APPS:
        print(f"  {app:<16} {per[app]:9,.0f}")
    print(f"  dialwhom adds {per['dialwhom'] - per['bare']:,.0f} per cached answer ({per['dialwhom'] / per['bare']:.2f}x bare Flask);"
          f" {per['dialwhom-repeat'] - per['bare']:,.0f} per repeat request of a call;"
          f" log_level INFO (a decision line per answer) adds {per['dialwhom-info'] - per['dialwhom']:,.0f} more")
    print(f"  with availability configured (hours, leave, busy ledger): {per['dialwhom-avail'] - per['dialwhom']:+,.0f}"
          f" per cached answer ({per['dialwhom-avail'] / per['dialwhom']:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
