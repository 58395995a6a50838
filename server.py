"""dialwhom's gunicorn pieces (named in `dialwhom.cli.GUNICORN_SETTINGS`).

- `ArrivalThreadWorker`: gunicorn's gthread worker that stamps each request with the moment it
  reached the server, before it waits for a free thread, into ``environ["dialwhom.arrived"]``
  (`time.monotonic()`). The app counts `budget_ms` from there, so queueing is inside the budget.
  It also keeps gunicorn's own 400/414 answers to a malformed request from echoing the request
  line (query string, token and caller number included) back to the client.
- `RedactingLogger`: gunicorn's logger with every message of its error log passed through
  `request_line_safe`: no query string, numbers and secrets masked, control characters escaped.
"""

from __future__ import annotations

import threading
import time

from gunicorn.glogging import Logger
from gunicorn.http.errors import ParseException
from gunicorn.workers.gthread import ThreadWorker

from dialwhom.app import ARRIVED_KEY
from dialwhom.routing.redact import request_line_safe


class ArrivalThreadWorker(ThreadWorker):
    """gthread, with the arrival time of each request in its environ (see the module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def enqueue_req(self, conn):
        # Runs on the main thread when a connection is accepted or becomes readable again
        # (keep-alive): the request is here now; what follows is waiting for a thread.
        conn.dialwhom_arrived = time.monotonic()
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        self._local.arrived = getattr(conn, "dialwhom_arrived", None)
        return super().handle_request(req, conn)

    def load_wsgi(self):
        super().load_wsgi()
        app, local = self.wsgi, self._local

        def stamped(environ, start_response):
            arrived = getattr(local, "arrived", None)
            if arrived is not None:
                environ[ARRIVED_KEY] = arrived
            return app(environ, start_response)

        self.wsgi = stamped

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, ParseException):  # its text quotes what the client sent
            exc = _redacted(exc)
        super().handle_error(req, client, addr, exc)


_REDACTED_CLASSES: dict[type, type] = {}


def _redacted(exc: Exception) -> Exception:
    """The same kind of error (gunicorn picks the status by class), whose text is made safe."""
    cls = type(exc)
    safe_cls = _REDACTED_CLASSES.get(cls)
    if safe_cls is None:
        safe_cls = _REDACTED_CLASSES.setdefault(cls, type(cls.__name__, (cls,), {"__str__": lambda self: self._dialwhom_text}))
    safe = safe_cls.__new__(safe_cls)
    safe.__dict__.update(exc.__dict__)
    safe.args = exc.args
    safe._dialwhom_text = request_line_safe(str(exc))
    return safe


class RedactingLogger(Logger):
    """gunicorn's logger; error-log messages lose query strings, numbers and secrets."""

    def _clean(self, msg, args) -> str:
        try:
            text = (str(msg) % args) if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        return request_line_safe(text)

    def critical(self, msg, *args, **kwargs):
        self.error_log.critical(self._clean(msg, args), **kwargs)

    def error(self, msg, *args, **kwargs):
        self.error_log.error(self._clean(msg, args), **kwargs)

    def warning(self, msg, *args, **kwargs):
        self.error_log.warning(self._clean(msg, args), **kwargs)

    def info(self, msg, *args, **kwargs):
        self.error_log.info(self._clean(msg, args), **kwargs)

    def debug(self, msg, *args, **kwargs):
        self.error_log.debug(self._clean(msg, args), **kwargs)

    def exception(self, msg, *args, **kwargs):
        self.error_log.exception(self._clean(msg, args), **kwargs)

    def log(self, lvl, msg, *args, **kwargs):
        super().log(lvl, self._clean(msg, args), **kwargs)
