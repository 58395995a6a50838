"""One log format for dialwhom's lines, gunicorn's error log and its access log.

``log_format: text`` (default): ``2026-12-01T10:00:00.123Z INFO dialwhom.decision decision call=…``.
``log_format: json``: one JSON object per line, ``{"ts", "level", "logger", "msg", …}``; a
decision line carries its fields as keys (``call``, ``caller`` masked, ``path``, ``key``,
``via``, ``plan``, ``steps``, ``elapsed_ms``, ``cfg``, ``endpoint``), an access line
``remote``, ``method``, ``path`` (never the query string), ``status``, ``bytes``, ``ms``.

The decision line must be cheap (a line per answer): a request only appends its record to a
queue; a writer thread formats the queue and writes it in one ``write`` every
`FLUSH_S`. A write on the request thread gives up the GIL, and with 32 threads getting it
back costs more than the whole answer (bench/RESULTS.md).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import Any

from dialwhom.routing.phones import mask

FLUSH_S = 0.1
#: the current format, read by every formatter per record, so a reload switches them all
_STATE = {"json": False}


def set_format(fmt: str) -> None:
    _STATE["json"] = fmt == "json"


class DecisionMessage:
    """The one line per answer, built only when written (off the request thread)."""

    __slots__ = ("trace", "caller", "endpoint")

    def __init__(self, trace: Any, caller: str | None, endpoint: str):
        self.trace, self.caller, self.endpoint = trace, caller, endpoint

    def __str__(self) -> str:
        return f"{self.trace.log_line(self.caller)} endpoint={self.endpoint}"

    def fields(self) -> dict[str, Any]:
        t = self.trace
        from dialwhom.routing.trace import scrub

        return {
            "event": "decision", "call": t.call_sid, "caller": mask(self.caller), "path": t.path, "key": t.key,
            "via": t.connector, "plan": t.plan, "steps": [s.short() for s in t.steps],
            "notes": [scrub(n) for n in t.notes], "elapsed_ms": round(t.elapsed_ms, 1), "cfg": t.config or None,
            "endpoint": self.endpoint,
        }


class Formatter(logging.Formatter):
    """Text or JSON, as `set_format` last said; UTC ISO 8601 timestamps to the millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        if not _STATE["json"]:
            line = f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
            if record.exc_info:
                line += "\n" + self.formatException(record.exc_info)
            return line
        obj: dict[str, Any] = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name}
        msg = record.msg
        if isinstance(msg, DecisionMessage):
            obj.update(msg.fields())
        fields = getattr(record, "fields", None)
        if fields:
            obj.update(fields)
        obj["msg"] = record.getMessage()
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


class BatchHandler(logging.Handler):
    """Queues records (no lock, no I/O on the caller's thread); a thread writes them in batches."""

    def __init__(self, stream=None, flush_s: float = FLUSH_S):
        super().__init__()
        self.stream = stream
        self.flush_s = flush_s
        self._queue: deque[logging.LogRecord] = deque()
        self._pid = -1
        self._wake = threading.Event()
        self.setFormatter(Formatter())
        atexit.register(self.flush)

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if record.levelno < self.level:
            return False
        self._queue.append(record)  # atomic under the GIL
        if self._pid != os.getpid():  # first record in this process (or after a fork)
            self._start()
        return True

    emit = handle  # type: ignore[assignment]

    def _start(self) -> None:
        with self.lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="dialwhom-log", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self.flush()

    def flush(self) -> None:
        """Write everything queued, in one write."""
        if not self._queue:
            return
        with self.lock:
            lines = []
            while self._queue:
                record = self._queue.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:  # a bad record must not stop the others
                    lines.append(f"(unformattable log record from {record.name})")
            stream = self.stream or sys.stderr
            try:
                stream.write("\n".join(lines) + "\n")
                stream.flush()
            except (OSError, ValueError):  # stream closed at shutdown
                pass


_handler: BatchHandler | None = None


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """dialwhom's loggers at `level`, written through one `BatchHandler` in format `fmt`."""
    global _handler
    set_format(fmt)
    root = logging.getLogger()
    if _handler is None and not root.handlers:  # tests (pytest's capture) and embedders bring their own
        _handler = BatchHandler()
        root.addHandler(_handler)
        root.setLevel(logging.WARNING)
    logging.getLogger("dialwhom").setLevel(level)
    # The dev server's access log prints full query strings: phone numbers and the token.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def flush() -> None:
    if _handler is not None:
        _handler.flush()


try:  # gunicorn is a dependency, but keep dialwhom.logs importable without it
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover
    _GunicornLogger = object  # type: ignore[misc,assignment]


class GunicornLogger(_GunicornLogger):  # type: ignore[misc,valid-type]
    """gunicorn's error and access logs in dialwhom's format (``logger_class`` setting)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for h in logger.handlers:
                h.setFormatter(Formatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not _STATE["json"]:
            return super().access(resp, req, environ, request_time)
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return None
        atoms = self.atoms(resp, req, environ, request_time)
        fields = {"event": "access", "remote": atoms.get("h"), "method": atoms.get("m"), "path": atoms.get("U"),
                  "status": atoms.get("s"), "bytes": atoms.get("B"), "ms": atoms.get("M")}
        try:
            self.access_log.info("%s %s %s", atoms.get("m"), atoms.get("U"), atoms.get("s"), extra={"fields": fields})
        except Exception:
            self.error("Failed to log access")
