"""A misbehaving CRM-shaped HTTP server for tests and benchmarks (issue #3, "never keep the caller waiting").

It serves the ``http`` connector's JSON (README, "Connectors") for a phone -> owner dataset, on real sockets
(127.0.0.1, port 0, one thread per connection), and misbehaves on demand. The mode can be switched
at runtime: ``srv.mode = "hang"`` in process, ``POST /_mode?mode=hang`` from outside.

In tests::

    with FaultServer({"+919876543210": {"email": "asha@example.com"}}) as srv:
        url = srv.url + "/owner?phone={phone}"   # or srv.template
        srv.mode = "500"
        srv.count("+919876543210")               # requests the server got for that number

From the command line (benchmarks): ``python tests/faultserver.py --port 0 --mode ok`` prints
the base URL on its first line and serves until interrupted.

Modes (``FaultServer.MODES``):

=====================  =========================================================================
``ok``                 200 JSON owner document; 404 for an unknown number
``slow:<ms>``          like ``ok`` after ``<ms>`` milliseconds
``hang``               reads the request, never answers (until the client leaves or the server stops)
``trickle``            status and headers at once, then one body byte every ``trickle_interval`` s
``trickle_headers``    the status line and headers one byte every ``trickle_interval`` s, forever
``429``                429 with ``Retry-After: 120``
``429_short``          429 with ``Retry-After: 0``
``500``                500 with a JSON error body
``500_then_ok[:n]``    the first ``n`` (default 1) requests after the switch get 500, then ``ok``
``401_then_ok[:n]``    the first ``n`` (default 1) requests after the switch get 401, then ``ok``
``status:<code>``      that status with a small JSON body (400, 403, 404, 422, 503, ...)
``html``               200 ``text/html`` error page (a proxy's or an SSO login page)
``badjson``            200 ``application/json`` that is not JSON
``huge``               200 JSON of ``huge_bytes`` (default 3 MiB) with a Content-Length
``huge_chunked``       the same, chunked (no Content-Length: the cap must hold while reading)
``gzip_bomb``          200 ``Content-Encoding: gzip``: ~16 KiB on the wire, 16 MiB once decoded
``redirect_trickle``   302 to ``ok`` whose own body trickles (redirects must not defeat the deadline)
``reset``              reads the request, then closes with a TCP RST
``close``              reads the request, then closes cleanly without a word
``garbage``            answers bytes that are not HTTP, then closes
=====================  =========================================================================

Control endpoints (never counted, never misbehave): ``POST /_mode?mode=<mode>``, ``GET /_mode``,
``GET /_stats`` (JSON counts), ``POST /_reset`` (zero the counts), ``POST /_owners`` (JSON
``{phone: owner-or-document-or-null}`` merged into the dataset).
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FaultServer", "DEFAULT_OWNERS", "MODES"]

#: phone (E.164) -> owner (or a whole document with an "owner" key); what ``ok`` serves by default
DEFAULT_OWNERS: dict[str, dict[str, Any]] = {
    "+919876543210": {
        "owner": {"id": "u-17", "email": "asha@example.com", "name": "Asha", "phone": "+919800000001"},
        "team": "north",
        "record": {"type": "account", "id": "A-1", "name": "Acme"},
    },
    "+919876500001": {
        "owner": {"id": "u-18", "email": "ravi@example.com", "name": "Ravi", "phone": "+919800000005"},
        "team": "south",
        "record": {"type": "account", "id": "A-2", "name": "Globex"},
    },
}

MODES = (
    "ok", "slow:<ms>", "hang", "trickle", "trickle_headers", "429", "429_short", "500",
    "500_then_ok[:n]", "401_then_ok[:n]", "status:<code>", "html", "badjson", "huge", "huge_chunked", "gzip_bomb",
    "redirect_trickle", "reset", "close", "garbage",
)
_SIMPLE = {m for m in MODES if ":" not in m and "[" not in m}
_CONTROL_PREFIX = "/_"

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p></body></html>\n"
)


def parse_mode(mode: str) -> tuple[str, int | None]:
    """``"slow:250"`` -> ``("slow", 250)``; raises ValueError for an unknown mode."""
    mode = str(mode).strip()
    name, _, arg = mode.partition(":")
    if name in ("slow", "status"):
        if not arg.isdigit():
            raise ValueError(f"mode {name!r} needs a number, e.g. {name}:250")
        return name, int(arg)
    if name in ("500_then_ok", "401_then_ok"):
        if arg and not arg.isdigit():
            raise ValueError(f"mode {name!r} takes an optional count, e.g. {name}:2")
        return name, int(arg) if arg else 1
    if arg or name not in _SIMPLE:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    return name, None


_BOMB: list[bytes] = []


def _gzip_bomb() -> bytes:
    if not _BOMB:
        import gzip

        _BOMB.append(gzip.compress(b'{"owner": null, "padding": "' + b"0" * (16 * 1024 * 1024) + b'"}', compresslevel=6))
    return _BOMB[0]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    owner: "FaultServer"

    def handle_error(self, request, client_address) -> None:
        # Clients giving up on a hanging or trickling answer is the point of this server: quiet.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed
    disable_nagle_algorithm = True  # no delayed-ACK stall between the header and body writes
    server: _Server

    # -- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle plus the client's
        # delayed ACK adds 40 ms to every keep-alive answer, which would look like a slow CRM.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: tests read counts, not logs
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        fs = self.server.owner
        parts = urlsplit(self.path)
        if parts.path.startswith(_CONTROL_PREFIX):
            self._control(parts.path, parse_qs(parts.query))
            return
        query = parse_qs(parts.query)
        phone = (query.get("phone") or query.get("key") or [None])[0]
        if phone is None and parts.path.count("/") >= 2:  # /owner/<phone> templates
            phone = unquote(parts.path.rsplit("/", 1)[1]) or None
        self._drain_body()
        name, arg, nth = fs._record(parts.path, phone, self.headers)
        getattr(self, f"_mode_{name.replace('_then_ok', '_then')}")(arg, nth, phone)

    def _drain_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            self.rfile.read(int(length))

    def _send(self, status: int, body: bytes, ctype: str = "application/json", extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any, extra: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", extra)

    def _raw(self, data: bytes) -> bool:
        try:
            self.connection.sendall(data)
            return True
        except OSError:
            return False

    def _wait(self, seconds: float | None) -> bool:
        """Sleep up to `seconds` (None: forever); False as soon as the server stops or the client leaves."""
        fs = self.server.owner
        end = None if seconds is None else time.monotonic() + seconds
        while True:
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0:
                return True
            if fs._stopping.wait(0):
                return False
            try:
                readable, _, _ = select.select([self.connection], [], [], left)
            except (OSError, ValueError):
                return False
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return False  # the client closed its end
                except OSError:
                    return False
                time.sleep(left)  # pipelined bytes: not our concern, keep waiting

    def _stop_talking(self) -> None:
        self.close_connection = True

    # -- the dataset --------------------------------------------------------------------------

    def _document(self, phone: str | None) -> tuple[int, Any]:
        doc = self.server.owner.document(phone)
        return (404, {"error": "not found"}) if doc is None else (200, doc)

    # -- modes --------------------------------------------------------------------------------

    def _mode_ok(self, arg, nth, phone) -> None:
        self._json(*self._document(phone))

    def _mode_slow(self, ms, nth, phone) -> None:
        if self._wait(ms / 1000.0):
            self._mode_ok(None, nth, phone)
        else:
            self._stop_talking()

    def _mode_hang(self, arg, nth, phone) -> None:
        self._wait(None)
        self._stop_talking()

    def _mode_trickle(self, arg, nth, phone) -> None:
        status, doc = self._document(phone)
        body = json.dumps(doc).encode()
        body += b" " * 100_000  # long enough to trickle for hours at one byte per interval
        head = (
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._trickle(head, body)

    def _trickle(self, head: bytes, body: bytes) -> None:
        """Send `head` at once, then `body` one byte every trickle_interval."""
        self._stop_talking()
        if not self._raw(head):
            return
        interval = self.server.owner.trickle_interval
        for i in range(len(body)):
            if not self._raw(body[i:i + 1]) or not self._wait(interval):
                return

    def _mode_trickle_headers(self, arg, nth, phone) -> None:
        self._stop_talking()
        interval = self.server.owner.trickle_interval
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: "
        for i in range(len(head)):
            if not self._raw(head[i:i + 1]) or not self._wait(interval):
                return
        while self._raw(b"a") and self._wait(interval):  # one endless header value
            pass

    def _mode_429(self, arg, nth, phone) -> None:
        self._json(429, {"error": "rate limited"}, {"Retry-After": "120"})

    def _mode_429_short(self, arg, nth, phone) -> None:
        self._json(429, {"error": "rate limited"}, {"Retry-After": "0"})

    def _mode_500(self, arg, nth, phone) -> None:
        self._json(500, {"error": "internal server error"})

    def _mode_500_then(self, n, nth, phone) -> None:
        if nth <= n:
            self._mode_500(None, nth, phone)
        else:
            self._mode_ok(None, nth, phone)

    def _mode_401_then(self, n, nth, phone) -> None:
        if nth <= n:
            self.server.owner._count_401()
            self._json(401, {"error": "token expired"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        else:
            self._mode_ok(None, nth, phone)

    def _mode_status(self, code, nth, phone) -> None:
        if code == 404:
            self._json(404, {"error": "not found"})
        else:
            self._json(code, {"error": f"status {code}"})

    def _mode_html(self, arg, nth, phone) -> None:
        self._send(200, HTML_PAGE, "text/html; charset=utf-8")

    def _mode_badjson(self, arg, nth, phone) -> None:
        self._send(200, b'{"owner": {"email": "asha@example.com",', "application/json")

    def _huge_body(self) -> bytes:
        size = self.server.owner.huge_bytes
        head = b'{"owner": null, "padding": "'
        return head + b"x" * max(0, size - len(head) - 2) + b'"}'

    def _mode_huge(self, arg, nth, phone) -> None:
        self._send(200, self._huge_body())

    def _mode_huge_chunked(self, arg, nth, phone) -> None:
        body = self._huge_body()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        step = 64 * 1024
        for i in range(0, len(body), step):
            piece = body[i:i + step]
            if not self._raw(b"%x\r\n%s\r\n" % (len(piece), piece)):
                self._stop_talking()
                return
        self._raw(b"0\r\n\r\n")

    def _mode_gzip_bomb(self, arg, nth, phone) -> None:
        self._send(200, _gzip_bomb(), "application/json", {"Content-Encoding": "gzip"})

    def _mode_redirect_trickle(self, arg, nth, phone) -> None:
        body = b" " * 100_000
        head = (
            "HTTP/1.1 302 Found\r\nLocation: /owner?phone=redirected\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._trickle(head, body)

    def _mode_reset(self, arg, nth, phone) -> None:
        self._stop_talking()
        try:  # SO_LINGER (on, 0 s): close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _mode_close(self, arg, nth, phone) -> None:
        self._stop_talking()

    def _mode_garbage(self, arg, nth, phone) -> None:
        self._stop_talking()
        self._raw(b"\x00\xffSSH-2.0-OpenSSH_9.6\r\n\x16\x03\x01 not http at all \xde\xad\xbe\xef\r\n\r\n")

    # -- control ------------------------------------------------------------------------------

    def _control(self, path: str, query: dict[str, list[str]]) -> None:
        fs = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            if path == "/_mode":
                if self.command in ("POST", "PUT") and query.get("mode"):
                    fs.mode = query["mode"][0]
                self._json(200, {"mode": fs.mode})
            elif path == "/_stats":
                self._json(200, fs.stats())
            elif path == "/_reset" and self.command in ("POST", "PUT"):
                fs.reset_counts()
                self._json(200, fs.stats())
            elif path == "/_owners" and self.command in ("POST", "PUT"):
                for phone, doc in json.loads(body or b"{}").items():
                    fs.set_owner(phone, doc)
                self._json(200, {"owners": len(fs.owners)})
            else:
                self._json(404, {"error": f"no control endpoint {self.command} {path}"})
        except ValueError as exc:
            self._json(400, {"error": str(exc)})


class FaultServer:
    """A CRM-shaped server on 127.0.0.1 that misbehaves on demand; see the module docstring."""

    def __init__(
        self,
        owners: Mapping[str, Any] | None = None,
        *,
        mode: str = "ok",
        host: str = "127.0.0.1",
        port: int = 0,
        trickle_interval: float = 0.2,
        huge_bytes: int = 3 * 1024 * 1024,
    ):
        self.host = host
        self._port = port
        self.trickle_interval = trickle_interval
        self.huge_bytes = huge_bytes
        self._lock = threading.Lock()
        self.owners: dict[str, Any] = {}
        for phone, doc in (DEFAULT_OWNERS if owners is None else owners).items():
            self.set_owner(phone, doc)
        self._mode = "ok"
        self._parsed: tuple[str, int | None] = ("ok", None)
        self._since_switch = 0
        self.mode = mode
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self.reset_counts()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "FaultServer":
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self.host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="faultserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop at once, even with hanging or trickling connections open."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:  # wake keep-alive handlers blocked reading the next request
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)

    close = stop

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- where ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FaultServer is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def template(self) -> str:
        """The ``http`` connector's ``url`` for this server."""
        return self.url + "/owner?phone={phone}"

    def owner_url(self, phone: str) -> str:
        """The URL the ``http`` connector would call for `phone` (E.164)."""
        from urllib.parse import quote

        return f"{self.url}/owner?phone={quote(phone, safe='')}"

    # -- behaviour -----------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        parsed = parse_mode(value)
        if parsed[0] == "gzip_bomb":
            _gzip_bomb()  # build it now, not while a client's deadline runs
        with self._lock:
            self._mode = str(value).strip()
            self._parsed = parsed
            self._since_switch = 0  # "first n requests" modes count from the switch
            self.unauthorized_sent = 0

    def set_owner(self, phone: str, doc: Any) -> None:
        """Serve `doc` for `phone`: an owner dict, a whole document (with "owner"), or None (forget)."""
        with self._lock:
            if doc is None:
                self.owners.pop(phone, None)
            elif isinstance(doc, Mapping) and "owner" in doc:
                self.owners[phone] = dict(doc)
            else:
                self.owners[phone] = {"owner": dict(doc)}

    def document(self, phone: str | None) -> Any | None:
        with self._lock:
            return None if phone is None else self.owners.get(phone)

    # -- what happened -------------------------------------------------------------------------

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_path: Counter[str] = Counter()
            self.by_phone: Counter[str] = Counter()
            self.connections = 0
            self.unauthorized_sent = 0
            self._auth: deque[str | None] = deque(maxlen=1000)  # bounded: benchmarks send millions

    @property
    def auth_headers(self) -> list[str | None]:
        """The Authorization header of each request (None when absent), oldest first (last 1000)."""
        with self._lock:
            return list(self._auth)

    def count(self, phone: str | None = None, *, path: str | None = None) -> int:
        """Requests received (not control ones): all, for one phone, or for one path."""
        with self._lock:
            if phone is not None:
                return self.by_phone[phone]
            if path is not None:
                return self.by_path[path]
            return self.requests

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self._mode,
                "requests": self.requests,
                "connections": self.connections,
                "open_connections": len(self._open),
                "unauthorized_sent": self.unauthorized_sent,
                "by_path": dict(self.by_path),
                "by_phone": dict(self.by_phone),
            }

    def wait_for_requests(self, n: int, timeout: float = 2.0) -> bool:
        """Until at least `n` requests arrived (for tests racing a background call)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count() >= n:
                return True
            time.sleep(0.005)
        return self.count() >= n

    # -- called by the handler -----------------------------------------------------------------

    def _record(self, path: str, phone: str | None, headers: Mapping[str, str]) -> tuple[str, int | None, int]:
        with self._lock:
            self.requests += 1
            self.by_path[path] += 1
            if phone is not None:
                self.by_phone[phone] += 1
            self._auth.append(headers.get("Authorization"))
            self._since_switch += 1
            name, arg = self._parsed
            return name, arg, self._since_switch

    def _count_401(self) -> None:
        with self._lock:
            self.unauthorized_sent += 1

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A misbehaving CRM-shaped HTTP server (prints its URL, serves until interrupted).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="ok", help="one of: " + ", ".join(MODES))
    parser.add_argument("--owners", help="JSON file {phone: owner-or-document}; default: a small built-in dataset")
    parser.add_argument("--trickle-interval", type=float, default=0.2, help="seconds between trickled bytes")
    parser.add_argument("--huge-bytes", type=int, default=3 * 1024 * 1024)
    args = parser.parse_args(argv)
    try:
        parse_mode(args.mode)
    except ValueError as exc:
        parser.error(str(exc))
    owners = None
    if args.owners:
        with open(args.owners, encoding="utf-8") as fh:
            owners = json.load(fh)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before any thread starts (some sandboxes need that)
        signal.signal(sig, lambda *_: done.set())
    srv = FaultServer(owners, mode=args.mode, host=args.host, port=args.port,
                      trickle_interval=args.trickle_interval, huge_bytes=args.huge_bytes).start()
    print(srv.url, flush=True)
    print(f"# template: {srv.template}  control: POST {srv.url}/_mode?mode=hang  stats: GET {srv.url}/_stats",
          file=sys.stderr, flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
