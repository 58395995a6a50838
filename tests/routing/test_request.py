"""Reading what Exotel sends (docs/exotel.md §1): tolerant, never raising, keys in lookup_order."""

from __future__ import annotations

import sample
import itertools
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialwhom.routing.config import LOOKUP_SOURCES
from dialwhom.routing.model import Query
from dialwhom.routing.request import MAX_VALUE_LEN, ExotelRequest, QueryString, clean, parse_request

CALLER = "+919876543210"
LINE = sample.LINE_NORTH

#: every parameter of docs/exotel.md §1, plus the extras seen in real payloads
FULL_PAYLOAD = {
    "CallSid": "b6cfaf5c7a3e4b9d8f0a1c2d3e4f5a6b",
    "CallFrom": "09876543210",
    "CallTo": "08039513882",
    "From": "09876543210",
    "To": "08039513882",
    "CallStatus": "in-progress",
    "Direction": "incoming",
    "Created": "2022-02-23 12:31:59",
    "StartTime": "Wed, 23 Feb 2022 12:31:59",
    "EndTime": "1970-01-01 05:30:00",
    "DialCallDuration": "0",
    "CallType": "call-attempt",
    "DialWhomNumber": "",
    "CurrentTime": "2022-02-23 12:32:04",
    "DialCallStatus": "",
    "digits": '"1234"',
    "CustomField": "A-1004",
    "RecordingUrl": "",
    "flow_id": "228963",
    "tenant_id": "67890",
    "ForwardedFrom": "",
    "ProcessStatus": "null",
    "RecordingAvailableBy": "Wed, 23 Feb 2022 12:37:59",
    "OutgoingPhoneNumber": "08039513882",
}


def test_a_full_first_request():
    r = parse_request(FULL_PAYLOAD, "IN")
    assert r.call_sid == "b6cfaf5c7a3e4b9d8f0a1c2d3e4f5a6b"
    assert r.caller == CALLER
    assert r.caller_raw == "09876543210"
    assert r.line == LINE
    assert r.custom_field == "A-1004"
    assert r.digits == "1234"
    assert r.dial_call_status is None  # empty means absent
    assert r.dial_whom_number is None


def test_a_repeat_request_after_a_busy_attempt():
    params = dict(FULL_PAYLOAD, DialWhomNumber="09800000001", DialCallStatus="busy", CallType="incomplete")
    del params["digits"]  # only sent on the first request of a Dial Whom run
    r = parse_request(params, "IN")
    assert r.dial_call_status == "busy"
    assert r.dial_whom_number == "09800000001"
    assert r.digits is None


def test_dial_call_status_is_lowercased_and_sip_agent_kept():
    r = parse_request({"DialCallStatus": " Busy ", "DialWhomNumber": " sip:agent42 "})
    assert r.dial_call_status == "busy"
    assert r.dial_whom_number == "sip:agent42"


@pytest.mark.parametrize(
    "params, caller_raw",
    [
        ({"CallFrom": "09876543210", "Callfrom": "09800000001", "From": "09800000002"}, "09876543210"),
        ({"Callfrom": "09800000001", "From": "09800000002"}, "09800000001"),
        ({"From": "09800000002"}, "09800000002"),
        ({"CallFrom": "", "From": "09800000002"}, "09800000002"),
        ({"CallFrom": "null", "Callfrom": "NULL", "From": "09800000002"}, "09800000002"),
        ({"CallFrom": "  ", "From": "09800000002"}, "09800000002"),
        ({"CallFrom": "undefined", "From": "09800000002"}, "09800000002"),
    ],
)
def test_caller_precedence(params, caller_raw):
    r = parse_request(params, "IN")
    assert r.caller_raw == caller_raw


@pytest.mark.parametrize(
    "params, line",
    [
        ({"CallTo": "08039513882", "To": "08039513883"}, sample.LINE_NORTH),
        ({"To": "08039513883"}, sample.LINE_SOUTH),
        ({"CallTo": "null", "To": "08039513883"}, sample.LINE_SOUTH),
        ({"CallTo": "", "To": ""}, None),
        ({"CallTo": "8039513882"}, sample.LINE_NORTH),
    ],
)
def test_line_precedence(params, line):
    assert parse_request(params, "IN").line == line


@pytest.mark.parametrize(
    "raw, caller",
    [
        ("09876543210", CALLER),
        ("+919876543210", CALLER),
        (" 919876543210", CALLER),  # an unencoded '+' arrives as a space
        ("8039513882", LINE),
        ("0014155550123", "+14155550123"),
        ("sip:agent42", None),
        ("anonymous", None),
        ("12", None),
    ],
)
def test_caller_forms(raw, caller):
    r = parse_request({"CallFrom": raw}, "IN")
    assert r.caller == caller
    assert r.caller_raw == raw


@pytest.mark.parametrize("value", ["", "null", "NULL", "Null", " null ", "None", "undefined", "   "])
def test_empty_and_null_are_absent(value):
    r = parse_request(
        {"CallSid": value, "CallFrom": value, "CallTo": value, "CustomField": value, "digits": value,
         "Direction": value, "DialCallStatus": value, "DialWhomNumber": value, "CallStatus": value}
    )
    assert r == ExotelRequest()


@pytest.mark.parametrize(
    "raw, digits",
    [
        ('"1234"', "1234"),
        ("1234", "1234"),
        ('" 1234 "', "1234"),
        ('""', None),
        ('"', None),
        ('"A-1002"', "A-1002"),
    ],
)
def test_digits_lose_their_quotes(raw, digits):
    assert parse_request({"digits": raw}).digits == digits


def test_capitalised_digits_are_read_too():
    assert parse_request({"Digits": '"42"'}).digits == "42"


def test_unknown_parameters_are_ignored():
    r = parse_request({"CallFrom": "09876543210", "Foo": "bar", "callfrom": "09800000001", "token": "x" * 30, "": ""})
    assert r == parse_request({"CallFrom": "09876543210"})


def test_overlong_values_are_absent():
    assert clean("9" * (MAX_VALUE_LEN + 1)) is None
    assert clean("9" * MAX_VALUE_LEN) == "9" * MAX_VALUE_LEN
    assert parse_request({"CallFrom": "0" * 10_000}).caller_raw is None


def test_call_sid_is_trimmed_and_bounded():
    assert parse_request({"CallSid": "  abc  "}).call_sid == "abc"
    assert len(parse_request({"CallSid": "a" * 200}).call_sid) == 128


def test_non_text_values_are_absent():
    assert clean(None) is None
    assert clean(123) is None
    assert parse_request({"CallFrom": 9876543210, "CallSid": ["a"]}) == ExotelRequest()


# -- queries() ------------------------------------------------------------------------------


def _req(**params) -> ExotelRequest:
    return parse_request(params, "IN")


def test_queries_follow_lookup_order():
    r = _req(CallFrom="09876543210", CustomField="A-1004", digits='"1234"')
    qs = r.queries(("custom_field", "digits", "caller"), "IN")
    assert qs == [Query("account", "A-1004", "custom_field"), Query("account", "1234", "digits"), Query("phone", CALLER, "caller")]
    qs = r.queries(("caller", "digits", "custom_field"), "IN")
    assert [q.source for q in qs] == ["caller", "digits", "custom_field"]


def test_queries_only_use_listed_sources():
    r = _req(CallFrom="09876543210", CustomField="A-1004", digits='"1234"')
    assert r.queries(("caller",), "IN") == [Query("phone", CALLER, "caller")]
    assert r.queries((), "IN") == []


def test_no_identity_means_no_query():
    assert _req(CallSid="x", CallTo="08039513882").queries(LOOKUP_SOURCES, "IN") == []


@pytest.mark.parametrize(
    "value, query",
    [
        ("A-1004", Query("account", "A-1004", "custom_field")),
        ("  A-1004 ", Query("account", "A-1004", "custom_field")),
        ("lead_42", Query("account", "lead_42", "custom_field")),
        ("1004", Query("account", "1004", "custom_field")),
        ("+919876543210", Query("phone", CALLER, "custom_field")),
        ("09876543210", Query("phone", CALLER, "custom_field")),
        ("9876543210", Query("phone", CALLER, "custom_field")),
        ("+91-98765-43210", Query("phone", CALLER, "custom_field")),
        pytest.param(
            "123456", Query("account", "123456", "custom_field"),
        ),
    ],
)
def test_custom_field_as_phone_or_account(value, query):
    assert _req(CustomField=value).queries(("custom_field",), "IN") == [query]


@pytest.mark.parametrize(
    "raw, query",
    [
        ('"1234"', Query("account", "1234", "digits")),
        ('"12345678"', Query("account", "12345678", "digits")),
        ('"9876543210"', Query("phone", CALLER, "digits")),
        ('"09876543210"', Query("phone", CALLER, "digits")),
        ('"A-1002"', Query("account", "A-1002", "digits")),
    ],
)
def test_digits_short_are_an_account_long_are_a_phone(raw, query):
    assert _req(digits=raw).queries(("digits",), "IN") == [query]


def test_duplicate_keys_are_asked_once():
    r = _req(CallFrom="09876543210", CustomField="+919876543210", digits='"9876543210"')
    qs = r.queries(LOOKUP_SOURCES, "IN")
    assert qs == [Query("phone", CALLER, "custom_field")]
    qs = r.queries(("caller", "custom_field", "digits"), "IN")
    assert qs == [Query("phone", CALLER, "caller")]


def test_same_account_from_custom_field_and_digits_is_asked_once():
    r = _req(CustomField="A-1004", digits='"A-1004"')
    assert r.queries(LOOKUP_SOURCES, "IN") == [Query("account", "A-1004", "custom_field")]


def test_queries_use_the_region_given():
    r = parse_request({"CustomField": "4155550123"}, "US")
    assert r.queries(("custom_field",), "US") == [Query("phone", "+14155550123", "custom_field")]


# -- never raises ----------------------------------------------------------------------------

KNOWN = sorted(set(FULL_PAYLOAD) | {"Callfrom", "Digits", "token"})
phoneish = st.text(alphabet="0123456789+()-./ \t\"", max_size=60)
values = st.one_of(
    st.text(max_size=80),
    phoneish,
    st.sampled_from(["", "null", "NULL", "sip:agent", '"1234"', " 919876543210", "09876543210", "A-1004"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=20),  # control chars
    st.text(min_size=250, max_size=3000),  # huge
    st.text(alphabet=st.characters(whitelist_categories=("Nd",)), max_size=20),  # unicode digits
)
params_st = st.dictionaries(st.one_of(st.sampled_from(KNOWN), st.text(max_size=20)), values, max_size=12)
orders = [tuple(p) for n in range(len(LOOKUP_SOURCES) + 1) for p in itertools.permutations(LOOKUP_SOURCES, n)]


@given(params_st, st.sampled_from(["IN", "US", "GB"]), st.sampled_from(orders))
@settings(max_examples=400, deadline=None)
def test_parse_request_and_queries_never_raise(params, region, order):
    r = parse_request(params, region)
    for number in (r.caller, r.line):
        assert number is None or (number.startswith("+") and number[1:].isdigit())
    assert r.call_sid is None or 0 < len(r.call_sid) <= 128
    qs = r.queries(order, region)
    assert len(qs) <= len(order)
    assert len({q.cache_key() for q in qs}) == len(qs)
    for q in qs:
        assert q.source in order
        assert q.kind in ("phone", "account")
        assert q.value and q.value == q.value.strip()
        if q.kind == "phone":
            assert q.value.startswith("+") and q.value[1:].isdigit()
    # queries() follows lookup_order
    assert [order.index(q.source) for q in qs] == sorted(order.index(q.source) for q in qs)


# -- QueryString: the parameters we read, straight from the query string ----------------------

READ = ["CallSid", "CallFrom", "Callfrom", "From", "CallTo", "To", "digits", "Digits", "CustomField",
        "DialWhomNumber", "DialCallStatus", "token"]
_names = st.sampled_from(READ + ["Created", "flow_id", "CallType", "Call", "Sid", "xCallSid", "callsid", "a b", "ümlaut"])
_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_names, _values), max_size=25))
def test_query_string_agrees_with_the_standard_parser(pairs):
    query = urlencode(pairs)
    expected: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        expected.setdefault(name, value)  # first value wins
    q = QueryString(query)
    for name in READ:
        assert q.get(name) == expected.get(name)


def test_query_string_does_not_take_a_name_inside_another_or_inside_a_value():
    q = QueryString("xCallSid=no&CallTo=08039513882&Note=CallFrom%3D1&CallFrom=09876543210&To=x")
    assert (q.get("CallSid"), q.get("CallTo"), q.get("CallFrom"), q.get("To")) == (None, "08039513882", "09876543210", "x")


def test_query_string_decodes_plus_and_percent():
    q = QueryString("CustomField=A%2B1+B&digits=%221234%22&From=%2B919876543210&CallSid=abc")
    assert (q.get("CustomField"), q.get("digits"), q.get("From"), q.get("CallSid")) == ("A+1 B", '"1234"', "+919876543210", "abc")


@pytest.mark.parametrize("query", ["", "&", "CallSid", "CallSid&From", "=x", "&&&CallSid=&"])
def test_query_string_of_odd_strings_never_raises(query):
    assert QueryString(query).get("CallSid") in (None, "")
    assert parse_request(QueryString(query)) == ExotelRequest()


def test_parse_request_reads_a_query_string_like_a_mapping():
    query = urlencode(FULL_PAYLOAD)
    assert parse_request(QueryString(query)) == parse_request(FULL_PAYLOAD)


def test_the_dial_whom_path_can_skip_the_passthru_outcome():
    params = {"CallSid": "c1", "CallFrom": "09876543210", "DialCallStatus": "completed", "DialWhomNumber": "09800000001"}
    full, lean = parse_request(params), parse_request(params, outcome=False)
    assert (full.dial_call_status, full.dial_whom_number) == ("completed", "09800000001")
    assert (lean.dial_call_status, lean.dial_whom_number) == (None, None)
    assert (lean.call_sid, lean.caller) == (full.call_sid, full.caller)
