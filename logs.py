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

from dialwhom.routing.redact import mask

FLUSH_S = 0.1
#: the current format, read by every formatter per record, so a reload switches them all
_STATE = {"json": False}


def set_format(fmt: str) -> None:
    _STATE["json"] = fmt == "json"


def is_json() -> bool:
    return _STATE["json"]


class DecisionMessage:
    """The one line per answer, built only when written (off the request thread)."""

    __slots__ = ("trace", "caller", "endpoint")

    def __init__(self, trace: Any, caller: str | None, endpoint: str):
        self.trace, self.caller, self.endpoint = trace, caller, endpoint

    def __str__(self) -> str:
        return self.trace.log_line(self.caller, self.endpoint)

    def fields(self) -> dict[str, Any]:
        t = self.trace
        from dialwhom.routing.trace import scrub

        return {
            "event": "decision", "call": t.call_sid, "caller": mask(self.caller), "path": t.path, "key": t.key,
            "via": t.connector, "plan": t.plan, "steps": [s.short() for s in t.steps],
            "notes": [scrub(n) for n in t.notes], "elapsed_ms": round(t.elapsed_ms, 1), "cfg": t.config or None,
            "endpoint": self.endpoint,
        }


_SECOND: list = [-1, ""]  # the last whole second formatted, and its text


def timestamp(created: float) -> str:
    """UTC ISO 8601 to the millisecond; the seconds part formatted once per second."""
    whole = int(created)
    if whole != _SECOND[0]:
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND[0] = whole
    return f"{_SECOND[1]}.{int((created - whole) * 1000):03d}Z"


def log_decision(logger: logging.Logger, trace: Any, caller: str | None, endpoint: str) -> None:
    """The decision line of one answer (the caller checked ``isEnabledFor(INFO)``).

    Through `setup`'s handler it costs the request one deque append: no LogRecord (finding the
    caller's frame, thread and process names: more than the rest of a cached answer's logging),
    no formatting; the writer thread does the rest. Elsewhere (tests, embedders with their own
    handlers) it is an ordinary ``logger.info``.
    """
    handler = _handler
    if handler is not None and handler.direct:
        # Only queued: the writer formats a batch of lines in one tight loop, where the code
        # and data stay in the CPU's caches. The trace is final once the answer is made, and
        # the console's ring (routing/recent.py) keeps it alive anyway.
        handler.queue.append((time.time(), trace, caller, endpoint))
        if handler.pid != _PID[0]:
            handler.start()
    else:
        logger.info(DecisionMessage(trace, caller, endpoint))


_PID = [os.getpid()]  # os.getpid() is a system call; this is refreshed in a forked child
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class Formatter(logging.Formatter):
    """Text or JSON, as `set_format` last said; UTC ISO 8601 timestamps to the millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return timestamp(record.created)

    def format_decision(self, created: float, line: str, fields: dict[str, Any] | None) -> str:
        """A queued decision line (`log_decision`), as `format` would write its record."""
        if fields is None:
            return f"{timestamp(created)} INFO dialwhom.decision {line}"
        obj: dict[str, Any] = {"ts": timestamp(created), "level": "INFO", "logger": "dialwhom.decision"}
        obj.update(fields)
        obj["msg"] = line
        return json.dumps(obj, default=str)

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

    def __init__(self, stream=None, flush_s: float = FLUSH_S, *, direct: bool = True):
        super().__init__()
        self.stream = stream
        self.flush_s = flush_s
        #: records, and (time, trace, caller, endpoint) queued by `log_decision`
        self.queue: deque = deque()
        #: accept decision lines straight from `log_decision` (no LogRecord)
        self.direct = direct
        self.pid = -1
        self._wake = threading.Event()
        self.setFormatter(Formatter())
        atexit.register(self.flush)

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if record.levelno < self.level:
            return False
        self.queue.append(record)  # atomic under the GIL
        if self.pid != _PID[0]:  # first record in this process (or after a fork)
            self.start()
        return True

    emit = handle  # type: ignore[assignment]

    def start(self) -> None:
        """The writer thread of this process (again after a fork: threads do not survive it)."""
        with self.lock:
            if self.pid == _PID[0]:
                return
            self.pid = _PID[0]
            threading.Thread(target=self._run, name="dialwhom-log", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self.flush()

    def flush(self) -> None:
        """Write everything queued, in one write."""
        if not self.queue:
            return
        with self.lock:
            lines = []
            formatter = self.formatter if isinstance(self.formatter, Formatter) else Formatter()
            while self.queue:
                item = self.queue.popleft()
                try:
                    if isinstance(item, tuple):  # (time, trace, caller, endpoint) from log_decision
                        created, trace, caller, endpoint = item
                        fields = DecisionMessage(trace, caller, endpoint).fields() if _STATE["json"] else None
                        lines.append(formatter.format_decision(created, trace.log_line(caller, endpoint), fields))
                    else:
                        lines.append(self.format(item))
                except Exception:  # a bad record must not stop the others
                    lines.append(f"(unformattable log record from {getattr(item, 'name', 'dialwhom.decision')})")
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
