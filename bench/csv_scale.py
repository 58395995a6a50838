"""The ``directory`` connector at scale: start time and memory for a million-row CSV, and
lookup latency while the same file is reloaded on the watcher thread.

    python bench/csv_scale.py                       # 1,000,000 rows, numbers written +91...
    python bench/csv_scale.py --formats mixed       # numbers as people type them (098765 43210, ...)
    python bench/csv_scale.py --rows 200000 --keep  # smaller; keep the generated file

Each measurement runs in a fresh process so resident size is the connector's alone: RSS before
(interpreter + dialwhom imported), after the index is built, and the peak (VmHWM). Start is
given as wall time and as the process's CPU time (the fairer figure on a busy machine). Targets
(issue 15): start under 10 s, under 200 MB. Prints one JSON line per format.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 10.0
TARGET_MB = 200.0
OWNERS = 50


def generate(path: Path, rows: int, formats: str, seed: int = 7) -> None:
    """`rows` accounts, one or two numbers each, owners shared among `OWNERS` reps."""
    rnd = random.Random(seed)
    national = lambda: f"{rnd.choice('6789')}{rnd.randrange(10**9):09d}"  # noqa: E731
    typed = (lambda n: f"+91{n}", lambda n: f"0{n[:5]} {n[5:]}", lambda n: n, lambda n: f"+91-{n[:5]}-{n[5:]}")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("account_id,account_name,phones,owner\n")
        for i in range(rows):
            numbers = [national() for _ in range(1 + (i % 3 == 0))]
            if formats == "e164":
                phones = ";".join(f"+91{n}" for n in numbers)
            else:
                phones = ";".join(typed[(i + k) % len(typed)](n) for k, n in enumerate(numbers))
            fh.write(f"ACC-{i:07d},Account {i} Pvt Ltd,{phones},rep{i % OWNERS}@example.com\n")


def status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def measure(path: str) -> dict:
    """In this (fresh) process: build the connector, then time lookups during a reload."""
    import gc
    import threading

    from dialwhom.integrations.base import ConnectorContext
    from dialwhom.integrations.connectors.directory import DirectoryConnector
    from dialwhom.routing.deadline import Deadline
    from dialwhom.routing.model import Query
    from dialwhom.testing import build_connector

    gc.collect()
    before = status_kb("VmRSS")
    t0, cpu0 = time.perf_counter(), time.process_time()
    conn = build_connector(DirectoryConnector, {"path": path, "reload": False}, context=ConnectorContext(id="bench"))
    start_s, start_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    gc.collect()
    after = status_kb("VmRSS")
    peak = status_kb("VmHWM")
    index = conn._index
    rnd = random.Random(1)
    known = [f"+{index.phones[rnd.randrange(len(index.phones))]}" for _ in range(2000)]
    deadline = Deadline(10.0)

    def lookups(n: int) -> list[float]:
        out = []
        for i in range(n):
            q = Query("phone", known[i % len(known)])
            t = time.perf_counter()
            assert conn.lookup(q, deadline=deadline) is not None
            out.append((time.perf_counter() - t) * 1e6)
        return out

    quiet = sorted(lookups(20000))
    # A reload of the same file on another thread, as the watcher does it: the answer path keeps reading the old index.
    os.utime(path)
    conn.refresh()
    loader = threading.Thread(target=conn.refresh)
    t1 = time.perf_counter()
    loader.start()
    during: list[float] = []
    while loader.is_alive():
        during.extend(lookups(200))
        time.sleep(0.001)  # a caller every millisecond or so, not a busy loop
    reload_s = time.perf_counter() - t1
    during.sort()
    conn.close()
    pct = lambda xs, p: round(xs[min(len(xs) - 1, int(len(xs) * p))], 1)  # noqa: E731
    return {
        "rows": index.rows, "numbers": len(index.phones),
        "start_s": round(start_s, 2), "start_cpu_s": round(start_cpu_s, 2), "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
        "index_mb": round((after - before) / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
        "lookup_us_p50": pct(quiet, 0.5), "lookup_us_p99": pct(quiet, 0.99),
        "reload_s": round(reload_s, 2), "during_reload_lookup_us_p50": pct(during, 0.5),
        "during_reload_lookup_us_p99": pct(during, 0.99), "during_reload_lookups": len(during),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--formats", default="e164,mixed", help="e164 (all +91...), mixed (as people type them), or both, comma-separated")
    ap.add_argument("--keep", action="store_true", help="keep the generated CSV files")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this file in this process
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="dialwhom-csv-"))
    for formats in args.formats.split(","):
        path = tmp / f"accounts-{formats}.csv"
        t = time.perf_counter()
        generate(path, args.rows, formats)
        gen_s = time.perf_counter() - t
        out = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, check=True)
        result = {"formats": formats, "file_mb": round(path.stat().st_size / 2**20, 1), "generate_s": round(gen_s, 1), **json.loads(out.stdout)}
        result["meets_start"] = result["start_s"] < TARGET_S
        result["meets_memory"] = result["rss_after_mb"] < TARGET_MB
        print(json.dumps(result))
        if not args.keep:
            path.unlink()
    if not args.keep:
        tmp.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
