"""Issue 12, breaks 1 and 3 against a real gunicorn (`dialwhom serve --workers 1 --threads 3`,
the shipped settings otherwise) in front of a CRM that is slow but answers (1.4 s).

- More new callers than the server has threads: each is answered inside the budget, counted
  from arrival, and cached callers never queue behind them (the bulkhead).
- Requests that had to wait for a server thread count that wait.
- A malformed request line: gunicorn's 400 and its log carry no query string.

Slack: the assertions allow `SLACK_MS` over budget + 100 ms, for a shared 2-core CI machine;
bench/overload.py measures the real figures.
"""

from __future__ import annotations

import sample
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from served import serving
import requests
import yaml

from tests.faultserver import FaultServer

BUDGET_MS = 600
SLACK_MS = 150
KNOWN = "+919876543210"  # in the fault server's data: cached before the CRM slows down
TOKEN = "overload-token-0123456789"


@pytest.fixture(scope="module")
def crm():
    with FaultServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def server(crm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("overload")
    config = {
        "budget_ms": BUDGET_MS,
        "token": TOKEN,
        "connectors": [{"id": "crm", "type": "http", "url": crm.template, "timeout_ms": BUDGET_MS, "retries": 0, "max_in_flight": 1}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA}],
        "fallback": [sample.FALLBACK],
        "breaker": {"failures": 1000},
    }
    path = folder / "dialwhom.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving(path, "--workers", "1", "--threads", "3", cwd=folder) as (base, log_path):
        crm.mode = "ok"
        assert _ask(base, KNOWN, "CA-warm")[1] == 200  # now cached
        crm.mode = "slow:1400"
        yield base, log_path


def _ask(base: str, caller: str, sid: str) -> tuple[float, int, str, str]:
    """(ms from send to answer, status, body, trace header) for one Dial Whom request."""
    started = time.monotonic()
    resp = requests.get(f"{base}/exotel/dial-whom", params={"CallSid": sid, "CallFrom": caller, "token": TOKEN}, timeout=15,
                        headers={"Connection": "close"})
    return (time.monotonic() - started) * 1000.0, resp.status_code, resp.text, resp.headers.get("X-Dialwhom-Trace", "")


def test_new_callers_beyond_the_threads_are_answered_in_budget_and_cached_callers_do_not_queue(server):
    base, _ = server
    with ThreadPoolExecutor(16) as pool:
        new = [pool.submit(_ask, base, f"+9198765{i:05d}", f"CA-new-{i}") for i in range(10)]
        time.sleep(0.1)  # the new callers are in: the CRM's place is taken, threads are busy
        cached = [pool.submit(_ask, base, KNOWN, f"CA-cached-{i}") for i in range(5)]
        new_results = [f.result() for f in new]
        cached_results = [f.result() for f in cached]
    for ms, status, body, trace in new_results + cached_results:
        assert status == 200 and body
        assert ms <= BUDGET_MS + 100 + SLACK_MS, f"{ms:.0f} ms for a {BUDGET_MS} ms budget: {trace}"
    assert sum("bulkhead-full" in r[3] for r in new_results) >= 8  # one CRM place: the rest answered at once
    for ms, _, body, trace in cached_results:
        assert body.startswith(sample.ASHA) and "path=cache" in trace
        assert ms < 100 + SLACK_MS, f"a cached caller waited {ms:.0f} ms behind uncached ones: {trace}"


def test_the_wait_for_a_server_thread_counts_against_the_budget(server):
    base, _ = server
    time.sleep(0.1)  # the previous lookups ended at their deadlines, giving back the CRM's place
    caller = "+919876599999"  # one unknown caller on six calls: they join one lookup, each holding a thread
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: _ask(base, caller, f"CA-q-{i}"), range(6)))
    for ms, status, body, trace in results:
        assert status == 200 and body == sample.FALLBACK
        assert ms <= BUDGET_MS + 100 + SLACK_MS, f"{ms:.0f} ms for a {BUDGET_MS} ms budget: {trace}"
    queued = [trace for _, _, _, trace in results if "queued=" in trace]
    assert len(queued) >= 3, results  # three threads: the other three waited for one, and the trace says so


def test_a_malformed_request_line_is_refused_without_echoing_its_query(server):
    base, log_path = server
    port = int(base.rsplit(":", 1)[1])
    secret_line = f"GET /exotel/dial-whom?CallFrom=09876543210&token={TOKEN} HTTP/1.1 junk"
    for raw in (secret_line + "\r\n\r\n", f"GET /exotel/dial-whom?CallFrom=09876543210&token={TOKEN}\x00 HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw.encode("latin-1"))
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        text = answer.decode("latin-1")
        assert text.startswith("HTTP/1.1 400"), text
        assert TOKEN not in text and "9876543210" not in text and "CallFrom" not in text, text
    time.sleep(0.2)  # let the worker's log reach the file
    logged = Path(log_path).read_text()
    assert "Invalid request" in logged
    assert TOKEN not in logged and "9876543210" not in logged and "CallFrom=" not in logged, logged
