"""What the local fake CRM servers share (``fake_hubspot``, ``fake_zoho``, ``fake_salesforce``).

`FakeCrmServer` is real HTTP on 127.0.0.1 (port 0 = any free port), served from a daemon thread,
with the scaffolding every fake needs:

- lifecycle: ``start(port)``/``stop()`` or a context manager; ``url`` once listening;
  ``serve_until_interrupted()`` for running a fake by hand;
- recording: every request, parsed into a `RecordedRequest`, lands in ``requests``;
  ``requests_to(method, path)`` (path exact or an fnmatch pattern), ``calls(...)`` (their
  number) and ``reset_requests()`` read it;
- injection: ``inject(status, body, path=, method=, headers=, times=, delay_s=)`` answers the
  next matching requests with a canned response instead of routing them (recorded all the
  same); a path matches by prefix unless the fake overrides ``_path_matches``;
- access tokens: ``tokens`` maps each token the fake issued (``_issue_token``) to its expiry;
  ``expire_tokens()`` expires them all;
- sending: a body is a dict or list (sent as JSON), str or bytes (text/html if it starts with
  '<', else labelled JSON), or None (empty); ``Content-Type`` in the headers wins, and a 204
  has no body. A fake may override ``_encode``.

A vendor fake subclasses it, sets ``thread_name``, and implements ``_route(request) -> (status,
body, headers)`` with its endpoints, errors and data::

    class FakeAcme(FakeCrmServer):
        thread_name = "fake-acme"

        def _route(self, r):
            return 200, {"path": r.path, "q": r.arg("q")}, {}

    with FakeAcme() as acme:
        ... base_url=acme.url ...
        assert acme.calls("GET", "/v1/*") == 1
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeCrmServer", "RecordedRequest", "Response", "JSON_TYPE", "HTML_TYPE"]

JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"

#: what `FakeCrmServer._route` answers: status, body (see `FakeCrmServer._encode`), headers
Response = tuple[int, Any, dict[str, str]]


@dataclass
class RecordedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    json: Any = None  # the body parsed, when it was sent as JSON (None if it does not parse)
    form: dict[str, list[str]] = field(default_factory=dict)  # the body parsed, when it was a form

    def arg(self, name: str) -> str | None:
        """One query (or, failing that, form) parameter: its first value, or None."""
        values = self.query.get(name) or self.form.get(name)
        return values[0] if values else None


@dataclass
class _Injected:
    status: int
    body: Any
    headers: dict[str, str]
    path: str | None  # None: any
    method: str | None  # None: any
    times: int
    delay_s: float


class FakeCrmServer:
    """A fake CRM's HTTP server; `start()`/`stop()` or use it as a context manager."""

    thread_name = "fake-crm"
    #: parse_qs option for the query string and form bodies: keep ``a=`` parameters
    keep_blank_values = True
    #: record (and route) the %-decoded path
    unquote_path = False
    #: what a request is recorded as (a subclass of `RecordedRequest`)
    request_class: type[RecordedRequest] = RecordedRequest

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.tokens: dict[str, float] = {}  # access token the fake issued -> expiry (time.monotonic())
        self._injected: list[_Injected] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)  # for ids and tokens the fake makes up
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- test controls ----------------------------------------------------------------------------

    def inject(self, status: int, body: Any = None, *, path: str | None = None, method: str | None = None,
               headers: Mapping[str, str] | None = None, times: int = 1, delay_s: float = 0.0) -> None:
        """Answer the next `times` requests matching `method` and `path` with this instead of routing them.

        `path` matches as `_path_matches` says (a prefix unless the fake overrides it); None, or
        "*" for `method`, matches any. `body` is sent as `_encode` says; `delay_s` waits first.
        """
        if times <= 0:
            return
        with self._lock:
            self._injected.append(_Injected(status, body, dict(headers or {}), path,
                                            None if method in (None, "*") else method.upper(), times, delay_s))

    def expire_tokens(self) -> None:
        """Every access token the fake issued is now expired (the next call with one is refused)."""
        with self._lock:
            expired = time.monotonic() - 5
            for token in self.tokens:
                self.tokens[token] = expired

    def calls(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests `requests_to(method, path)` finds."""
        return len(self.requests_to(method, path))

    def requests_to(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The recorded requests with this method and path (exact, or an fnmatch pattern), in order."""
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and (path is None or fnmatch.fnmatchcase(r.path, path))]

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- server -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> Self:
        """Listen on 127.0.0.1:`port` (0: any free port) unless already listening; serve from a thread."""
        if self._server is None:
            self._listen("127.0.0.1", port)
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:  # shutdown() waits for serve_forever: only if it ran
            self._server.shutdown()
            self._thread = None
        self._server.server_close()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_interrupted(self) -> None:
        """For running a fake by hand: serve until Ctrl-C, then stop."""
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _listen(self, host: str, port: int) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle on, a kept-alive connection
            # waits for the client's delayed ACK (~40 ms) and every benchmark over a fake lies
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True

    # -- access tokens ----------------------------------------------------------------------------

    def _issue_token(self, token: str, ttl: float | None) -> None:
        """Remember a token the fake hands out, valid for `ttl` seconds (None: until `expire_tokens`)."""
        with self._lock:
            self.tokens[token] = math.inf if ttl is None else time.monotonic() + ttl

    def _token_expiry(self, token: str) -> float | None:
        """When `token` expires or expired (time.monotonic()); None if the fake never issued it."""
        with self._lock:
            return self.tokens.get(token)

    def _token_valid(self, token: str) -> bool:
        expiry = self._token_expiry(token)
        return expiry is not None and expiry > time.monotonic()

    # -- request handling -------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        """Parse and record one request; answer it with an injected response, or else `_route`'s."""
        r = self._parse(h)
        with self._lock:
            self.requests.append(r)
            injected = self._take_injected(r)
        if injected is None:
            status, body, headers = self._route(r)
        else:
            if injected.delay_s:
                time.sleep(injected.delay_s)
            status, body, headers = injected.status, injected.body, injected.headers
        self._send(h, status, body, headers)

    def _parse(self, h: BaseHTTPRequestHandler) -> RecordedRequest:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type") or ""
        parsed: Any = None
        form: dict[str, list[str]] = {}
        if body and "json" in ctype:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        elif body and "x-www-form-urlencoded" in ctype:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=self.keep_blank_values)
        return self.request_class(
            method=h.command, path=unquote(parts.path) if self.unquote_path else parts.path,
            query=parse_qs(parts.query, keep_blank_values=self.keep_blank_values),
            headers=dict(h.headers.items()), body=body, json=parsed, form=form)

    def _take_injected(self, r: RecordedRequest) -> _Injected | None:
        """The first injected answer for `r`, used up once (call with the lock held)."""
        for i, inj in enumerate(self._injected):
            if inj.method in (None, r.method) and (inj.path is None or self._path_matches(inj.path, r.path)):
                inj.times -= 1
                if inj.times <= 0:
                    del self._injected[i]
                return inj
        return None

    def _path_matches(self, pattern: str, path: str) -> bool:
        """Whether an answer injected for `pattern` applies to `path`: a prefix here."""
        return path.startswith(pattern)

    def _route(self, r: RecordedRequest) -> Response:
        """The fake's answer to `r`: (status, body, headers). Subclasses implement their endpoints."""
        raise NotImplementedError

    def _encode(self, body: Any) -> tuple[bytes, str | None]:
        """A body as bytes and its Content-Type (None: no body, no type)."""
        if body is None:
            return b"", None
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
            return data, HTML_TYPE if data.lstrip()[:1] == b"<" else JSON_TYPE
        return json.dumps(body).encode(), JSON_TYPE

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: Mapping[str, str]) -> None:
        data, ctype = self._encode(body)
        if status == 204:
            data, ctype = b"", None
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), ctype)
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        for k, v in headers.items():
            if k.lower() != "content-type":
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if data:
            h.wfile.write(data)
