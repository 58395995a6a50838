"""The Exotel simulator against real local HTTP servers that keep or break the contract."""

from __future__ import annotations

import sample
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from dialwhom.routing.redact import mask_query_secrets
from dialwhom.simulator import (
    SimulationOptions,
    UsageError,
    build_parser,
    check_body,
    check_json_body,
    main,
    render_transcript,
    simulate,
)

OWNER, BACKUP, SPARE = sample.ASHA, sample.VIKRAM, sample.NORTH3

Handler = Callable[[BaseHTTPRequestHandler, "LocalExotelTarget"], None]


# --- a tiny scriptable server -----------------------------------------------------------------


def text(body: str, status: int = 200, content_type: str | None = "text/plain") -> Handler:
    def handle(h: BaseHTTPRequestHandler, server: LocalExotelTarget) -> None:
        data = body.encode()
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return handle


def hang() -> Handler:
    def handle(h: BaseHTTPRequestHandler, server: LocalExotelTarget) -> None:
        server.release.wait(5)
    return handle


def trickle(body: str, delay: float) -> Handler:
    """Headers at once, then one byte every ``delay`` seconds: each read is fast, the total not."""
    def handle(h: BaseHTTPRequestHandler, server: LocalExotelTarget) -> None:
        data = body.encode()
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            for i in range(len(data)):
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
                if server.release.wait(delay):
                    return
        except OSError:
            pass
    return handle


def sequence(*handlers: Handler) -> Handler:
    """The n-th request to the path gets the n-th handler; the last one repeats."""
    calls = iter(range(10**6))

    def handle(h: BaseHTTPRequestHandler, server: LocalExotelTarget) -> None:
        handlers[min(next(calls), len(handlers) - 1)](h, server)
    return handle


class LocalExotelTarget:
    """A ThreadingHTTPServer on 127.0.0.1 whose paths answer as each test scripts."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        target = self

        class _H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                target.hits.append((parts.path, dict(parse_qsl(parts.query,
                                                               keep_blank_values=True))))
                target.routes.get(parts.path, text("not found", 404))(self, target)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str, query: str = "") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}" + (f"?{query}" if query else "")

    def on(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)

    def params(self, path: str) -> list[dict[str, str]]:
        return [p for hit_path, p in self.hits if hit_path == path]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = LocalExotelTarget()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def run(url: str, **options) -> object:
    options.setdefault("timeout", 0.5)
    return simulate(url, options=SimulationOptions(**options))


def messages(findings) -> str:
    return "\n".join(f.message for f in findings)


# --- the request Exotel sends ------------------------------------------------------------------


def test_first_request_carries_realistic_exotel_parameters(server):
    url = server.on("/dw", text(OWNER))
    run(url, answers=["completed"], custom_field="ACC-1", params=[("flow_id", "42")])
    (p,) = server.params("/dw")
    assert len(p["CallSid"]) == 32 and int(p["CallSid"], 16) >= 0
    assert p["CallFrom"] == p["From"] == "09876543210"
    assert p["CallTo"] == p["To"] == "08039513882"
    assert p["Direction"] == "incoming" and p["CallStatus"] == "in-progress"
    assert p["CallType"] == "call-attempt" and p["DialWhomNumber"] == ""
    assert p["EndTime"] == "1970-01-01 05:30:00"
    for key in ("Created", "StartTime", "CurrentTime"):
        time.strptime(p[key], "%Y-%m-%d %H:%M:%S")
    assert p["CustomField"] == "ACC-1" and p["flow_id"] == "42"
    assert "digits" not in p and "DialCallStatus" not in p


def test_digits_are_sent_quoted_on_the_first_request_only(server):
    url = server.on("/dw", text(f"{OWNER},{BACKUP}"))
    run(url, digits="1234", answers=["busy", "completed"])
    first, second = server.params("/dw")
    assert first["digits"] == '"1234"'
    assert "digits" not in second


# --- happy paths ---------------------------------------------------------------------------------


def test_owner_answers_first_attempt(server):
    url = server.on("/dw", text(f"{OWNER},{BACKUP}"))
    result = run(url, answers=["completed"])
    assert result.outcome == "answered" and result.answered_by == OWNER
    assert [(a.dialled, a.outcome) for a in result.attempts] == [(OWNER, "completed")]
    assert len(result.requests) == 1 and result.exit_code == 0
    assert result.requests[0].status == 200 and result.requests[0].target == "primary"
    assert not result.violations and not result.warnings


def test_owner_busy_then_backup_answers_with_fetch_after_attempt(server):
    url = server.on("/dw", text(f"{OWNER},{BACKUP}"))
    result = run(url, answers=["busy", "completed"], call_sid="a" * 32)
    first, again = server.params("/dw")
    assert again["CallSid"] == first["CallSid"] == "a" * 32
    assert again["DialWhomNumber"] == OWNER and again["DialCallStatus"] == "busy"
    assert again["CallType"] == "incomplete"
    assert result.answered_by == BACKUP and result.exit_code == 0
    assert [a.request for a in result.attempts] == [1, 2]


def test_fetch_after_attempt_follows_a_changed_list(server):
    url = server.on("/dw", sequence(text(OWNER), text(f"{OWNER},{SPARE}")))
    result = run(url, answers=["no-answer", "completed"])
    assert [a.dialled for a in result.attempts] == [OWNER, SPARE]
    assert result.answered_by == SPARE


def test_each_unique_number_is_attempted_once_then_the_flow_moves_on(server):
    url = server.on("/dw", text(f"{OWNER},{BACKUP},{OWNER}"))
    result = run(url)  # everybody: no-answer
    assert [a.dialled for a in result.attempts] == [OWNER, BACKUP]
    assert len(result.requests) == 3  # one after each failed attempt
    assert result.outcome == "nobody answered" and result.exit_code == 0
    assert "listed twice" in messages(result.warnings)


def test_without_fetch_after_attempt_the_first_list_is_walked_with_one_request(server):
    url = server.on("/dw", text(f"{OWNER},{BACKUP},{SPARE}"))
    result = run(url, fetch_after_attempt=False)
    assert len(server.hits) == 1 and len(result.requests) == 1
    assert [a.dialled for a in result.attempts] == [OWNER, BACKUP, SPARE]
    assert result.outcome == "nobody answered" and result.answered_by is None


def test_scenario_maps_numbers_to_outcomes(server, tmp_path):
    url = server.on("/dw", text(f"{OWNER},{BACKUP},{SPARE}"))
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"answers": {OWNER: "busy", SPARE: "completed"}}))
    code = main([url, "--scenario", str(path), "--timeout", "0.5", "-q"])
    assert code == 0
    result = run(url, scenario={OWNER: "busy", SPARE: "completed"})
    assert [(a.dialled, a.outcome) for a in result.attempts] == [
        (OWNER, "busy"), (BACKUP, "no-answer"), (SPARE, "completed")]


def test_requests_are_bounded_when_the_url_keeps_inventing_numbers(server):
    url = server.on("/dw", sequence(*(text(f"+9198000{i:05d}") for i in range(50))))
    result = run(url, max_requests=4)
    assert len(result.requests) == 4 and len(result.attempts) == 4
    assert "stopped after 4 requests" in messages(result.warnings)


# --- broken contracts -----------------------------------------------------------------------------


def test_500_without_fallback_breaks_the_contract(server):
    url = server.on("/dw", text("boom", 500))
    result = run(url)
    assert result.outcome == "nobody dialled" and result.exit_code == 1
    assert "HTTP 500" in messages(result.violations)


def test_500_falls_back_with_the_same_request(server):
    url = server.on("/dw", text("boom", 500))
    fallback = server.on("/fb", text(BACKUP))
    result = run(url, fallback_url=fallback, answers=["completed"])
    assert [(r.target, r.status) for r in result.requests] == [("primary", 500),
                                                                 ("fallback", 200)]
    assert server.params("/fb") == server.params("/dw")
    assert result.answered_by == BACKUP
    assert result.exit_code == 0 and "fallback" in messages(result.warnings)


def test_repeat_request_that_fails_also_falls_back(server):
    url = server.on("/dw", sequence(text(f"{OWNER},{BACKUP}"), text("boom", 503)))
    fallback = server.on("/fb", text(f"{OWNER},{SPARE}"))
    result = run(url, fallback_url=fallback, answers=["busy", "completed"])
    assert [r.target for r in result.requests] == ["primary", "primary", "fallback"]
    assert server.params("/fb")[0]["DialCallStatus"] == "busy"
    assert result.answered_by == SPARE and result.exit_code == 0


def test_connection_refused_falls_back(server):
    dead = LocalExotelTarget()
    dead_url = dead.url("/dw")
    dead.close()
    fallback = server.on("/fb", text(OWNER))
    result = run(dead_url, fallback_url=fallback, answers=["completed"])
    assert result.requests[0].error.startswith("connection error")
    assert result.answered_by == OWNER and result.exit_code == 0


def test_hang_past_the_limit_times_out(server):
    url = server.on("/dw", hang())
    started = time.monotonic()
    result = run(url, timeout=0.3)
    assert time.monotonic() - started < 1.5
    (rec,) = result.requests
    assert rec.error == "timeout" and 250 <= rec.elapsed_ms < 1000
    assert result.exit_code == 1 and result.outcome == "nobody dialled"


def test_timeout_falls_back_but_still_breaks_the_contract(server):
    url = server.on("/dw", hang())
    fallback = server.on("/fb", text(OWNER))
    result = run(url, timeout=0.3, fallback_url=fallback, answers=["completed"])
    assert [r.target for r in result.requests] == ["primary", "fallback"]
    assert result.answered_by == OWNER
    assert result.exit_code == 1 and "0.3 s" in messages(result.violations)


def test_trickled_body_hits_the_total_limit_not_a_per_read_one(server):
    url = server.on("/dw", trickle(f"{OWNER},{BACKUP}", delay=0.1))  # ~2.7 s in all
    started = time.monotonic()
    result = run(url, timeout=0.5)
    assert time.monotonic() - started < 1.2
    assert result.requests[0].error == "timeout" and result.exit_code == 1


def test_slow_but_in_time_answer_is_a_warning(server):
    url = server.on("/dw", trickle(OWNER, delay=0.05))  # ~0.65 s, limit 1 s
    result = run(url, timeout=1.0, answers=["completed"])
    assert result.exit_code == 0 and result.answered_by == OWNER
    assert "caller hears silence" in messages(result.warnings)


@pytest.mark.parametrize("body, expected", [
    ("", "empty body"),
    ("   \n", "empty body"),
    (json.dumps({"numbers": [OWNER]}), "JSON"),
    (f"Owner: {OWNER}", "labelled"),
    ("09800000001", "national format"),
    (f"{OWNER};{BACKUP}", "commas"),
    ("+91 98000 00001", "whitespace"),
    ("<html>oops</html>", "HTML"),
])
def test_invalid_200_dials_nobody_and_never_falls_back(server, body, expected):
    url = server.on("/dw", text(body))
    fallback = server.on("/fb", text(OWNER))
    result = run(url, fallback_url=fallback, answers=["completed"])
    assert server.params("/fb") == []
    assert result.outcome == "nobody dialled" and result.attempts == []
    assert result.exit_code == 1 and expected in messages(result.violations)


def test_spaces_and_trailing_comma_are_warnings_and_numbers_still_dialled(server):
    url = server.on("/dw", text(f"{OWNER}, {BACKUP},\n"))
    result = run(url, answers=["busy", "completed"])
    assert result.exit_code == 0 and result.answered_by == BACKUP
    warned = messages(result.warnings)
    assert "whitespace around" in warned and "empty entry" in warned


def test_wrong_content_type_is_a_warning_not_a_failure(server):
    url = server.on("/dw", text(OWNER, content_type="application/json"))
    result = run(url, answers=["completed"])
    assert result.exit_code == 0 and result.answered_by == OWNER
    assert "Content-Type is application/json" in messages(result.warnings)


def test_sip_ids_are_accepted(server):
    url = server.on("/dw", text("sip:agent42," + OWNER))
    result = run(url, answers=["completed"])
    assert result.answered_by == "sip:agent42" and result.exit_code == 0


@pytest.mark.parametrize("body, numbers, levels", [
    (f"{OWNER},{BACKUP}", (OWNER, BACKUP), set()),
    (f"{OWNER},{OWNER}", (OWNER,), {"warning"}),
    ("+123", (), {"violation"}),
    ("+0919800000001", (), {"violation"}),
    (f"{OWNER},919800000002", (), {"violation"}),
    ("sip:", (), {"violation"}),
])
def test_check_body_table(body, numbers, levels):
    check = check_body(body)
    assert check.numbers == numbers
    assert {level for level, _ in check.findings} == levels


# --- the Dynamic URL variant (Exotel-Version: 1.0) ---------------------------------------------


def dynamic(numbers, fetch_after_attempt=None, **extra) -> Handler:
    doc = {"destination": {"numbers": numbers}, **extra}
    if fetch_after_attempt is not None:
        doc["fetch_after_attempt"] = fetch_after_attempt
    return text(json.dumps(doc), content_type="application/json")


def test_version_1_0_sends_the_header_and_reads_json(server):
    seen = []

    def handle(h, srv):
        seen.append(h.headers.get("Exotel-Version"))
        dynamic([OWNER, BACKUP], fetch_after_attempt=True)(h, srv)

    url = server.on("/connect", handle)
    result = run(url, exotel_version="1.0", answers=["busy", "completed"])
    assert seen == ["1.0", "1.0"] and result.fetch_after_attempt is True
    assert server.params("/connect")[1]["DialCallStatus"] == "busy"
    assert result.answered_by == BACKUP and result.exit_code == 0 and not result.warnings


def test_version_1_0_without_fetch_after_attempt_walks_the_list(server):
    url = server.on("/connect", dynamic([OWNER, BACKUP]))  # absent: false
    result = run(url, exotel_version="1.0")
    assert len(result.requests) == 1 and len(result.attempts) == 2
    assert result.fetch_after_attempt is False and result.exit_code == 0


@pytest.mark.parametrize("body, expected", [
    (sample.ASHA, "not JSON"),
    (json.dumps({"destination": {"numbers": []}}), "empty"),
    (json.dumps({"destination": [{"contact_uri": OWNER}]}), "1.1 beta"),
    (json.dumps({"destination": {"numbers": ["09800000001"]}}), "national format"),
    (json.dumps({"numbers": [OWNER]}), "no destination.numbers"),
])
def test_version_1_0_invalid_answers(body, expected):
    check = check_json_body(body)
    assert not check.accepted and check.numbers == ()
    assert expected in " ".join(m for _, m in check.findings)


def test_version_1_0_text_plain_is_a_warning(server):
    url = server.on("/connect", text(json.dumps({"destination": {"numbers": [OWNER]}})))
    result = run(url, exotel_version="1.0", answers=["completed"])
    assert result.exit_code == 0 and "expects application/json" in messages(result.warnings)


# --- output -----------------------------------------------------------------------------------


def test_token_is_masked_in_the_transcript_and_json(server, capsys):
    url = server.on("/dw", text(OWNER)) + "?token=s3cret-value&x=1"
    assert main([url, "--answers", "completed", "--timeout", "0.5",
                 "--param", "api_key=k3y"]) == 0
    out = capsys.readouterr().out
    assert "token=***" in out and "s3cret" not in out and "k3y" not in out
    assert server.params("/dw")[0]["token"] == "s3cret-value"  # the real value was sent
    assert main([url, "--json", "--timeout", "0.5"]) == 0
    assert "s3cret" not in capsys.readouterr().out
    assert mask_query_secrets("https://u:pw@h/p?a=1&token=t") == "https://u:***@h/p?a=1&token=***"


def test_transcript_shows_requests_attempts_and_outcome(server, capsys):
    url = server.on("/dw", text(f"{OWNER},{BACKUP}", content_type="text/html"))
    assert main([url, "--answers", "busy,completed", "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "#1 GET primary" in out and "#2 GET primary" in out
    assert f"dial {OWNER} -> busy" in out and f"dial {BACKUP} -> completed" in out
    assert f"DialWhomNumber={OWNER} DialCallStatus=busy" in out
    assert f"answered by {BACKUP} on attempt 2; contract kept" in out
    assert "warning: Content-Type is text/html" in out
    assert "\x1b[" not in out  # not a TTY: no colour


def test_colour_only_when_asked(server):
    result = run(server.on("/dw", text(OWNER)), answers=["completed"])
    assert "\x1b[" in render_transcript(result, colour=True)
    assert "\x1b[" not in render_transcript(result)


def test_json_output_parses(server, capsys):
    url = server.on("/dw", text("boom", 500))
    assert main([url, "--json", "--timeout", "0.5", "--call-sid", "c" * 32]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["outcome"] == "nobody dialled" and doc["exit_code"] == 1
    assert doc["call_sid"] == "c" * 32 and doc["requests"][0]["status"] == 500
    assert doc["violations"] and doc["contract_kept"] is False


def test_quiet_prints_only_the_outcome_line(server, capsys):
    url = server.on("/dw", text(""))
    assert main([url, "-q", "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("nobody dialled")
    assert "contract broken (" in out


# --- usage errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    [],
    ["http://127.0.0.1:9/x", "--answers", "maybe"],
    ["http://127.0.0.1:9/x", "--answers", "busy", "--scenario", "s.json"],
    ["http://127.0.0.1:9/x", "--timeout", "0"],
    ["http://127.0.0.1:9/x", "--param", "novalue"],
    ["http://127.0.0.1:9/x", "--json", "-q"],
    ["ftp://example.com/x"],
    ["http://127.0.0.1:9/x", "--fallback-url", "nonsense"],
    ["http://127.0.0.1:9/x", "--scenario", "/nonexistent/scenario.json"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_bad_scenario_content_exits_2(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"answers": {OWNER: "picked-up"}}))
    assert main(["http://127.0.0.1:9/x", "--scenario", str(path)]) == 2
    assert "picked-up" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def test_options_reject_unknown_outcomes():
    with pytest.raises(UsageError):
        SimulationOptions(answers=["maybe"])


# --- wiring ---------------------------------------------------------------------------------------


def test_parent_cli_dispatches_simulate(server, capsys):
    url = server.on("/dw", text(OWNER))
    parent = argparse.ArgumentParser(prog="dialwhom")
    build_parser(parent.add_subparsers(dest="command", required=True))
    args = parent.parse_args(["simulate", url, "--answers", "completed", "-q", "--timeout", "1"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith(f"answered by {OWNER}")


def test_runs_as_a_module(server):
    url = server.on("/dw", text(OWNER))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "dialwhom.simulator", url, "-q",
                           "--answers", "completed"], capture_output=True, text=True,
                          cwd=root, env=env, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"answered by {OWNER}")
