"""The operator console through the real app (Flask test client): sign-in, cookie, pages,
JSON, redaction, and that try-a-number records nothing (docs/console.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sample import ASHA, ASHA_CUSTOMER, FALLBACK, MEERA, NORTH2, NORTH3, sample_config

from dialwhom.routing.redact import mask
from dialwhom.routing.recent import RecentDecisions

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_TOKEN = "console-secret-0123456789abcdef"
EXOTEL_TOKEN = "exotel-token-0123456789abcdef"
PAGES = ("/console/live", "/console/now", "/console/charts", "/console/try")
APIS = ("/console/api/decisions", "/console/api/now")

def config(**extra):
    return sample_config(console_token=CONSOLE_TOKEN, token=EXOTEL_TOKEN,
                         connectors=[{"id": "accounts", "type": "directory", "path": str(ROOT / "examples" / "accounts.csv")}], **extra)

@pytest.fixture
def app(make_app):
    return make_app(config())

def sign_in(client, token=CONSOLE_TOKEN):
    return client.post("/console/login", data={"token": token})

def csrf(client, page="/console/try") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(page).get_data(as_text=True)).group(1)

def call(client, caller=ASHA_CUSTOMER, sid="call-1", **extra):
    return client.get("/exotel/dial-whom", query_string={"token": EXOTEL_TOKEN, "CallSid": sid, "CallFrom": caller, **extra})

def test_no_console_token_means_no_console(make_app):
    client = make_app(sample_config()).test_client()
    for path in ("/console", "/console/login", "/console/live", "/console/api/decisions"):
        assert client.get(path).status_code == 404
    assert client.post("/console/login", data={"token": "x" * 30}).status_code == 404

def test_pages_need_a_session(app):
    client = app.test_client()
    for page in PAGES:
        resp = client.get(page)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/console/login")
    for api in APIS:
        assert client.get(api).status_code == 401
    assert client.get("/console/login").status_code == 200

def test_wrong_token_is_refused_and_sets_no_cookie(app):
    client = app.test_client()
    resp = sign_in(client, "wrong-token-0123456789abcdef")
    assert resp.status_code == 403
    assert "wrong token" in resp.get_data(as_text=True)
    assert "Set-Cookie" not in resp.headers
    assert client.get("/console/api/decisions").status_code == 401
    # the Exotel token is not the console token
    assert sign_in(client, EXOTEL_TOKEN).status_code == 403

def test_sign_in_sets_a_signed_httponly_strict_cookie_without_the_token(app):
    client = app.test_client()
    resp = sign_in(client)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/console/live")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert CONSOLE_TOKEN not in cookie
    assert client.get("/console/live").status_code == 200
    # over HTTPS the cookie is Secure too
    secure = app.test_client()
    assert "Secure" in secure.post("/console/login", data={"token": CONSOLE_TOKEN}, base_url="https://localhost").headers["Set-Cookie"]

def test_a_forged_or_tampered_cookie_is_refused(app):
    client = app.test_client()
    sign_in(client)
    good = client.get_cookie("dialwhom_console", path="/console").value
    client.set_cookie("dialwhom_console", good[:-2] + ("AA" if not good.endswith("AA") else "BB"), path="/console")
    assert client.get("/console/api/decisions").status_code == 401

def test_a_cookie_from_another_console_token_is_refused(make_app):
    other = make_app(sample_config(console_token="another-secret-0123456789")).test_client()
    sign_in(other, "another-secret-0123456789")
    cookie = other.get_cookie("dialwhom_console", path="/console").value
    client = make_app(config()).test_client()
    client.set_cookie("dialwhom_console", cookie, path="/console")
    assert client.get("/console/api/decisions").status_code == 401

def test_sign_out_ends_the_session_and_needs_the_csrf_token(app):
    client = app.test_client()
    sign_in(client)
    cookie = client.get_cookie("dialwhom_console", path="/console").value
    assert client.post("/console/logout").status_code == 403  # no CSRF token: refused
    resp = client.post("/console/logout", data={"csrf": csrf(client, "/console/live")})
    assert resp.status_code == 303
    assert client.get("/console/api/decisions").status_code == 401
    client.set_cookie("dialwhom_console", cookie, path="/console")  # the old cookie replayed
    assert client.get("/console/api/decisions").status_code == 401

def test_security_headers(app):
    client = app.test_client()
    sign_in(client)
    resp = client.get("/console/live")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"

def test_a_call_appears_in_the_live_json_with_its_reasons(app):
    client = app.test_client()
    sign_in(client)
    assert call(client).status_code == 200
    call(client, caller="09000000001", sid="call-2")  # unknown caller
    doc = client.get("/console/api/decisions").get_json()
    newest, older = doc["decisions"][:2]
    assert newest["path"] == "not-found" and newest["first"]["why"] == "fallback"
    assert older["path"] == "fresh" and older["caller"] == mask("+919876543210")
    assert older["first"] == {"number": mask(ASHA), "why": "owner"}
    assert [s["why"] for s in older["plan"]] == ["owner", "team:north", "team:north", "fallback"]
    assert older["lookups"][0]["connector"] == "accounts" and older["lookups"][0]["outcome"] == "found"
    assert older["team"] == "north" and older["owner_first"] is True
    detail = client.get(f"/console/api/decisions/{older['id']}").get_json()
    assert detail == older
    page = client.get(f"/console/decision/{older['id']}").get_data(as_text=True)
    assert "answer path: fresh" in page
    assert client.get("/console/api/decisions/nope").status_code == 404

def test_filters(app):
    client = app.test_client()
    sign_in(client)
    call(client)
    call(client, caller="09000000001", sid="call-2")
    call(client, sid="call-1")  # a repeat request of call-1
    paths = lambda **q: [e["path"] for e in client.get("/console/api/decisions", query_string=q).get_json()["decisions"]]  # noqa: E731
    assert paths() == ["repeat", "not-found", "fresh"]
    assert paths(path="fresh") == ["fresh"]
    assert paths(team="north") == ["repeat", "fresh"]
    assert paths(connector="accounts") == ["not-found", "fresh"]  # the repeat asked no connector
    assert paths(connector="nobody") == []

def test_the_ring_is_bounded_newest_first():
    from types import SimpleNamespace

    from dialwhom.routing.plan import Plan, Step
    from dialwhom.routing.request import ExotelRequest
    from dialwhom.routing.trace import Trace

    from datetime import datetime, timezone

    class Clock:
        def now(self):
            return datetime.fromtimestamp(100, timezone.utc)

        def time(self):
            return 100.0

        def monotonic(self):
            return 7.0

    recent = RecentDecisions(size=3, clock=Clock())
    for i in range(5):
        recent.record("dial-whom", ExotelRequest(caller=f"+9198000000{i:02d}"), SimpleNamespace(plan=Plan((Step(FALLBACK, "fallback"),)), trace=Trace(call_sid=f"c{i}", path="not-found")))
    assert [e["call"] for e in recent.entries()] == ["c4", "c3", "c2"]
    minute = recent.buckets()[100 // 60]
    assert minute.answers == 5 and minute.paths == {"not-found": 5} and minute.owner_first == 0

def test_try_a_number_gives_the_clis_plan_and_records_nothing(app, capsys, tmp_path):
    from dialwhom.cli import main

    client = app.test_client()
    sign_in(client)
    service = app.extensions["dialwhom"].service
    before = (service.metrics.tallies(), len(service.cache), len(service.calls), len(service.recent.entries()))
    resp = client.post("/console/try", data={"csrf": csrf(client), "number": ASHA_CUSTOMER})
    page = resp.get_data(as_text=True)
    after = (service.metrics.tallies(), len(service.cache), len(service.calls), len(service.recent.entries()))
    assert before == after  # no metrics, no cache entry, no per-call plan, no recent decision
    shown = re.search(r'<pre class="card explain" id="explain">(.*?)</pre>', page, re.S).group(1).replace("&gt;", ">")
    # the CLI on the same config (written to a file), numbers masked, timings aside
    import yaml

    cfg_file = tmp_path / "dialwhom.yaml"
    cfg_file.write_text(yaml.safe_dump(config()))
    assert main(["lookup", ASHA_CUSTOMER, "--explain", "--config", str(cfg_file)]) == 0
    cli = capsys.readouterr().out
    masked = re.sub(r"\+\d{8,15}", lambda m: mask(m.group()), cli)
    untimed = lambda text: [re.sub(r"\d+(\.\d+)? ms", "N ms", line) for line in text.strip().splitlines()]  # noqa: E731
    assert untimed(shown) == untimed(masked)
    assert f"1. {mask(ASHA)}  (owner)" in shown and mask(NORTH2) in shown and mask(NORTH3) in shown

def test_try_a_number_needs_csrf_and_reports_bad_input(app):
    client = app.test_client()
    sign_in(client)
    assert client.post("/console/try", data={"number": ASHA_CUSTOMER}).status_code == 403
    page = client.post("/console/try", data={"csrf": csrf(client), "number": "not a number"}).get_data(as_text=True)
    assert "is not a phone number" in page
    page = client.post("/console/try", data={"csrf": csrf(client)}).get_data(as_text=True)
    assert "give a number" in page

def test_now_shows_people_teams_connectors_and_caches(app):
    client = app.test_client()
    sign_in(client)
    call(client)
    doc = client.get("/console/api/now").get_json()
    assert {p["phones"][0] for p in doc["people"]} >= {mask(ASHA), mask(NORTH3)}
    north = next(t for t in doc["teams"] if t["name"] == "north")
    assert north["backups"] == [mask(NORTH2), mask(NORTH3)]
    (accounts,) = doc["connectors"]
    assert accounts["breaker"]["state"] == "closed" and accounts["latency_ms"]["calls"] == 1
    assert doc["caches"]["cached_lookups"] == 1 and doc["caches"]["remembered_calls"] == 1
    assert doc["config"]["file"] == "<dict>"
    assert "<svg" in client.get("/console/charts").get_data(as_text=True)

def test_charts_count_answers_and_owner_first(app):
    client = app.test_client()
    sign_in(client)
    call(client)
    call(client, caller="09000000001", sid="call-2")
    page = client.get("/console/charts").get_data(as_text=True)
    assert page.count("<svg") == 6
    assert "1 of 2 new calls" in page
    assert "fresh 1" in page and "not-found 1" in page

def test_no_full_number_or_secret_anywhere(app):
    client = app.test_client()
    sign_in(client)
    call(client)
    call(client, caller="09000000001", sid="call-2", CallTo="08039513882")
    client.post("/console/try", data={"csrf": csrf(client), "number": ASHA_CUSTOMER, "line": "08039513882"})
    entry = client.get("/console/api/decisions").get_json()["decisions"][0]["id"]
    bodies = [client.get(p).get_data(as_text=True) for p in (*PAGES, *APIS, f"/console/decision/{entry}", f"/console/api/decisions/{entry}", "/console/login")]
    bodies.append(client.post("/console/try", data={"csrf": csrf(client), "number": ASHA_CUSTOMER, "line": "08039513882"}).get_data(as_text=True))
    settings = app.extensions["dialwhom"].settings
    numbers = {n for r in settings.reps for n in r.phones} | {n for ns in settings.teams.values() for n in ns} | set(settings.fallback) | set(settings.lines)
    secrets = {CONSOLE_TOKEN, EXOTEL_TOKEN}
    for body in bodies:
        for n in numbers | {"+919876543210", "9876543210", "8039513882"}:
            assert n.lstrip("+")[-10:] not in body, n
        for s in secrets:
            assert s not in body

def test_recent_decisions_are_shared_through_redis(make_app, redis_client):
    client, prefix = redis_client
    shared = {"url": "redis://127.0.0.1:6379/0", "prefix": prefix}
    one, two = make_app(config(shared_state=shared)), make_app(config(shared_state=shared))
    c1, c2 = one.test_client(), two.test_client()
    call(c1)
    import time

    for _ in range(100):  # the pusher thread sends it within PUSH_EVERY_S
        if client.llen(prefix + "recent"):
            break
        time.sleep(0.02)
    sign_in(c2)
    (entry,) = c2.get("/console/api/decisions").get_json()["decisions"]
    assert entry["path"] == "fresh" and entry["caller"] == mask("+919876543210")
    assert c2.get(f"/console/api/decisions/{entry['id']}").get_json() == entry  # the detail from another instance
    raw = b"".join(client.lrange(prefix + "recent", 0, -1))
    assert b"9876543210" not in raw  # masked in Redis too

def test_redis_down_shows_this_instances_own_list(make_app):
    app = make_app(config(shared_state={"url": "redis://127.0.0.1:1/0", "timeout_ms": 20}))
    client = app.test_client()
    sign_in(client)
    call(client)
    app.extensions["dialwhom"].service.recent.flush()
    (entry,) = client.get("/console/api/decisions").get_json()["decisions"]
    assert entry["path"] == "fresh"
    assert app.extensions["dialwhom"].service.recent.redis_errors >= 1

def test_console_token_must_be_long():
    from dialwhom.routing.config import ConfigError, from_mapping

    with pytest.raises(ConfigError, match="console_token"):
        from_mapping({"console_token": "short"})
    assert repr(from_mapping({"console_token": CONSOLE_TOKEN}).console_token) == "Secret('co***')"

def test_the_console_follows_the_runtime_it_finds_per_request(make_app):
    """A reload swaps the runtime whole: dropping console_token closes the console at once."""
    from dialwhom.integrations.runtime import build_runtime

    app = make_app(config())
    client = app.test_client()
    sign_in(client)
    assert client.get("/console/api/now").status_code == 200
    old = app.extensions["dialwhom"]
    app.extensions["dialwhom"] = build_runtime(sample_config())
    try:
        assert client.get("/console/api/now").status_code == 404
        assert client.get("/console/login").status_code == 404
    finally:
        app.extensions["dialwhom"].close()
        app.extensions["dialwhom"] = old

# -- with availability (routing/availability.py): Now shows it, Try a number takes a moment ------

def avail_config():
    cfg = config(timezone="Asia/Kolkata", schedules={"office": {"mon-fri": "09:30-18:30"}})
    cfg["teams"]["north"]["hours"] = "office"
    cfg["reps"][0]["away"] = [{"from": "2026-11-20", "to": "2026-12-05"}]
    return cfg

def availability_now(client) -> dict[str, str]:
    return {p["phones"][0]: p["availability"] for p in client.get("/console/api/now").get_json()["people"]}

def test_now_shows_each_agents_availability(make_app, clock):
    app = make_app(avail_config(), clock=clock)  # the fake clock: Tue 2026-12-01 15:30 in Kolkata
    client = app.test_client()
    sign_in(client)
    now = availability_now(client)
    assert now[mask(ASHA)] == "away until 2026-12-05"
    assert now[mask(NORTH3)] == "in hours 'office'"
    assert now[mask(MEERA)] == "available (no hours set)"  # south keeps no hours
    app.extensions["dialwhom"].service.ledger.mark_busy(NORTH3, clock.now().timestamp())
    assert availability_now(client)[mask(NORTH3)] == "busy since 15:30"
    clock.advance(60)
    assert availability_now(client)[mask(NORTH3)] == "busy since 15:30"
    clock.advance(6 * 3600)  # 21:31 in Kolkata; the busy mark has lapsed (busy_ttl_s)
    assert availability_now(client)[mask(NORTH3)] == "outside hours 'office'"

def test_try_a_number_at_a_moment_is_lookup_at(make_app, capsys, tmp_path):
    import yaml

    from dialwhom.cli import main

    client = make_app(avail_config()).test_client()
    sign_in(client)
    at = "2026-12-10 11:00"  # a Thursday in office hours, Asha back from leave
    page = client.post("/console/try", data={"csrf": csrf(client), "number": ASHA_CUSTOMER, "at": at}).get_data(as_text=True)
    shown = re.search(r'<pre class="card explain" id="explain">(.*?)</pre>', page, re.S).group(1).replace("&gt;", ">").replace("&#39;", "'")
    (tmp_path / "dialwhom.yaml").write_text(yaml.safe_dump(avail_config()))
    assert main(["lookup", ASHA_CUSTOMER, "--explain", "--at", at, "--config", str(tmp_path / "dialwhom.yaml")]) == 0
    cli = re.sub(r"\+\d{8,15}", lambda m: mask(m.group()), capsys.readouterr().out)
    untimed = lambda text: [re.sub(r"\d+(\.\d+)? ms", "N ms", line) for line in text.strip().splitlines()]  # noqa: E731
    assert untimed(shown) == untimed(cli)
    assert shown.startswith(f"1. {mask(ASHA)}  (owner)")
    at_night = client.post("/console/try", data={"csrf": csrf(client), "number": ASHA_CUSTOMER, "at": "2026-12-10 23:00"}).get_data(as_text=True)
    assert "outside hours" in at_night and f"1. {mask(ASHA)}  (owner)" not in at_night
    bad = client.post("/console/try", data={"csrf": csrf(client), "number": ASHA_CUSTOMER, "at": "tomorrow-ish"}).get_data(as_text=True)
    assert 'id="try-error"' in bad

def test_a_skipped_owner_is_in_the_live_entry_with_the_reason(make_app, clock):
    client = make_app(avail_config(), clock=clock).test_client()  # Asha is away until 2026-12-05
    sign_in(client)
    call(client)
    (entry,) = client.get("/console/api/decisions").get_json()["decisions"]
    assert entry["first"]["why"] != "owner"
    assert any("away until 2026-12-05" in s for s in entry["skips"]), entry["skips"]
    assert "skipped: " in client.get("/console/live").get_data(as_text=True)

# -- with operations (integrations/reload.py): config version and the last reload on Now ---------

def test_now_shows_the_config_version_and_the_last_reload(make_app):
    app = make_app(config())
    if "dialwhom.reload" not in app.extensions:
        pytest.skip("this app has no reloads yet (issue 14: integrations/reload.py)")
    client = app.test_client()
    sign_in(client)
    first = client.get("/console/api/now").get_json()["config"]
    assert first["version"] == app.extensions["dialwhom"].settings.version and first["last_reload"] is None
    bad = config(fallback=["+91 98000 0000"])  # one digit short: refused, and quoted in the error
    assert app.extensions["dialwhom.reload"].reload(bad)["ok"] is False
    refused = client.get("/console/api/now").get_json()["config"]
    assert refused["version"] == first["version"] and refused["last_reload"]["ok"] is False
    assert refused["last_reload"]["key"].startswith("fallback")
    page = client.get("/console/now").get_data(as_text=True)
    assert "980000000" not in page and "98000 0000" not in page
    assert app.extensions["dialwhom.reload"].reload(config(max_numbers=3))["ok"] is True
    after = client.get("/console/api/now").get_json()["config"]
    assert after["version"] != first["version"] and after["last_reload"]["ok"] is True
    assert client.get("/console/api/decisions").status_code == 200  # the swapped runtime serves the console
