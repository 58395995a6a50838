"""What operators do to a running service besides reloading: forget a caller, and the watcher.

`forget_caller` drops one caller's cached owner from this process (every connector's fresh,
negative and stale answers, the last agent) and from Redis. With several workers the request
is posted to the run directory and each worker's `Watcher` applies it within a tick.

The `Watcher` is one daemon thread per app, ticking about once a second, off the answer path:
forget requests from other workers are applied; queued metrics are written out
(multiprocess mode) and the breaker gauges set. (A connector whose data changes, like the
``directory`` CSV, drops its own cached answers through ``context.data_changed()``.)
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from dialwhom.integrations.rundir import RunDir, caller_digest
from dialwhom.integrations.runtime import Runtime
from dialwhom.routing.model import Query

log = logging.getLogger("dialwhom.ops")

KEY = "dialwhom"
#: seconds between ticks; tests shorten it with $DIALWHOM_WATCH_S
TICK_S = float(os.environ.get("DIALWHOM_WATCH_S", "1.0"))


def forget_caller(runtime: Runtime, e164: str) -> dict[str, Any]:
    """Drop what this process (and Redis) remembers about one caller's owner."""
    service = runtime.service
    report: dict[str, Any] = {
        "cached_answers": service.cache.forget_key(Query("phone", e164).cache_key()),
        "last_agent": service.last_agents.forget(e164),
        "redis": None,
    }
    if service.shared is not None:
        try:
            report["redis"] = service.shared.forget_caller(e164)
        except Exception as exc:  # reported to the operator, who can retry
            report["redis"] = f"failed: {type(exc).__name__}"
    return report


def forget_digest(runtime: Runtime, digest: str) -> int:
    """`forget_caller` for a caller known only by `caller_digest` (another worker's request)."""
    def keep(key) -> bool:
        number = key.split("|phone:", 1)[1] if isinstance(key, str) and "|phone:" in key else key
        return not (isinstance(number, str) and caller_digest(number) == digest)

    return runtime.service.cache.drop(keep) + runtime.service.last_agents.drop(keep)


class Watcher:
    """The per-app housekeeping tick (see the module docstring)."""

    def __init__(self, app: Any, run_dir: RunDir | None = None):
        """`app`: the Flask app (held weakly: the thread ends with it)."""
        self._app = weakref.ref(app)
        self.run_dir = run_dir
        self._seen: set[str] = set()
        self._stop = threading.Event()

    def tick(self) -> None:
        app = self._app()
        if app is None:
            self._stop.set()
            return
        rt: Runtime = app.extensions[KEY]
        del app
        if self.run_dir is not None:
            for digest in self.run_dir.forget_requests(self._seen):
                forget_digest(rt, digest)
        if rt.service.metrics.multiprocess:
            rt.service.set_gauges()
            rt.service.metrics.flush()

    def start(self, interval: float = TICK_S) -> "Watcher":
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.tick()
                except Exception:
                    log.exception("watcher tick failed")

        threading.Thread(target=loop, name="dialwhom-watcher", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
