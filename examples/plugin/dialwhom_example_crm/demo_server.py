"""A stand-in Example CRM on 127.0.0.1, so the connector can be tried end to end without a CRM.

    python -m dialwhom_example_crm.demo_server            # http://127.0.0.1:8765, key demo-key-0123456789

Serves ``GET /v1/contacts?phone=<E.164>`` (header ``X-Api-Key``) from a small in-memory list;
401 for a wrong key. Used by the guide's walk-through and by dialwhom's plugin test.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEMO_KEY = "demo-key-0123456789"
DEMO_CONTACTS = [
    {"id": "c-1", "name": "Acme Traders", "phone": "+91 98765 43210", "owner_email": "asha@example.com", "updated_at": "2024-05-01T10:00:00Z"},
    {"id": "c-2", "name": "Globex", "phone": "080 4111 2233", "owner_email": "meera@example.com", "updated_at": "2024-04-02T09:00:00Z"},
]


class DemoCrm(ThreadingHTTPServer):
    """The Example CRM API over real HTTP; `requests` records (path, params, headers) seen."""

    daemon_threads = True

    def __init__(self, port: int = 0, *, api_key: str = DEMO_KEY, contacts: list[dict] | None = None):
        super().__init__(("127.0.0.1", port), _Handler)
        self.api_key = api_key
        self.contacts = list(DEMO_CONTACTS if contacts is None else contacts)
        self.requests: list[tuple[str, dict, dict]] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "DemoCrm":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: DemoCrm

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.requests.append((parts.path, params, dict(self.headers)))
        if self.headers.get("X-Api-Key") != self.server.api_key:
            return self._send(401, {"error": "invalid api key"})
        if parts.path != "/v1/contacts":
            return self._send(404, {"error": "no such endpoint"})
        wanted = _digits(params.get("phone", ""))[-10:]
        hits = [c for c in self.server.contacts if wanted and _digits(c["phone"]).endswith(wanted)]
        self._send(200, {"contacts": hits})

    def _send(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep numbers out of the console
        pass


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dialwhom_example_crm.demo_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEMO_KEY)
    args = parser.parse_args(argv)
    server = DemoCrm(args.port, api_key=args.api_key)
    print(f"Example CRM demo on {server.url} (X-Api-Key: {args.api_key}); Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
