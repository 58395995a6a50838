"""End to end: the real service under gunicorn on 127.0.0.1, a CRM-shaped server behind it,
driven by `dialwhom simulate` exactly as Exotel's Connect applet would drive it (issue #6)."""

from __future__ import annotations

import sample
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from served import serving
import yaml

from dialwhom.simulator import SimulationOptions, simulate
from tests.faultserver import FaultServer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "e2e-token-0123456789abcdef"
OWNERS = {
    "+919876543210": {"email": "asha@example.com", "name": "Asha"},
    "+919123456780": {"id": "u-9", "phone": "+919811111111"},  # no reps entry: the CRM's phone
}


@pytest.fixture(scope="module")
def crm():
    with FaultServer(OWNERS) as srv:
        yield srv


@pytest.fixture(scope="module")
def service(crm, tmp_path_factory):
    """`dialwhom serve --workers 1` (gunicorn) on a free port, configured for the fake CRM."""
    folder = tmp_path_factory.mktemp("e2e")
    config = {
        "budget_ms": 1500,
        "token": TOKEN,
        "connectors": [{"id": "crm", "type": "http", "url": crm.template, "timeout_ms": 1000}],
        "reps": [
            {"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
            {"owner": "vikram@example.com", "phone": sample.VIKRAM, "team": "north"},
        ],
        "teams": {"north": {"backup": [sample.VIKRAM, sample.NORTH3]}, "south": {"backup": [sample.RAHUL]}},
        "fallback": [sample.FALLBACK],
        "lines": {sample.LINE_NORTH: "south"},
        "breaker": {"failures": 3, "cooldown_s": 60},
    }
    path = folder / "dialwhom.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving(path, "--workers", "1", cwd=folder) as served:
        yield served


def _urls(base: str) -> tuple[str, str]:
    return f"{base}/exotel/dial-whom?token={TOKEN}", f"{base}/exotel/fallback?token={TOKEN}"


def test_known_caller_reaches_the_owner_on_the_first_attempt(service):
    primary, fallback = _urls(service[0])
    result = simulate(primary, options=SimulationOptions(fallback_url=fallback, caller="09876543210", answers=["completed"]))
    assert result.contract_kept, result.violations
    assert result.answered_by == sample.ASHA
    assert len(result.attempts) == 1
    assert result.requests[0].status == 200


def test_owner_busy_then_team_backup_answers_with_the_same_plan(service):
    primary, fallback = _urls(service[0])
    result = simulate(primary, options=SimulationOptions(fallback_url=fallback, caller="09876543210", answers=["busy", "completed"]))
    assert result.contract_kept, result.violations
    assert [a.dialled for a in result.attempts] == [sample.ASHA, sample.VIKRAM]
    assert result.answered_by == sample.VIKRAM
    assert result.requests[1].params["DialCallStatus"] == "busy"
    assert result.requests[0].body == result.requests[1].body  # one call, one plan


def test_owner_without_reps_entry_is_rung_on_the_crm_phone(service):
    primary, _ = _urls(service[0])
    result = simulate(primary, options=SimulationOptions(caller="09123456780", answers=["completed"]))
    assert result.answered_by == "+919811111111"


def test_unknown_caller_gets_the_lines_team(service):
    primary, fallback = _urls(service[0])
    result = simulate(primary, options=SimulationOptions(fallback_url=fallback, caller="09000000001", exophone="08039513882", answers=["no-answer", "completed"]))
    assert result.contract_kept, result.violations
    assert [a.dialled for a in result.attempts] == [sample.RAHUL, sample.FALLBACK]
    assert result.answered_by == sample.FALLBACK


def test_fetch_after_attempt_off_walks_the_first_list(service):
    primary, _ = _urls(service[0])
    result = simulate(primary, options=SimulationOptions(caller="09876543210", fetch_after_attempt=False, answers=["busy", "no-answer", "completed"]))
    assert len(result.requests) == 1
    assert result.answered_by == sample.NORTH3


def test_wrong_token_is_refused_and_the_fallback_url_answers(service):
    base = service[0]
    result = simulate(f"{base}/exotel/dial-whom?token=wrong", options=SimulationOptions(
        fallback_url=f"{base}/exotel/fallback?token={TOKEN}", caller="09876543210", exophone="08039513882", answers=["completed"]))
    assert result.requests[0].status == 403
    assert result.requests[1].target == "fallback"
    assert result.answered_by == sample.RAHUL  # the line's team, from config alone


def test_primary_returning_500_makes_exotel_use_the_fallback(service, crm):
    base = service[0]
    broken = FaultServer(mode="500").start()
    try:
        result = simulate(broken.url + "/exotel/dial-whom", options=SimulationOptions(
            fallback_url=f"{base}/exotel/fallback?token={TOKEN}", caller="09876543210", answers=["completed"]))
    finally:
        broken.stop()
    assert [r.target for r in result.requests] == ["primary", "fallback"]
    assert result.answered_by == sample.RAHUL  # the line's team, from config alone


def test_the_simulators_limit_defaults_to_exotels_ten_seconds():
    assert SimulationOptions().timeout == 10.0


def test_primary_hanging_past_the_limit_makes_exotel_use_the_fallback(service):
    """Exotel's limit (10 s; here a configured 1.5 s, same code path) with a primary that never answers."""
    base = service[0]
    hung = FaultServer(mode="hang").start()
    try:
        started = time.monotonic()
        result = simulate(hung.url + "/exotel/dial-whom", options=SimulationOptions(
            fallback_url=f"{base}/exotel/fallback?token={TOKEN}", caller="09876543210", answers=["completed"], timeout=1.5))
        elapsed = time.monotonic() - started
    finally:
        hung.stop()
    assert 1.45 <= elapsed < 3
    assert result.requests[0].target == "primary" and result.requests[0].status is None
    assert result.requests[1].target == "fallback"
    assert result.answered_by == sample.RAHUL
    assert not result.contract_kept  # the caller waited the whole limit in silence: reported


class _EmptyOk(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_empty_200_is_reported_as_nobody_dialled(service):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyOk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = simulate(f"http://127.0.0.1:{server.server_address[1]}/dial", options=SimulationOptions(
            fallback_url=f"{service[0]}/exotel/fallback?token={TOKEN}", caller="09876543210"))
    finally:
        server.shutdown()
        server.server_close()
    assert result.outcome == "nobody dialled"
    assert [r.target for r in result.requests] == ["primary"]  # Exotel does not fall back on a 200
    assert not result.contract_kept


def test_crm_down_still_answers_in_budget_with_the_last_known_owner(service, crm):
    primary, fallback = _urls(service[0])
    warm = simulate(primary, options=SimulationOptions(caller="09876543210", answers=["completed"]))
    assert warm.answered_by == sample.ASHA
    crm.mode = "hang"
    try:
        result = simulate(primary, options=SimulationOptions(fallback_url=fallback, caller="09876543210", answers=["completed"]))
    finally:
        crm.mode = "ok"
    assert result.answered_by == sample.ASHA
    assert result.requests[0].elapsed_ms < 1500 + 200


def test_the_simulate_command_line_exits_zero_on_a_good_url(service):
    primary, fallback = _urls(service[0])
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(sys.argv[1:]))", "simulate", primary,
         "--fallback-url", fallback, "--from", "09876543210", "--answers", "busy,completed"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert sample.VIKRAM in out.stdout
    assert TOKEN not in out.stdout  # the transcript masks the token


def test_server_log_has_no_full_numbers_or_token(service):
    log = service[1].read_text()
    assert "decision call=" in log
    for secret in ("9876543210", "09876543210", TOKEN):
        assert secret not in log
