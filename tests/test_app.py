"""The Flask app end to end: Exotel's query strings in, text/plain E.164 lists out."""

from __future__ import annotations

import sample
import importlib
import json
import logging
import re
import subprocess
import sys
from urllib.parse import urlencode

import pytest
import responses
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dialwhom.app as app_module
from dialwhom.app import TRACE_HEADER, create_app
from dialwhom.integrations.base import Connector
from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.routing.errors import BadResponse
from dialwhom.integrations.connectors.http_json import HttpJsonConnector
from dialwhom.integrations.registry import registry_from_classes
from dialwhom.routing.config import EXAMPLE_CONFIG, load

from sample import ASHA, FALLBACK, MEERA, NORTH3, RAHUL, SOUTH3, VIKRAM  # noqa: E402

MEERA_DESK = "+918041112233"
ASHA_PLAN = ",".join([ASHA, VIKRAM, NORTH3, FALLBACK])
NORTH_LINE_PLAN = ",".join([VIKRAM, NORTH3, FALLBACK])
E164_LIST = re.compile(r"^\+[1-9]\d{6,14}(,\+[1-9]\d{6,14})*$")
TOKEN, TOKEN2 = "tok-" + "a1b2c3d4" * 3, "tok-" + "z9y8x7w6" * 3

#: a first request as Exotel sends it (docs/exotel.md §1), for an incoming call
FIRST = {
    "CallSid": "b6cfaf5c7a3e4b9d8f0a1c2d3e4f5a6b",
    "CallFrom": "09876543210",
    "CallTo": "08039513882",
    "Direction": "incoming",
    "Created": "2022-02-23 12:31:59",
    "DialCallDuration": "0",
    "StartTime": "Wed, 23 Feb 2022 12:31:59",
    "EndTime": "1970-01-01 05:30:00",
    "CallType": "call-attempt",
    "DialWhomNumber": "",
    "From": "09876543210",
    "To": "08039513882",
    "CurrentTime": "2022-02-23 12:32:01",
    "flow_id": "228963",
    "tenant_id": "67890",
    "ProcessStatus": "null",
    "ForwardedFrom": "",
    "OutgoingPhoneNumber": "08039513882",
}


def dial(client, params: dict | str, path: str = "/exotel/dial-whom", **kw):
    query = params if isinstance(params, str) else urlencode(params)
    return client.get(f"{path}?{query}", **kw)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A cwd without ./dialwhom.yaml and no DIALWHOM_* variables: the embedded default applies."""
    monkeypatch.delenv("DIALWHOM_CONFIG", raising=False)
    monkeypatch.delenv("DIALWHOM_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def embedded(isolated, make_app):
    """The app exactly as `python app.py` would build it with no setup at all."""
    return make_app()


@pytest.fixture
def client(embedded):
    return embedded.test_client()


# -- connectors for tests ----------------------------------------------------------------------


class Broken(Connector):
    """Raises a non-connector exception on every lookup (a plugin bug)."""

    type_name = "broken"
    calls = 0

    def lookup(self, query, *, deadline):
        type(self).calls += 1
        raise RuntimeError("connector bug")


class MustNotBeCalled(Connector):
    type_name = "forbidden"
    calls: list = []

    def lookup(self, query, *, deadline):
        type(self).calls.append(query)
        raise AssertionError("the fallback endpoint called a connector")


class LeakyBug(Connector):
    """A realistic plugin bug: ``self.owners[query.value]`` raising KeyError('+9198…')."""

    type_name = "leaky"

    def lookup(self, query, *, deadline):
        return {}[query.value]


class MultiLine(Connector):
    """A connector error whose message spans lines (a SOAP fault, a pasted body)."""

    type_name = "multiline"

    def lookup(self, query, *, deadline):
        raise BadResponse("crm answered:\r\n<fault>busy</fault>\nretry later")


def with_fallback(**extra):
    return {"fallback": [FALLBACK], **extra}


# -- the embedded default, end to end --------------------------------------------------------


def test_embedded_default_is_the_shipped_example(embedded):
    rt = embedded.extensions["dialwhom"]
    assert rt.settings.source == str(EXAMPLE_CONFIG)
    assert rt.settings.tokens == ()
    assert [(c.id, c.type_name) for c in rt.connectors] == [("accounts", "directory")]


def test_known_caller_gets_owner_team_fallback(client):
    r = dial(client, FIRST)
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert r.get_data(as_text=True) == ASHA_PLAN
    assert TRACE_HEADER in r.headers
    assert "path=fresh" in r.headers[TRACE_HEADER]


@pytest.mark.parametrize(
    "caller, body",
    [
        ("09876543210", ASHA_PLAN),  # A-1001, national
        ("9876543210", ASHA_PLAN),
        ("+919876543210", ASHA_PLAN),
        ("08023456789", ASHA_PLAN),  # A-1001's landline, stored as '+91 80 2345 6789'
        ("09845012345", f"{VIKRAM},{NORTH3},{FALLBACK}"),  # A-1002, Vikram is also north's backup
        ("09123456780", f"{MEERA},{MEERA_DESK},{RAHUL},{SOUTH3},{FALLBACK}"),  # A-1003, two phones, cap 5
        ("09900011223", f"{RAHUL},{SOUTH3},{FALLBACK}"),  # A-1004, stored as '0091 99000 11223'
        ("08041234567", f"{RAHUL},{SOUTH3},{FALLBACK}"),  # A-1004's landline '080-41234567'
    ],
)
def test_caller_table_on_the_embedded_default(client, caller, body):
    r = dial(client, {**FIRST, "CallSid": f"sid-{caller}", "CallFrom": caller, "From": caller})
    assert (r.status_code, r.get_data(as_text=True)) == (200, body)


def test_body_is_exactly_the_e164_list(client):
    body = dial(client, FIRST).get_data(as_text=True)
    assert E164_LIST.match(body)
    assert body == body.strip() and " " not in body and "\n" not in body


@pytest.mark.parametrize("path", ["/exotel/dial-whom", "/exotel/fallback", "/exotel/connect"])
def test_answer_headers_as_sent(client, path):
    """Answers skip werkzeug's header fix-up pass (app.Answer): what it would have fixed must
    already be right: one Content-Type, a Content-Length that is the body's, the trace, and no
    body (the same length) for HEAD."""
    r = dial(client, {**FIRST, "CallSid": f"hdr{path[8:]}"}, path=path)
    names = [k.lower() for k, _ in r.headers]
    assert sorted(names) == ["content-length", "content-type", TRACE_HEADER.lower()]
    assert int(r.headers["Content-Length"]) == len(r.get_data())
    head = client.head(f"{path}?{urlencode({**FIRST, 'CallSid': f'hdr{path[8:]}'})}")
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["Content-Length"] == r.headers["Content-Length"]
    # the same call's second request (the Fallback URL answers from config every time)
    assert head.headers[TRACE_HEADER].startswith("path=fallback;" if "fallback" in path else "path=repeat;")


def test_refusal_headers_as_sent(guarded):
    r = guarded.get("/exotel/dial-whom?CallSid=x&From=09876543210")
    assert r.status_code == 403 and int(r.headers["Content-Length"]) == len(r.get_data())


def test_plus_that_arrived_as_a_space(client):
    # Exotel sometimes sends '+' unencoded: the query string decodes it to a space
    r = client.get("/exotel/dial-whom?CallSid=abc123&From=+919876543210&To=+918039513882")
    assert r.get_data(as_text=True) == ASHA_PLAN


def test_repeat_attempts_get_the_same_list(client, embedded):
    first = dial(client, FIRST)
    for status, whom in [("busy", "09800000001"), ("no-answer", "09800000002"), ("failed", "09800000003")]:
        again = dial(client, {**FIRST, "CallType": "incomplete", "DialCallStatus": status, "DialWhomNumber": whom})
        assert again.status_code == 200
        assert again.get_data() == first.get_data()
        assert "path=repeat" in again.headers[TRACE_HEADER]


def test_repeat_attempt_with_sip_agent(client):
    first = dial(client, FIRST)
    again = dial(client, {**FIRST, "DialCallStatus": "no-answer", "DialWhomNumber": "sip:agent42"})
    assert again.get_data() == first.get_data()


def test_unknown_caller_gets_the_line_team(client):
    r = dial(client, {**FIRST, "CallFrom": "07777777777", "From": "07777777777"})
    assert r.get_data(as_text=True) == NORTH_LINE_PLAN
    r = dial(client, {**FIRST, "CallSid": "other", "CallFrom": "07777777777", "From": "07777777777", "CallTo": "08039513883", "To": "08039513883"})
    assert r.get_data(as_text=True) == f"{RAHUL},{SOUTH3},{FALLBACK}"


def test_unknown_caller_on_an_unknown_line_gets_the_fallback(client):
    r = dial(client, {"CallSid": "x1", "CallFrom": "07777777777", "CallTo": "08039513899"})
    assert r.get_data(as_text=True) == FALLBACK


@pytest.mark.parametrize("query", ["", "CallSid=only-a-sid", "CallFrom=null&From=&CallSid=x", "Foo=bar", "CallFrom=anonymous"])
def test_no_identity_at_all_gets_the_fallback(client, query):
    r = client.get("/exotel/dial-whom" + (f"?{query}" if query else ""))
    assert (r.status_code, r.get_data(as_text=True)) == (200, FALLBACK)


def test_custom_field_and_digits(client):
    assert dial(client, {"CustomField": "A-1004"}).get_data(as_text=True) == f"{RAHUL},{SOUTH3},{FALLBACK}"
    assert dial(client, {"CallSid": "d1", "digits": '"A-1003"'}).get_data(as_text=True).startswith(f"{MEERA},{MEERA_DESK}")
    # keyed digits that are no account fall through to the caller
    assert dial(client, {**FIRST, "CallSid": "d2", "digits": '"1234"'}).get_data(as_text=True) == ASHA_PLAN


def test_fallback_endpoint(client):
    r = dial(client, FIRST, path="/exotel/fallback")
    assert (r.status_code, r.mimetype) == (200, "text/plain")
    assert r.get_data(as_text=True) == NORTH_LINE_PLAN  # the line's team from config, no CRM
    assert "path=fallback" in r.headers[TRACE_HEADER]


def test_fallback_endpoint_never_calls_a_connector(isolated, make_app):
    MustNotBeCalled.calls = []
    a = make_app(with_fallback(connectors=[{"id": "crm", "type": "forbidden"}], teams={"north": {"backup": [VIKRAM]}}, lines={sample.LINE_NORTH: "north"}), [MustNotBeCalled])
    c = a.test_client()
    for params in (FIRST, {"CustomField": "A-1"}, {"digits": '"9876543210"'}, {}):
        r = dial(c, params, path="/exotel/fallback")
        assert r.status_code == 200
    assert dial(c, FIRST, path="/exotel/fallback").get_data(as_text=True) == f"{VIKRAM},{FALLBACK}"
    assert MustNotBeCalled.calls == []


def test_connect_json_shape(client):
    r = dial(client, FIRST, path="/exotel/connect", headers={"Exotel-Version": "1.0"})
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.get_json()
    assert doc == {"fetch_after_attempt": False, "destination": {"numbers": ASHA_PLAN.split(",")}}
    assert TRACE_HEADER in r.headers


def test_connect_agrees_with_dial_whom_for_one_call(client):
    text = dial(client, FIRST).get_data(as_text=True)
    doc = dial(client, {**FIRST, "DialCallStatus": "busy"}, path="/exotel/connect").get_json()
    assert doc["destination"]["numbers"] == text.split(",")


def test_health_ready_metrics(client):
    dial(client, FIRST)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_data(as_text=True).strip() == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = json.loads(r.get_data())
    assert doc["status"] == "ready"
    assert "config" not in doc  # the config path is shown only with ops_token (tests/test_ops.py)
    assert doc["config_version"] == load(EXAMPLE_CONFIG).version
    assert doc["remembered_calls"] == 1
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert "dialwhom_decisions" in text
    assert 'endpoint="dial-whom",path="fresh"' in text
    assert "9876543210" not in text


def test_readyz_lists_connectors_with_their_type(client):
    doc = client.get("/readyz").get_json()
    assert isinstance(doc["connectors"], list)
    assert [{k: e[k] for k in ("id", "type")} for e in doc["connectors"]] == [{"id": "accounts", "type": "directory"}]


# -- token -----------------------------------------------------------------------------------


@pytest.fixture
def guarded(make_app, isolated):
    return make_app(with_fallback(token=TOKEN)).test_client()


@pytest.mark.parametrize("path", ["/exotel/dial-whom", "/exotel/fallback", "/exotel/connect"])
@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper()])
def test_token_missing_or_wrong_is_403(guarded, path, token):
    params = dict(FIRST) if token is None else {**FIRST, "token": token}
    r = dial(guarded, params, path=path)
    assert r.status_code == 403
    assert r.mimetype == "text/plain"
    body = r.get_data(as_text=True)
    assert len(body) < 80 and "+91" not in body and TOKEN not in body


@pytest.mark.parametrize("path", ["/exotel/dial-whom", "/exotel/fallback", "/exotel/connect"])
def test_right_token_is_200(guarded, path):
    assert dial(guarded, {**FIRST, "token": TOKEN}, path=path).status_code == 200


def test_ops_endpoints_need_no_token(guarded):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert guarded.get(path).status_code == 200


def test_several_tokens_while_rotating(make_app, isolated):
    c = make_app(with_fallback(token=[TOKEN, TOKEN2])).test_client()
    assert dial(c, {**FIRST, "token": TOKEN}).status_code == 200
    assert dial(c, {**FIRST, "token": TOKEN2}).status_code == 200
    assert dial(c, {**FIRST, "token": "neither-of-the-two-tokens"}).status_code == 403
    assert dial(c, FIRST).status_code == 403


def test_token_off_means_no_check(make_app, isolated):
    c = make_app(with_fallback()).test_client()
    assert dial(c, FIRST).status_code == 200
    assert dial(c, {**FIRST, "token": "anything"}).status_code == 200


def test_embedded_default_takes_the_token_from_the_env(isolated, make_app, monkeypatch):
    monkeypatch.setenv("DIALWHOM_TOKEN", TOKEN)
    c = make_app().test_client()
    assert dial(c, FIRST).status_code == 403
    assert dial(c, {**FIRST, "token": TOKEN}).get_data(as_text=True) == ASHA_PLAN


# -- failure modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/exotel/dial-whom", "/exotel/fallback", "/exotel/connect"])
def test_no_numbers_in_config_is_503_not_an_empty_200(make_app, isolated, path):
    c = make_app({}).test_client()
    r = dial(c, FIRST, path=path)
    assert r.status_code == 503
    assert r.get_data(as_text=True).strip()
    assert "fallback" in r.get_data(as_text=True)


def test_broken_connector_still_answers_200_with_the_fallback(make_app, isolated):
    Broken.calls = 0
    c = make_app(with_fallback(connectors=[{"id": "crm", "type": "broken"}]), [Broken]).test_client()
    r = dial(c, {"CallSid": "b1", "CallFrom": "09876543210"})
    assert (r.status_code, r.get_data(as_text=True)) == (200, FALLBACK)
    assert Broken.calls == 1
    assert "internal error RuntimeError" in r.headers[TRACE_HEADER]


def test_a_multiline_connector_error_still_answers_200(make_app, isolated):
    c = make_app(with_fallback(connectors=[{"id": "crm", "type": "multiline"}]), [MultiLine]).test_client()
    r = dial(c, {"CallSid": "m1", "CallFrom": "09876543210"})
    assert (r.status_code, r.get_data(as_text=True)) == (200, FALLBACK)
    assert "\n" not in r.headers[TRACE_HEADER] and "\r" not in r.headers[TRACE_HEADER]


# -- logs never hold a number or the token -------------------------------------------------------

SECRET_BITS = ("9876543210", TOKEN)


def _all_log_text(caplog) -> str:
    return caplog.text + "\n".join(r.getMessage() for r in caplog.records)


def test_one_log_line_per_answer_with_masked_numbers(make_app, isolated, caplog, monkeypatch):
    monkeypatch.setenv("DIALWHOM_TOKEN", TOKEN)
    c = make_app().test_client()
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        for params in (FIRST, {**FIRST, "DialCallStatus": "busy", "DialWhomNumber": "09800000001"}, {"CallSid": "z", "From": "abc9876543210"}):
            dial(c, {**params, "token": TOKEN})
        dial(c, {**FIRST, "CallSid": "fb", "token": TOKEN}, path="/exotel/fallback")
        dial(c, {**FIRST, "CallSid": "cj", "token": TOKEN}, path="/exotel/connect")
        dial(c, {**FIRST, "CallSid": "bad", "token": "wrong"})
    decisions = [r for r in caplog.records if r.getMessage().startswith("decision ")]
    assert len(decisions) == 5
    assert "caller=+91*******210" in decisions[0].getMessage()
    text = _all_log_text(caplog)
    for bit in SECRET_BITS:
        assert bit not in text


def test_broken_connector_logs_no_number(make_app, isolated, caplog):
    c = make_app(with_fallback(connectors=[{"id": "crm", "type": "broken"}]), [Broken]).test_client()
    with caplog.at_level(logging.DEBUG):
        dial(c, FIRST)
    assert "RuntimeError" in caplog.text
    assert "9876543210" not in _all_log_text(caplog)


def test_connector_bug_message_with_the_number_is_not_logged(make_app, isolated, caplog):
    c = make_app(with_fallback(connectors=[{"id": "crm", "type": "leaky"}]), [LeakyBug]).test_client()
    with caplog.at_level(logging.DEBUG):
        r = dial(c, FIRST)
    assert r.get_data(as_text=True) == FALLBACK
    assert "9876543210" not in _all_log_text(caplog)


@pytest.mark.parametrize(
    "template, mock_url, body, status, ctype",
    [
        pytest.param("https://crm.example/owner?phone={phone}", "https://crm.example/owner", "<html>oops</html>", 200, "text/html", id="html-answer-query-url"),
        pytest.param(
            "https://crm.example/owners/{phone}", "https://crm.example/owners/%2B919876543210", "down", 503, "text/plain", id="5xx-path-url",
        ),
    ],
)
def test_http_connector_errors_leak_no_number(make_app, isolated, caplog, template, mock_url, body, status, ctype):
    a = make_app(with_fallback(connectors=[{"id": "crm", "type": "http", "url": template, "retries": 0}]), [HttpJsonConnector])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rm, caplog.at_level(logging.DEBUG):
        rm.add(responses.GET, mock_url, body=body, status=status, content_type=ctype)
        r = dial(a.test_client(), FIRST)
    assert r.get_data(as_text=True) == FALLBACK
    assert "9876543210" not in r.headers[TRACE_HEADER]
    assert "9876543210" not in _all_log_text(caplog)


# -- a dict config, end to end ------------------------------------------------------------------


def test_dict_config_with_directory_csv(make_app, isolated):
    csv = isolated / "book.csv"
    csv.write_text("account_id,account_name,phones,owner\nA-1,Acme,+1 415 555 0123,u-17\n", encoding="utf-8")
    a = make_app(
        {
            "connectors": [{"id": "book", "type": "directory", "path": str(csv)}],
            "reps": [{"owner": "u-17", "phone": "sip:desk-17", "team": "intl"}],
            "teams": {"intl": {"backup": ["+14155550100"]}},
            "fallback": [FALLBACK],
        },
        [DirectoryConnector],
    )
    c = a.test_client()
    r = dial(c, {"CallSid": "i1", "CallFrom": "0014155550123"})
    assert r.status_code == 200
    assert r.get_data(as_text=True) == f"sip:desk-17,+14155550100,{FALLBACK}"


# -- never fails on what Exotel (or anyone) sends ------------------------------------------------

_APP = {}


def _shared_client():
    if "client" not in _APP:
        s = load(EXAMPLE_CONFIG, environ={})
        _APP["client"] = create_app(s, registry=registry_from_classes([DirectoryConnector])).test_client()
    return _APP["client"]


KEYS = sorted(set(FIRST) | {"Callfrom", "digits", "Digits", "CustomField", "DialCallStatus", "CallStatus", "RecordingUrl"})
VALUES = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789+()-. \"", max_size=20),
    st.sampled_from(["", "null", "09876543210", " 919876543210", '"1234"', "A-1004", "sip:x", "08039513882"]),
    st.text(min_size=250, max_size=1500),
)


@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), VALUES), max_size=10))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_parameters_get_a_200_e164_list(pairs):
    r = _shared_client().get("/exotel/dial-whom?" + urlencode(pairs))
    assert r.status_code == 200
    assert E164_LIST.match(r.get_data(as_text=True))


@given(st.text(max_size=200))
@settings(max_examples=150, deadline=None)
def test_any_raw_query_string_gets_a_200_e164_list(raw):
    r = _shared_client().get("/exotel/dial-whom", query_string=raw)
    assert r.status_code == 200
    assert E164_LIST.match(r.get_data(as_text=True))


# -- the module is a factory ---------------------------------------------------------------------


def test_app_module_is_a_factory_without_module_level_app():
    mod = importlib.import_module("dialwhom.app")
    assert callable(mod.create_app)
    assert not any(isinstance(v, Flask) for v in vars(mod).values())
    assert not hasattr(mod, "app") and not hasattr(mod, "application")


def test_create_app_builds_independent_apps(make_app, isolated):
    a, b = make_app(), make_app()
    assert a is not b
    assert a.extensions["dialwhom"] is not b.extensions["dialwhom"]
    dial(a.test_client(), FIRST)
    assert len(a.extensions["dialwhom"].service.calls) == 1
    assert len(b.extensions["dialwhom"].service.calls) == 0


def test_flask_app_discovery_finds_the_factory(isolated):
    from flask.cli import find_best_app

    found = find_best_app(app_module)
    try:
        assert isinstance(found, Flask)
        assert found.extensions["dialwhom"].settings.source == str(EXAMPLE_CONFIG)
        assert dial(found.test_client(), FIRST).get_data(as_text=True) == ASHA_PLAN
    finally:
        found.extensions["dialwhom"].close()


def test_python_m_dialwhom_is_the_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dialwhom", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and "lookup" in out.stdout


# -- passthru: who talked to the caller --------------------------------------------------------

STRANGER = {**FIRST, "CallSid": "call-1", "CallFrom": "07777777777", "From": "07777777777"}
SOUTH_LINE = {"CallTo": "08039513883", "To": "08039513883"}


def passthru(client, method: str = "GET", **params):
    if method == "POST":
        return client.post("/exotel/passthru", data=params)
    return client.get("/exotel/passthru?" + urlencode(params))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_passthru_teaches_the_next_call_who_talked_to_an_unknown_caller(client, method):
    assert dial(client, STRANGER).get_data(as_text=True) == NORTH_LINE_PLAN  # Vikram is rung first
    r = passthru(client, method, CallSid="call-1", CallFrom="07777777777", DialWhomNumber="09800000002", DialCallStatus="completed")
    assert (r.status_code, r.get_data(as_text=True)) == (200, "ok\n")
    # a week later the same caller rings the south line: Vikram first, not the south team
    again = dial(client, {**STRANGER, "CallSid": "call-2", **SOUTH_LINE})
    assert again.get_data(as_text=True).split(",")[0] == VIKRAM
    assert "last-agent" in again.headers[TRACE_HEADER]


@pytest.mark.parametrize("agent, status", [
    ("09800000012", "completed"),  # Rahul: a number we did not offer on that call (forged)
    ("09800000002", "busy"),       # Vikram, but he never talked to the caller
    ("", "completed"),
])
def test_passthru_learns_only_a_completed_call_with_a_number_we_offered(client, agent, status):
    dial(client, STRANGER)
    r = passthru(client, CallSid="call-1", CallFrom="07777777777", DialWhomNumber=agent, DialCallStatus=status)
    assert r.status_code == 200  # a sync Passthru always takes its 200 branch
    again = dial(client, {**STRANGER, "CallSid": "call-2", **SOUTH_LINE})
    assert again.get_data(as_text=True) == f"{RAHUL},{SOUTH3},{FALLBACK}"  # the south line's team, as before
    assert "last-agent" not in again.headers[TRACE_HEADER]


def test_passthru_needs_the_token_when_one_is_set(guarded):
    assert passthru(guarded, CallSid="c", DialCallStatus="completed").status_code == 403
    assert passthru(guarded, CallSid="c", DialCallStatus="completed", token=TOKEN).status_code == 200
