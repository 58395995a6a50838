"""One gunicorn worker left to the scheduler, against the same worker pinned to one CPU.

    python bench/pinning.py              # bare Flask and dialwhom (INFO), unpinned and pinned
    python bench/pinning.py --rounds 3

A gthread worker runs Python on one core at a time (the GIL). Unpinned, its threads hop
between cores and hand the GIL across them on every request; pinned (``taskset``), they take
turns on one core. Each server runs with the production settings (as in bench/run.py, access
log off); wrk is pinned to the other CPU in the pinned runs. Printed per run: throughput, the
server's CPU time per request and its context switches per request (all threads).
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from run import DIAL_WHOM, Procs, Wrk, dialwhom_spec, warm_caches, warm_config, write_yaml  # noqa: E402


def _pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master, *map(int, out)]


def _usage(master: int) -> tuple[float, int]:
    """(CPU seconds, context switches) of the master and its workers, every thread."""
    ticks, switches = 0, 0
    for pid in _pids(master):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:  # a thread that ended meanwhile
                continue
            ticks += int(fields[11]) + int(fields[12])
            switches += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
    return ticks / os.sysconf("SC_CLK_TCK"), switches


def _pin(master: int, cpu: int) -> None:
    for pid in _pids(master):
        subprocess.run(["taskset", "-apc", str(cpu), str(pid)], capture_output=True, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--callers", type=int, default=200)
    args = parser.parse_args(argv)
    if os.cpu_count() is None or os.cpu_count() < 2:
        print("needs two CPUs: one for the server, one for wrk", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="dialwhom-pin-") as tmp:
        wd = Path(tmp)
        procs = Procs(wd)
        try:
            cfg = write_yaml(wd / "info.yaml", dict(warm_config(wd, args.callers), log_level="INFO"))
            wrapper = wd / "wrk-cpu1"
            wrapper.write_text("#!/bin/sh\nexec taskset -c 1 wrk \"$@\"\n")
            wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
            servers = {}
            for mode in ("unpinned", "pinned"):
                servers[("bare", mode)] = procs.gunicorn(f"bare-{mode}", "bench.bare_app:create_app()")
                servers[("dialwhom", mode)] = procs.gunicorn(f"dialwhom-{mode}", dialwhom_spec(cfg))
            warm_caches(args.callers, servers[("dialwhom", "unpinned")], servers[("dialwhom", "pinned")])
            for (_, mode), srv in servers.items():
                if mode == "pinned":
                    _pin(srv.popen.pid, 0)
            plain, pinned = Wrk(wd, procs.sessions), Wrk(wd, procs.sessions)
            pinned.binary = str(wrapper)
            for (name, mode), srv in servers.items():
                (pinned if mode == "pinned" else plain).run("warm-up", srv.url, DIAL_WHOM, first=0, cycle=args.callers, duration=2, connections=16)
            rps: dict[tuple[str, str], list[float]] = {}
            for r in range(1, args.rounds + 1):
                for (name, mode), srv in servers.items():
                    cpu0, sw0 = _usage(srv.popen.pid)
                    run = (pinned if mode == "pinned" else plain).run(f"{name} {mode} {r}", srv.url, DIAL_WHOM, first=0, cycle=args.callers,
                                                                       duration=args.duration, connections=16)
                    cpu1, sw1 = _usage(srv.popen.pid)
                    rps.setdefault((name, mode), []).append(run.rps)
                    print(f"  round {r}  {name:<8} {mode:<8} {run.rps:7.0f} req/s  server CPU {(cpu1 - cpu0) / run.requests * 1e6:5.0f} us/request"
                          f"  context switches {(sw1 - sw0) / run.requests:5.1f}/request", flush=True)
            best = {k: max(v) for k, v in rps.items()}
            for mode in ("unpinned", "pinned"):
                print(f"{mode}: dialwhom/bare Flask {best[('dialwhom', mode)] / best[('bare', mode)]:.3f} (best rounds)")
            for name in ("bare", "dialwhom"):
                print(f"{name}: pinned/unpinned throughput {best[(name, 'pinned')] / best[(name, 'unpinned')]:.2f}x (best rounds)")
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
