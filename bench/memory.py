"""Memory of the lookup cache: resident size with N cached callers, and bytes per entry.

Builds a `RoutingService` as the app does, then fills its `LookupCache` through `cache.put`
with N distinct owners, each decoded from its own JSON document by the ``http`` connector's
parser (so every entry has its own strings, as after N real CRM lookups). Prints one JSON line.

    python bench/memory.py                  # RSS from /proc/self/status (VmRSS)
    python bench/memory.py --tracemalloc    # Python-level allocations, and where they come from

RSS and tracemalloc are measured in separate processes: tracemalloc's own bookkeeping would
inflate the resident size.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REPS = 50  # owners are shared among this many reps, as in a real team


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def document(i: int) -> bytes:
    """What a CRM's JSON endpoint answers for the i-th caller (the README's shape)."""
    r = i % REPS
    return json.dumps({
        "owner": {"id": f"005Rep{r:05d}AAA", "email": f"rep{r}@example.com", "name": f"Rep Number {r}", "phone": f"+9198000{r:05d}"},
        "team": "north" if r % 2 else "south",
        "record": {"type": "account", "id": f"A-{i:07d}", "name": f"Customer {i} Traders Pvt Ltd"},
    }).encode()


def caller(i: int) -> str:
    return f"+919{100000000 + i:09d}"


def full_collection_ms() -> float:
    """How long a full (generation 2) collection takes now, best of three.

    It walks every tracked object, cached entries included, holding the GIL: a request that
    meets one waits this long on top of its own time.
    """
    pauses = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - t0) * 1000)
    return round(min(pauses), 1)


def build_service():
    from dialwhom.integrations.connectors.http_json import parse_owner_document
    from dialwhom.routing.config import from_mapping
    from dialwhom.routing.service import RoutingService

    settings = from_mapping({
        "default_region": "IN",
        "fallback": ["+918000000000"],
        "reps": [{"owner": "rep0@example.com", "phone": "+919800000001", "team": "north"}],
        "teams": {"north": {"backup": ["+919800000002"]}},
    })
    return RoutingService(settings, []), parse_owner_document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--tracemalloc", action="store_true", help="measure Python allocations instead of RSS")
    parser.add_argument("--top", type=int, default=8, help="allocation sites to list with --tracemalloc")
    args = parser.parse_args(argv)

    service, parse = build_service()
    cache = service.cache
    # Warm the code paths (imports, first allocations), then forget it.
    cache.put("crm|phone:+910000000000", parse(json.loads(document(0)), "crm"))
    cache.clear()
    gc.collect()
    tracked_before = len(gc.get_objects())
    gc_before_ms = full_collection_ms()

    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
        before_snap = tracemalloc.take_snapshot()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()

    t0 = time.perf_counter()
    for i in range(args.entries):
        match = parse(json.loads(document(i)), "crm")
        cache.put(f"crm|phone:{caller(i)}", match)
    fill_s = time.perf_counter() - t0
    gc.collect()

    out = {
        "entries": args.entries,
        "gc_tracked_before": tracked_before,
        "gc_tracked_after": len(gc.get_objects()),
        "gc_full_ms_before": gc_before_ms,
        "gc_full_ms_after": full_collection_ms(),
        "cached_lookups": len(cache),
        "fill_s": round(fill_s, 2),
        "max_entries": service.settings.cache.max_entries,
    }
    if args.tracemalloc:
        import tracemalloc

        after = tracemalloc.get_traced_memory()[0]
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(before_snap, "lineno")
        top = []
        for st in stats[: args.top]:
            frame = st.traceback[0]
            name = frame.filename
            for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
                if marker in name:
                    name = name.split(marker, 1)[1]
                    break
            top.append({"where": f"{name}:{frame.lineno}", "bytes": st.size_diff, "blocks": st.count_diff})
        tracemalloc.stop()
        out.update(traced_before=before, traced_after=after, traced_per_entry=round((after - before) / max(1, args.entries), 1), top=top)
    else:
        after = rss_bytes()
        out.update(rss_before=before, rss_after=after, rss_per_entry=round((after - before) / max(1, args.entries), 1))
    print(json.dumps(out))
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
