"""Operating the service (issue 14), in-process: reloads and what they keep, the CSV watcher,
forget, operator endpoints behind ops_token, POST on every Exotel route, ProxyFix, config
errors for numbers that cannot ring, the log formats, and the commands' messages."""

from __future__ import annotations

import sample
import io
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from werkzeug.test import EnvironBuilder

from dialwhom import logs
from dialwhom.app import create_app
from dialwhom.cli import main
from dialwhom.integrations.rundir import RunDir, caller_digest
from dialwhom.routing.config import ConfigError, from_mapping
from dialwhom.routing.trace import Step, Trace

OPS = "ops-" + "0123456789abcdef"
AUTH = {"Authorization": f"Bearer {OPS}"}
CSV = "account_id,account_name,phones,owner\nA-1,Acme,09876543210,asha@example.com\n"
ASHA, RAVI, FALLBACK = sample.ASHA, "+919800000021", sample.FALLBACK
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(folder, **over) -> dict:
    (folder / "accounts.csv").exists() or (folder / "accounts.csv").write_text(CSV)
    base = {
        "connectors": [{"id": "accounts", "type": "directory", "path": str(folder / "accounts.csv")}],
        "reps": [{"owner": "asha@example.com", "phone": ASHA}, {"owner": "ravi@example.com", "phone": RAVI}],
        "fallback": [FALLBACK],
        "ops_token": OPS,
    }
    base.update(over)
    return base


@pytest.fixture
def made():
    apps = []
    yield apps
    for a in apps:
        a.extensions["dialwhom.watcher"].stop()
        a.extensions["dialwhom"].close()


@pytest.fixture
def app(tmp_path, made, monkeypatch):
    monkeypatch.delenv("DIALWHOM_RUN_DIR", raising=False)
    a = create_app(config(tmp_path))
    made.append(a)
    return a


def dial(client, query="CallSid=c1&From=09876543210"):
    return client.get(f"/exotel/dial-whom?{query}")


# -- reload in-process -----------------------------------------------------------------------


def test_a_good_reload_swaps_whole_and_keeps_unchanged_caches(app, tmp_path):
    client = app.test_client()
    first = dial(client)
    old = app.extensions["dialwhom"]
    assert first.get_data(as_text=True) == f"{ASHA},{FALLBACK}"
    assert first.headers["X-Dialwhom-Trace"].endswith("cfg=" + old.settings.version)
    result = app.extensions["dialwhom.reload"].reload(config(tmp_path, fallback=["+918000000001"]))
    new = app.extensions["dialwhom"]
    assert result["ok"] and result["version"] == new.settings.version != old.settings.version
    assert result["connectors_rebuilt"] == []
    assert new.connectors[0] is old.connectors[0]  # unchanged connector: same instance
    assert new.service.cache is old.service.cache and len(new.service.cache) == 1
    assert new.service.calls.get("c1") is not None  # the call in progress keeps its plan
    second = dial(client, "CallSid=c2&From=09876543210")
    assert second.get_data(as_text=True) == f"{ASHA},+918000000001"
    assert "path=cache" in second.headers["X-Dialwhom-Trace"]
    assert second.headers["X-Dialwhom-Trace"].endswith("cfg=" + new.settings.version)
    assert client.get("/readyz", headers=AUTH).get_json()["config_version"] == new.settings.version


def test_a_changed_connector_loses_its_cached_answers(app, tmp_path):
    client = app.test_client()
    dial(client)
    other = tmp_path / "other.csv"
    other.write_text(CSV.replace("asha@", "ravi@"))
    result = app.extensions["dialwhom.reload"].reload(config(tmp_path, connectors=[{"id": "accounts", "type": "directory", "path": str(other)}]))
    assert result["connectors_rebuilt"] == ["accounts"]
    assert len(app.extensions["dialwhom"].service.cache) == 0
    assert dial(client, "CallSid=c3&From=09876543210").get_data(as_text=True) == f"{RAVI},{FALLBACK}"


def test_a_bad_reload_is_refused_naming_the_key_and_the_old_config_serves(app, tmp_path, caplog):
    client = app.test_client()
    before = app.extensions["dialwhom"]
    with caplog.at_level(logging.ERROR, logger="dialwhom.reload"):
        result = app.extensions["dialwhom.reload"].reload(config(tmp_path, fallback="not a number"))
    assert not result["ok"] and result["key"] == "fallback"
    assert "reload refused: config error at 'fallback'" in caplog.text
    assert app.extensions["dialwhom"] is before
    assert dial(client).status_code == 200
    ready = client.get("/readyz", headers=AUTH).get_json()
    assert ready["reload"]["ok"] is False and "'fallback'" in ready["reload"]["error"]
    assert ready["config_version"] == before.settings.version


def test_a_reload_that_adds_a_token_applies_at_once(app, tmp_path):
    client = app.test_client()
    app.extensions["dialwhom.reload"].reload(config(tmp_path, token="t" * 20))
    assert dial(client).status_code == 403
    assert dial(client, "CallSid=c9&From=09876543210&token=" + "t" * 20).status_code == 200


def test_readyz_shows_the_masters_refusal_from_the_run_dir(tmp_path, made, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.prepare(pid=os.getpid(), config=None, bind="127.0.0.1:0")
    monkeypatch.setenv("DIALWHOM_RUN_DIR", str(run.path))
    a = create_app(config(tmp_path))
    made.append(a)
    run.write_status({"ok": False, "at": 9e12, "error": "config error at 'reps[0].phone': ...", "key": "reps[0].phone"})
    assert a.test_client().get("/readyz", headers=AUTH).get_json()["reload"]["key"] == "reps[0].phone"


# -- the CSV watcher, forget -----------------------------------------------------------------


def test_a_csv_edit_drops_the_directory_connectors_cached_answers(app, tmp_path):
    client = app.test_client()
    assert dial(client).get_data(as_text=True).startswith(ASHA)
    path = tmp_path / "accounts.csv"
    path.write_text(CSV.replace("asha@", "ravi@"))
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))
    directory = app.extensions["dialwhom"].connectors[0]
    directory.refresh()  # what its watcher thread does each second: once to see the change,
    directory.refresh()  # once more to load it (it waits for the file to stay still)
    assert len(app.extensions["dialwhom"].service.cache) == 0
    assert dial(client, "CallSid=c5&From=09876543210").get_data(as_text=True).startswith(RAVI)


def test_ops_forget_drops_one_caller_only(app):
    client = app.test_client()
    dial(client)
    dial(client, "CallSid=c6&From=09123456789")
    service = app.extensions["dialwhom"].service
    service.last_agents.record("+919876543210", ASHA)
    assert client.post("/ops/forget", data={"number": "09876543210"}).status_code == 401
    r = client.post("/ops/forget", data={"number": "09876543210"}, headers=AUTH)
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["cached_answers"] == 2 and doc["last_agent"] is True and doc["caller"] == "+91*******210"
    assert "9876543210" not in r.get_data(as_text=True)
    assert len(service.cache) == 1  # the other caller's answer stays
    assert client.post("/ops/forget", data={"number": "nope"}, headers=AUTH).status_code == 400


def test_ops_actions_need_an_ops_token_configured(tmp_path, made):
    cfg = config(tmp_path)
    del cfg["ops_token"]
    a = create_app(cfg)
    made.append(a)
    r = a.test_client().post("/ops/forget", data={"number": "09876543210"})
    assert r.status_code == 403 and "ops_token" in r.get_data(as_text=True)
    doc = a.test_client().get("/readyz").get_json()  # open without ops_token, but no config path
    assert "config" not in doc and doc["worker"] == os.getpid()


def test_forget_requests_reach_other_workers_through_the_run_dir(app, tmp_path):
    client = app.test_client()
    dial(client)
    run = RunDir(tmp_path / "run")
    run.prepare(pid=os.getpid(), config=None, bind="x")
    run.post_forget("+919876543210")
    assert "9876543210" not in "".join(p.read_text() for p in run.forget_dir.iterdir())  # a hash, not the number
    app.extensions["dialwhom.watcher"].run_dir = run
    app.extensions["dialwhom.watcher"].tick()
    assert len(app.extensions["dialwhom"].service.cache) == 0
    assert caller_digest("+919876543210") in (run.forget_dir / next(iter(os.listdir(run.forget_dir)))).read_text()


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_forget_deletes_the_callers_key_in_redis(tmp_path, made):
    import redis

    prefix = f"dw-test-ops-{os.getpid()}:"
    a = create_app(config(tmp_path, shared_state={"url": "redis://127.0.0.1:6379/15", "prefix": prefix}))
    made.append(a)
    client = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    try:
        client.set(f"{prefix}agent:+919876543210", "x")
        r = a.test_client().post("/ops/forget", json={"number": "+919876543210"}, headers=AUTH)
        assert r.get_json()["redis"] == 1
        assert client.get(f"{prefix}agent:+919876543210") is None
    finally:
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
        client.close()


# -- operator endpoints, proxies -------------------------------------------------------------


def test_ops_token_guards_metrics_and_readyz(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/readyz", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 200
    doc = client.get("/readyz", headers=AUTH).get_json()
    assert doc["config"] == "<dict>" and doc["worker"] == os.getpid()
    assert client.get("/healthz").status_code == 200  # liveness stays open


def test_trusted_proxies_makes_the_forwarded_client_the_remote_address(tmp_path, made):
    for proxies, expected in ((0, "10.0.0.1"), (1, "203.0.113.9")):
        a = create_app(config(tmp_path, trusted_proxies=proxies))
        made.append(a)
        environ = EnvironBuilder("/healthz", environ_base={"REMOTE_ADDR": "10.0.0.1"}, headers={"X-Forwarded-For": "203.0.113.9"}).get_environ()
        b"".join(a.wsgi_app(environ, lambda status, headers: None))
        assert environ["REMOTE_ADDR"] == expected  # what gunicorn's access log prints (%(h)s)


# -- POST on every Exotel route --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/exotel/dial-whom", "/exotel/fallback", "/exotel/connect", "/exotel/passthru"])
@pytest.mark.parametrize("body", ["form", "json"])
def test_every_exotel_route_accepts_post_merged_with_the_query(tmp_path, made, path, body):
    a = create_app(config(tmp_path, token="k" * 20, lines={sample.LINE_NORTH: "north"},
                          teams={"north": {"backup": [sample.VIKRAM]}}))
    made.append(a)
    client = a.test_client()
    fields = {"CallSid": "p1", "CallFrom": "09876543210", "CallTo": "08039513882", "DialWhomNumber": ASHA, "DialCallStatus": "completed"}
    send = {"data": fields} if body == "form" else {"json": fields}
    r = client.post(f"{path}?token={'k' * 20}", **send)
    assert r.status_code == 200, r.get_data(as_text=True)
    text = r.get_data(as_text=True)
    expected = {"/exotel/dial-whom": f"{ASHA},{FALLBACK}", "/exotel/fallback": f"+919800000002,{FALLBACK}",
                "/exotel/passthru": "ok\n"}
    if path == "/exotel/connect":
        assert r.get_json()["destination"]["numbers"] == [ASHA, FALLBACK]
    else:
        assert text == expected[path]
    assert client.post(path, **send).status_code == 403  # the token still comes in the query


# -- config: numbers that cannot ring --------------------------------------------------------


@pytest.mark.parametrize("over, key", [
    ({"fallback": ["+91 98000 0000"]}, "fallback[0]"),
    ({"reps": [{"owner": "a@x", "phone": "+9198000000011"}]}, "reps[0].phone"),
    ({"teams": {"n": {"backup": [sample.VIKRAM, "+91 98000 0000"]}}}, "teams.n.backup[1]"),
    ({"teams": {"n": {}}, "lines": {"+91 80395 1388": "n"}}, "lines.+91 80395 1388"),
    ({"check_number": "+91 98765 4321"}, "check_number"),
])
def test_a_number_that_cannot_ring_is_a_config_error_naming_the_key(over, key):
    with pytest.raises(ConfigError) as err:
        from_mapping({"fallback": [FALLBACK], **over})
    assert err.value.key == key
    assert "cannot ring" in err.value.message and "trailing '!'" in err.value.message


def test_a_trailing_bang_rings_a_number_as_written():
    s = from_mapping({"fallback": ["+91 98000 0000!"], "reps": [{"owner": "a@x", "phone": "+9198000000011 !"}]})
    assert s.fallback == ("+91980000000",)
    assert s.reps[0].phones == ("+9198000000011",)
    with pytest.raises(ConfigError, match="not a phone number"):
        from_mapping({"fallback": ["abc!"]})


@pytest.mark.parametrize("over, key", [
    ({"log_format": "xml"}, "log_format"),
    ({"ops_token": "short"}, "ops_token"),
    ({"trusted_proxies": 9}, "trusted_proxies"),
])
def test_operations_keys_are_checked(over, key):
    with pytest.raises(ConfigError) as err:
        from_mapping(over)
    assert err.value.key == key


def test_the_config_version_follows_the_content():
    a, b = from_mapping({"fallback": [FALLBACK]}), from_mapping({"fallback": [FALLBACK]})
    c = from_mapping({"fallback": ["+918000000001"]})
    assert a.version == b.version != c.version and len(a.version) == 10


# -- logs ------------------------------------------------------------------------------------


def _record(msg, name="dialwhom.decision") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)


def test_json_log_lines_carry_the_decision_fields_masked():
    trace = Trace(call_sid="CA1", path="cache", key="caller", connector="crm", plan="owner,fallback", elapsed_ms=0.4, config="abc123")
    trace.steps.append(Step("crm", "caller", "cache-hit", 0.1))
    trace.notes.append("caller +919876543210 seen")
    logs.set_format("json")
    try:
        line = logs.Formatter().format(_record(logs.DecisionMessage(trace, "+919876543210", "dial-whom")))
    finally:
        logs.set_format("text")
    doc = json.loads(line)
    assert {k: doc[k] for k in ("call", "caller", "path", "key", "via", "plan", "cfg", "endpoint", "level")} == {
        "call": "CA1", "caller": "+91*******210", "path": "cache", "key": "caller", "via": "crm", "plan": "owner,fallback",
        "cfg": "abc123", "endpoint": "dial-whom", "level": "INFO"}
    assert doc["ts"].endswith("Z") and "9876543210" not in line


def test_text_log_lines_are_timestamped_and_written_in_batches():
    out = io.StringIO()
    handler = logs.BatchHandler(out, flush_s=3600)
    for i in range(3):
        handler.handle(_record(f"line {i}", "dialwhom"))
    assert out.getvalue() == ""  # nothing written on the caller's thread
    handler.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].endswith("INFO dialwhom line 0")
    assert lines[0][:4].isdigit() and lines[0][10] == "T" and lines[0].split(" ")[0].endswith("Z")


# -- commands --------------------------------------------------------------------------------


def _cli(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(sys.argv[1:]))", *argv],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_version():
    out = _cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("dialwhom ")


@pytest.mark.parametrize("flag", ["--workers", "--threads"])
def test_zero_workers_or_threads_is_refused_with_a_message(flag):
    out = _cli("serve", flag, "0")
    assert out.returncode == 2 and f"{flag} must be at least 1" in out.stderr


def test_every_commands_help_has_an_example():
    for cmd in ("serve", "reload", "forget", "lookup", "check", "connectors", "simulate"):
        out = _cli(cmd, "--help")
        assert out.returncode == 0 and "example" in out.stdout.lower(), cmd


def test_check_warns_about_what_it_did_not_check(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        connectors:
          - id: crm
            type: http
            url: "http://127.0.0.1:9/owner?phone={phone}"
        fallback: ["+918000000000"]
        """))
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warn connector crm (http): not checked" in out
    assert "ok   connector crm" not in out


def test_check_fails_on_unreachable_redis(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    path = tmp_path / "c.yaml"
    path.write_text(f'fallback: ["+918000000000"]\nshared_state:\n  url: redis://127.0.0.1:{dead}/0\n')
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL shared_state: Redis at redis://127.0.0.1:{dead}/0 unreachable" in out


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_check_proves_redis_reach_and_write(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text('fallback: ["+918000000000"]\nshared_state:\n  url: redis://127.0.0.1:6379/15\n  prefix: "dw-check-test:"\n')
    assert main(["check", "--config", str(path)]) == 0
    assert "ok   shared_state: Redis at redis://127.0.0.1:6379/15 reachable, authenticated, 'dw-check-test:' writable" in capsys.readouterr().out


def test_check_json_prints_json_on_stdout_even_for_a_config_error(tmp_path):
    (tmp_path / "c.yaml").write_text("budget_ms: 9000\n")
    out = _cli("check", "--json", "--config", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and doc["config_error"]["key"] == "budget_ms"


def test_reload_without_a_running_service_says_so(tmp_path):
    out = _cli("reload", "--run-dir", str(tmp_path / "none"))
    assert out.returncode == 2 and "no running 'dialwhom serve'" in out.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_queued_decision_line_is_written_as_its_log_record_would_be(fmt):
    trace = Trace(call_sid="CA2", path="fresh", plan="owner", config="abc")
    msg = logs.DecisionMessage(trace, "+919876543210", "connect")
    record = _record(msg)
    out = io.StringIO()
    handler = logs.BatchHandler(out, flush_s=3600)
    logs.set_format(fmt)
    handler.queue.append((record.created, trace, "+919876543210", "connect"))  # as logs.log_decision queues it
    try:
        handler.flush()
        expected = logs.Formatter().format(record)
    finally:
        logs.set_format("text")
    assert out.getvalue() == expected + "\n"
    assert "9876543210" not in expected


def test_every_exotel_route_in_the_table_checks_the_token(tmp_path, made):
    """A route added to ROUTES under /exotel/ must call `_token_refused` (no hook does it)."""
    from dialwhom.app import ROUTES

    a = create_app(config(tmp_path, token="k" * 20))
    made.append(a)
    client = a.test_client()
    exotel = [rule for rule, _, _ in ROUTES if rule.startswith("/exotel/")]
    assert len(exotel) >= 4
    for rule in exotel:
        assert client.get(f"{rule}?CallSid=t1&From=09876543210").status_code == 403, rule
        assert client.post(rule, data={"CallSid": "t2"}).status_code == 403, rule
