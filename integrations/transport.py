"""Below `requests`: what it takes to bound a call by its deadline at every stage.

urllib3 applies socket timeouts per recv, so a server trickling its status line and headers a
byte at a time would hold a call for hours; these connection classes arm a watchdog that shuts
the socket down at the call's deadline while headers are read. `HttpClient`
(`dialwhom.integrations.http`) sets `current.call` around each request in the calling thread.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: the call in flight in this thread (a `Deadline`), read while its headers arrive
current = threading.local()


class NoRedirectSession(requests.Session):
    """Never follows a redirect: requests would read each 3xx body itself (even with
    allow_redirects=False, to prepare `Response.next`), outside our deadline and body cap.
    A 3xx is returned as it is, read by `_read_body`, and reported as BadResponse."""

    def get_redirect_target(self, resp):
        return None


class _DeadlineConnectionMixin:
    """Waits for the status line and headers no longer than the call's deadline.

    Socket timeouts apply per recv, so a server sending its headers a byte at a time would hold
    the call (and its lookup thread and single-flight slot) for hours; a timer shuts the
    socket down at the deadline instead. The body has its own total limit (`_read_body`).
    """

    def getresponse(self, *args, **kw):
        call = getattr(current, "call", None)
        sock = getattr(self, "sock", None)
        if call is None or sock is None:
            return super().getresponse(*args, **kw)
        watch = WATCHDOG.watch(call.remaining(), sock)
        try:
            return super().getresponse(*args, **kw)
        finally:
            WATCHDOG.cancel(watch)


def _shutdown(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Watchdog:
    """Shuts sockets down at their deadlines, from one daemon thread for the whole process.

    A `threading.Timer` per call started (and ended) an OS thread on every CRM request: ~190
    us on this project's 2-core machine, in the lookup's own time. Here `watch` pushes onto a
    heap and wakes the thread only when the new deadline is the nearest; `cancel` forgets the
    id, and the entry is dropped unused when it comes up. The thread is started on first use in
    each process (so also after a fork).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()  # ids watched and neither cancelled nor done
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float, sock: Any) -> int:
        """Shut `sock` down `seconds` from now unless `cancel` comes first; the id to cancel with."""
        entry = (time.monotonic() + seconds, next(self._ids), sock)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dialwhom-http-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, entry)
            self._live.add(entry[1])
            if self._heap[0] is entry:  # the nearest deadline now: the thread must wake earlier
                self._cond.notify()
        return entry[1]

    def cancel(self, watch_id: int) -> None:
        with self._cond:
            self._live.discard(watch_id)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # cancelled: the call got its headers in time
                if not self._heap:
                    self._cond.wait()
                    continue
                when, watch_id, sock = self._heap[0]
                left = when - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(watch_id)
                _shutdown(sock)


WATCHDOG = Watchdog()


class _DeadlineHTTPConnection(_DeadlineConnectionMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnectionMixin, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour `current.call` while reading headers."""

    def init_poolmanager(self, *args, **kw) -> None:
        super().init_poolmanager(*args, **kw)
        self.poolmanager.pool_classes_by_scheme = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


def set_read_timeout(stream, seconds: float) -> None:
    """Reset the socket timeout to the time left, so a trickle cannot outlast the deadline."""
    conn = getattr(stream, "_connection", None) or getattr(stream, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(0.001, seconds))
        except OSError:
            pass
