"""Issue 12, break 2: nothing leaks, even from a CRM that echoes every credential it was sent.

A real HTTP server on 127.0.0.1 plays HubSpot, Salesforce's token endpoint and a team's own
``http`` endpoint, and in every error body and header echoes what it got: the Authorization
header, the posted client secret, the query string, the URL's user info, plus an owner's email
in a broken answer. The service runs through the real app and the real ``dialwhom check``;
the trace header, every log record (any logger), the check output and /readyz must hold none
of it.
"""

from __future__ import annotations

import sample
import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from dialwhom.app import create_app
from dialwhom.cli import main

URL_PASSWORD = "url-pa55w0rd-echoed"
QUERY_KEY = "query-api-key-echoed-77"
BEARER = "http-bearer-token-echoed-0001"
HUBSPOT_TOKEN = "pat-na1-11111111-2222-echoed"
SF_SECRET = "sf-client-secret-echoed-9999"
DIALWHOM_TOKEN = "dialwhom-shared-token-0123456789"
REDIS_PASSWORD = "redis-pa55-echoed"
OWNER_EMAIL = "priya.private@example.com"
CALLER_DIGITS = "9876543210"
SECRETS = (URL_PASSWORD, QUERY_KEY, BEARER, HUBSPOT_TOKEN, SF_SECRET, DIALWHOM_TOKEN, REDIS_PASSWORD, OWNER_EMAIL, CALLER_DIGITS)

MODES = ("echo-401", "echo-400", "echo-500", "html-email", "badjson-email")


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        posted = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            auth += " " + base64.b64decode(auth[6:]).decode("utf-8", "replace")
        echoed = f"you sent {auth} to {self.path} with {posted}"
        mode = self.server.mode
        headers = {"X-Echo": echoed.encode("latin-1", "replace").decode("latin-1"), "WWW-Authenticate": f'Bearer error="{echoed[:200]}"'}
        if "/services/oauth2/token" in self.path:  # Salesforce's token endpoint refuses, echoing
            status, ctype = 400, "application/json"
            body = json.dumps({"error": "invalid_client", "error_description": f"client secret wrong: {echoed}"})
        elif mode == "echo-401":
            status, ctype = 401, "application/json"
            body = json.dumps({"status": "error", "message": f"Authentication credentials invalid: {echoed}", "category": "INVALID_AUTHENTICATION"})
        elif mode == "echo-400":
            status, ctype = 400, "application/json"
            body = json.dumps({"status": "error", "message": f"bad filter {echoed}", "category": "VALIDATION_ERROR"})
        elif mode == "echo-500":
            status, ctype = 500, "text/plain"
            body = f"Internal error for {OWNER_EMAIL}: {echoed}"
        elif mode == "html-email":
            status, ctype = 200, "text/html"
            body = f"<html>{OWNER_EMAIL} {echoed}</html>"
        else:
            status, ctype = 200, "application/json"
            body = '{"owner": {"email": "' + OWNER_EMAIL + '", ' + echoed
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply


@pytest.fixture(scope="module")
def echo_crm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    server.mode = "echo-401"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def config_path(echo_crm, tmp_path):
    base = f"127.0.0.1:{echo_crm.server_address[1]}"
    config = {
        "token": DIALWHOM_TOKEN,
        "budget_ms": 1500,
        "fallback": [sample.FALLBACK],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA}],
        "check_number": "+91" + CALLER_DIGITS,
        "shared_state": {"url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0", "timeout_ms": 20},
        "breaker": {"failures": 1000},
        "connectors": [
            {"id": "own", "type": "http", "retries": 0, "timeout_ms": 500, "bearer_token": BEARER,
             "url": f"http://svc:{URL_PASSWORD}@{base}/owner/{{phone}}?api_key={QUERY_KEY}&phone={{phone}}"},
            {"id": "hs", "type": "hubspot", "retries": 0, "timeout_ms": 500, "access_token": HUBSPOT_TOKEN, "base_url": f"http://{base}"},
            {"id": "sf", "type": "salesforce", "retries": 0, "timeout_ms": 500, "auth": "client_credentials",
             "client_id": "sf-client-id", "client_secret": SF_SECRET, "login_url": f"http://{base}"},
        ],
    }
    path = tmp_path / "dialwhom.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}: {text[:600]}"
    assert "svc:" not in text, f"a URL's user info leaked into {where}"


@pytest.mark.parametrize("mode", MODES)
def test_nothing_echoed_by_the_crm_reaches_the_trace_header_logs_or_readyz(echo_crm, config_path, mode, caplog):
    echo_crm.mode = mode
    caplog.set_level(logging.DEBUG)  # urllib3 logs every URL it requests at DEBUG
    app = create_app(str(config_path))
    try:
        client = app.test_client()
        resp = client.get(f"/exotel/dial-whom?CallSid=CA1&CallFrom=0{CALLER_DIGITS}&token={DIALWHOM_TOKEN}")
        assert resp.status_code == 200 and resp.text == sample.FALLBACK
        trace = resp.headers["X-Dialwhom-Trace"]
        assert "own[caller]=" in trace and "hs[caller]=" in trace and "sf[caller]=" in trace
        _assert_clean("the trace header", trace)
        readyz = client.get("/readyz")
        _assert_clean("/readyz", readyz.text)
        json.loads(readyz.text)  # still a JSON document
    finally:
        app.extensions["dialwhom"].close()
    lines = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert lines
    for line in lines:
        _assert_clean("a log line", line)


@pytest.mark.parametrize("mode", ("echo-401", "html-email"))
@pytest.mark.parametrize("as_json", (False, True))
def test_nothing_echoed_by_the_crm_reaches_check_output(echo_crm, config_path, mode, as_json, capsys):
    echo_crm.mode = mode
    code = main(["check", "--config", str(config_path)] + (["--json"] if as_json else []))
    out = capsys.readouterr()
    assert code == 1  # the CRMs refuse: problems are reported
    assert "FAIL" in out.out + out.err
    _assert_clean("check output", out.out + out.err)
