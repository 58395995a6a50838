"""Availability end to end: the popup URL through the real app, `dialwhom lookup --at` through cli.main."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from avail_config import ASHA, FALLBACK, NORTH3, RAVI, VIKRAM, config, ist
from dialwhom.app import TRACE_HEADER, create_app
from dialwhom.cli import main
from dialwhom.routing.availability import FixedClock

TOKEN = "t" * 24
CALLER = "09876543210"


def app_config(tmp_path, **changes):
    (tmp_path / "accounts.csv").write_text("account_id,account_name,phones,owner\nA-1,Acme,09876543210,asha@example.com\n")
    return config(connectors=[{"id": "accounts", "type": "directory", "path": str(tmp_path / "accounts.csv")}],
                  token=TOKEN, log_level="WARNING", **changes)


@pytest.fixture
def app(tmp_path):
    reps = config()["reps"]
    reps[0]["away"] = [{"from": "2026-12-24", "to": "2026-12-26", "delegate": "ravi@example.com"}]
    teams = config()["teams"]
    teams["north"].update(ring_timeout_s=20, parallel=2)
    a = create_app(app_config(tmp_path, reps=reps, teams=teams), clock=FixedClock(ist("2026-12-01 10:41")))
    yield a
    a.extensions["dialwhom"].close()


def dial(client, sid, path="/exotel/dial-whom", **extra):
    return client.get(path, query_string={"CallSid": sid, "CallFrom": CALLER, "token": TOKEN, **extra})


def test_an_agent_event_changes_the_next_new_calls_plan(app):
    c = app.test_client()
    first = dial(c, "e2e-1")
    assert first.get_data(as_text=True) == f"{ASHA},{VIKRAM},{NORTH3},{FALLBACK}"
    event = {"CallSid": "e2e-1", "DialWhomNumber": "09800000001", "Status": "busy", "EventType": "Answered", "token": TOKEN}
    r = c.get("/exotel/agent-event", query_string=event)
    assert r.status_code == 200 and r.get_data(as_text=True) == "ok: busy\n"
    second = dial(c, "e2e-2")
    assert second.get_data(as_text=True) == f"{VIKRAM},{NORTH3},{ASHA},{FALLBACK}"
    assert "skipped=owner busy since 10:41, moved behind the available agents" in second.headers[TRACE_HEADER]
    # the first call's repeat requests keep its plan
    assert dial(c, "e2e-1", DialWhomNumber=ASHA, DialCallStatus="busy").get_data(as_text=True).startswith(ASHA)
    # free, by a form POST with the token in the query string, as the newer developer site shows
    r = c.post(f"/exotel/agent-event?token={TOKEN}", data={"CallSid": "e2e-1", "DialWhomNumber": ASHA, "Status": "free", "EventType": "Terminal"})
    assert r.get_data(as_text=True) == "ok: free\n"
    assert dial(c, "e2e-3").get_data(as_text=True).startswith(ASHA)
    # and by a JSON POST
    c.post(f"/exotel/agent-event?token={TOKEN}", json={"CallSid": "e2e-3", "DialWhomNumber": VIKRAM, "Status": "busy"})
    assert dial(c, "e2e-4").get_data(as_text=True) == f"{ASHA},{NORTH3},{VIKRAM},{FALLBACK}"
    metrics = c.get("/metrics").get_data(as_text=True)
    assert 'dialwhom_owner_routing_total{reason="busy",result="skipped"} 1.0' in metrics
    assert 'dialwhom_owner_routing_total{reason="first",result="rung-first"} 3.0' in metrics


def test_agent_event_is_token_guarded_and_always_200_otherwise(app):
    c = app.test_client()
    assert c.get("/exotel/agent-event", query_string={"DialWhomNumber": ASHA, "Status": "busy"}).status_code == 403
    r = c.get("/exotel/agent-event", query_string={"CallSid": "never", "DialWhomNumber": "+919999999999", "Status": "busy", "token": TOKEN})
    assert (r.status_code, r.get_data(as_text=True)) == (200, "ok: nobody\n")
    r = c.get("/exotel/agent-event", query_string={"token": TOKEN})
    assert (r.status_code, r.get_data(as_text=True)) == (200, "ok: ignored\n")
    r = c.post(f"/exotel/agent-event?token={TOKEN}", data="not json", content_type="application/json")
    assert r.status_code == 200
    assert dial(c, "guard-1").get_data(as_text=True).startswith(ASHA)  # nothing above steered routing


def test_connect_json_carries_the_teams_options(app):
    doc = dial(app.test_client(), "json-1", path="/exotel/connect").get_json()
    assert doc["destination"]["numbers"] == [ASHA, VIKRAM, NORTH3, FALLBACK]
    assert doc["max_ringing_duration"] == 20
    assert doc["parallel_ringing"] == {"activate": True, "max_parallel_attempts": 2}


def test_the_app_reads_the_injected_clock(app):
    app.extensions["dialwhom"].service.clock.advance(23 * 86400)  # 2026-12-24 10:41
    r = dial(app.test_client(), "leave-1")
    assert r.get_data(as_text=True) == f"{RAVI},{VIKRAM},{NORTH3},{FALLBACK}"
    assert "skipped=owner away until 2026-12-26, delegate Ravi" in r.headers[TRACE_HEADER]


# -- dialwhom lookup --at ------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "dialwhom.yaml"
    path.write_text(yaml.safe_dump(app_config(tmp_path)))
    return str(path)


def test_lookup_at_gives_the_plan_at_that_moment(config_file, capsys):
    assert main(["lookup", CALLER, "--config", config_file, "--at", "2026-12-24 11:00", "--explain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"1. {RAVI}  (delegate)\n2. {VIKRAM}  (team:north)\n")
    assert "  skipped: owner away until 2027-01-02; delegate Ravi\n" in out
    assert main(["lookup", CALLER, "--config", config_file, "--at", "2026-12-24 19:30", "-q"]) == 0
    assert capsys.readouterr().out == f"{FALLBACK}\n"
    # an offset wins over the config's zone: 05:30 UTC is 11:00 in India
    assert main(["lookup", CALLER, "--config", config_file, "--at", "2027-01-04 05:30+00:00", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["numbers"][0] == ASHA and doc["skipped"] == []


def test_lookup_at_with_a_bad_moment_is_a_usage_error(config_file, capsys):
    assert main(["lookup", CALLER, "--config", config_file, "--at", "next tuesday"]) == 2
    assert "YYYY-MM-DD HH:MM" in capsys.readouterr().err


# -- the README's samples are what the code prints -----------------------------------------------

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SAMPLE = """
timezone: Asia/Kolkata
schedules:
  office: {mon-fri: "09:30-18:30", sat: "10:00-14:00"}
  late: {mon-sat: "12:00-21:00"}
holidays: ["2026-12-25"]
connectors: [{id: accounts, type: directory, path: accounts.csv}]
reps:
  - {owner: asha@example.com, phone: "+919800000001", team: north,
     away: [{from: "2026-12-20", to: "2027-01-02", delegate: ravi@example.com}]}
  - {owner: ravi@example.com, name: Ravi, phone: "+919800000004", team: north, hours: late}
  - {owner: vikram@example.com, phone: "+919800000002", team: north, timezone: Asia/Dubai}
teams:
  north: {backup: ["+919800000002", "+919800000003"], hours: office}
fallback: ["+918000000000"]
"""
_MS = re.compile(r"\d+(\.\d+)? ?ms")


def test_the_readme_samples_are_what_the_code_prints(tmp_path, capsys):
    (tmp_path / "accounts.csv").write_text("account_id,account_name,phones,owner\nA-1001,Acme Traders,09876543210,asha@example.com\n")
    (tmp_path / "dialwhom.yaml").write_text(SAMPLE)
    assert main(["lookup", CALLER, "--config", str(tmp_path / "dialwhom.yaml"), "--at", "2026-12-24 19:30", "--explain"]) == 0
    printed = capsys.readouterr().out.strip()
    sample = README.split('--at "2026-12-24 19:30" --explain', 1)[1].split("```", 2)[1]
    assert [_MS.sub("N ms", ln.strip()) for ln in printed.splitlines()] == [_MS.sub("N ms", ln.strip()) for ln in sample.strip().splitlines()]

    clock = FixedClock(ist("2027-01-04 10:41"))
    app = create_app(str(tmp_path / "dialwhom.yaml"), clock=clock)
    try:
        c = app.test_client()
        c.get("/exotel/dial-whom", query_string={"CallSid": "r1", "From": CALLER})
        c.get("/exotel/agent-event", query_string={"CallSid": "r1", "DialWhomNumber": "09800000001", "Status": "busy"})
        clock.advance(540)
        header = c.get("/exotel/dial-whom", query_string={"CallSid": "r2", "From": CALLER}).headers[TRACE_HEADER]
    finally:
        app.extensions["dialwhom"].close()
    assert _MS.sub("N ms", header) in _MS.sub("N ms", " ".join(README.split())), header
