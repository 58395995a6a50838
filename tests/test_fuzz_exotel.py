"""Issue 12, break 3 and the fuzz: 10,000 hypothesis-made Exotel requests through the real app
(its WSGI callable, in process; the directory connector keeps each answer well under a ms).

Whatever Exotel (or anyone who finds the URL) sends: never a 5xx, never an empty 200 (the
config has a fallback), only E.164 in the bodies, and the log lines each request produced hold
no control character (no forged line) and none of the numbers it carried in full.
"""

from __future__ import annotations

import sample
import io
import json
import logging
import re
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialwhom.app import create_app
from dialwhom.routing.phones import digits_only

ROOT = Path(__file__).resolve().parent.parent
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
KNOWN = ["09876543210", "+91 98450 12345", "9123456780", "0091 99000 11223", sample.VIKRAM, "080-41234567"]
CONFIG = {
    "budget_ms": 1000,
    "reps": [
        {"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
        {"owner": "vikram@example.com", "phone": sample.VIKRAM, "team": "north"},
    ],
    "teams": {"north": {"backup": [sample.NORTH3]}},
    "fallback": [sample.FALLBACK],
    "lines": {sample.LINE_NORTH: "north"},
    "connectors": [{"id": "accounts", "type": "directory", "path": str(ROOT / "examples" / "accounts.csv")}],
}

_nasty = st.characters(codec="utf-8", exclude_categories=("Cs",))  # any text, controls included
_controls = st.text(alphabet="\x00\n\r\t\x1b\x7f\x85\u2028", min_size=1, max_size=3)
_numbers = st.one_of(
    st.sampled_from(KNOWN),
    st.builds(lambda p, d: p + d, st.sampled_from(["", "+", "00", " ", "0", "+91", "sip:"]), st.text("0123456789 -", min_size=6, max_size=15)),
    st.builds(lambda a, c, b: a + c + b, st.sampled_from(KNOWN), _controls, st.sampled_from(["", "1", "x"])),
)
_short = st.text(_nasty, max_size=20)
_values = st.one_of(st.sampled_from(["", "null", "  ", "completed", "busy", "no-answer"]), _numbers, _short,
                    _short.map(lambda s: (s or "x") * 15))  # past the 256-character cap too
#: Exotel's CallSids are hex; here with control characters and odd text mixed in
_sids = st.one_of(st.text("abcdef0123456789", max_size=32),
                  st.builds(lambda a, c, b: a + c + b, st.sampled_from(["CA", "abc"]), _controls, st.text("deadbef\r\n", max_size=8)))
_NAMES = ["CallFrom", "From", "CallTo", "To", "CustomField", "digits", "DialCallStatus", "DialWhomNumber"]
_params = st.builds(lambda d, sid: {**d, **({"CallSid": sid} if sid is not None else {})},
                    st.dictionaries(st.sampled_from(_NAMES), _values, max_size=5), st.none() | _sids)
#: each drawn request goes to every endpoint (GET, and POST for Passthru): 2,000 x 5 = 10,000 cases
ENDPOINTS = (("dial-whom", False), ("connect", False), ("fallback", False), ("passthru", False), ("passthru", True))
EXAMPLES = 2_000


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (f"\n{record.exc_text}" if record.exc_text else ""))


class _Wsgi:
    """The app called as gunicorn calls it, one environ per request: the Flask test client's
    request building (cookies, redirects, EnvironBuilder) costs more than the app itself, and
    10,000 cases must fit in a few seconds."""

    def __init__(self, app):
        self.app = app

    def request(self, method: str, path: str, params: dict) -> tuple[int, dict, str]:
        encoded = urlencode(params)
        body = encoded.encode() if method == "POST" else b""
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "" if method == "POST" else encoded,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "CONTENT_TYPE": "application/x-www-form-urlencoded" if method == "POST" else "",
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
        }
        status: list[str] = []
        headers: dict[str, str] = {}

        def start_response(s, h, exc_info=None):
            status.append(s)
            headers.update(h)

        chunks = self.app(environ, start_response)
        try:
            text = b"".join(chunks).decode("utf-8")
        finally:
            getattr(chunks, "close", lambda: None)()
        return int(status[0].split()[0]), headers, text


@pytest.fixture(scope="module")
def client_and_lines():
    app = create_app(CONFIG)
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    level = logging.getLogger("dialwhom").level
    logging.getLogger("dialwhom").setLevel(logging.INFO)
    try:
        yield _Wsgi(app), handler
    finally:
        root.removeHandler(handler)
        logging.getLogger("dialwhom").setLevel(level)
        app.extensions["dialwhom"].close()


def _full_numbers(params: dict) -> set[str]:
    """The digit strings of every number-like value sent (7+ digits: a number someone could
    dial), except those the CallSid holds too: a CallSid is logged as sent, as the id it is."""
    sid = _digit_runs(params.get("CallSid") or "")
    out = set()
    for name, value in params.items():
        if name != "CallSid":
            digits = digits_only(value)
            if len(digits) >= 7 and digits[-7:] not in sid:
                out.add(digits[-7:])  # its last seven digits in a row are already too many
    return out


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=_params)
def test_fuzzed_exotel_requests(client_and_lines, params):
    client, logs = client_and_lines
    numbers = _full_numbers(params)
    for endpoint, post in ENDPOINTS:
        path = f"/exotel/{endpoint}"
        logs.lines.clear()
        status, headers, text = client.request("POST" if post else "GET", path, params)
        assert status < 500, text
        if endpoint in ("dial-whom", "fallback"):
            assert status == 200 and text, "an empty or failed answer while the config has a fallback"
            assert all(E164.match(n) for n in text.split(",")), text
        elif endpoint == "connect":
            assert status == 200
            answer = json.loads(text)["destination"]["numbers"]
            assert answer and all(E164.match(n) for n in answer), answer
        assert headers.get("X-Dialwhom-Trace", "").isprintable()
        for line in logs.lines:
            assert not CONTROL.search(line), f"a control character in a log line: {line!r}"
            runs = _digit_runs(line)
            for n in numbers:
                assert n not in runs, f"a number sent in the request appears in full in a log line: {line!r}"


def _digit_runs(line: str) -> str:
    """The line's digits as written, separators between digits dropped (so '98765 43210' and
    '98765-43210' count as one run), runs separated by '|'."""
    return "|".join(re.findall(r"\d(?:[\d\-. ()]*\d)?", line)).translate(str.maketrans("", "", "-. ()"))
