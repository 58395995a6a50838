"""Ringing the owner only when they can take the call (issue 11), with an injected clock.

Every test reads time from a `FixedClock`; none sleeps. 2026-12-01 is a Tuesday.
"""

from __future__ import annotations

import pytest

from avail_config import (ASHA, EAST2, FALLBACK, LINE_NORTH, NIGHT2, NINA, NORTH3, OMAR, RAVI, VIKRAM,
                          OwnerSource, config, ist)
from dialwhom.routing.availability import FixedClock, parse_at
from dialwhom.routing.config import ConfigError, from_mapping
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.request import parse_request
from dialwhom.routing.service import RoutingService

CALLER = "09876543210"


@pytest.fixture
def make():
    """make(at, owner=..., **config changes) -> a RoutingService reading a FixedClock at `at`."""
    made: list[RoutingService] = []

    def build(at: str, owner: str | None = "asha@example.com", active: bool | None = None, **changes):
        svc = RoutingService(from_mapping(config(**changes), environ={}), [OwnerSource(owner, active)], clock=FixedClock(ist(at)))
        made.append(svc)
        return svc

    yield build
    for svc in made:
        svc.close()


_sid = iter(range(10**6))


def call(svc, sid: str | None = None, **params):
    params.setdefault("CallFrom", CALLER)
    params["CallSid"] = sid or f"call-{next(_sid)}"
    return svc.decide(parse_request(params), Deadline.from_ms(2000))


def owner_only(**rep_changes):
    """The config's reps with Asha's entry changed."""
    reps = config()["reps"]
    reps[0] = {**reps[0], **rep_changes}
    return reps


# -- hours ---------------------------------------------------------------------------------------


def test_inside_office_hours_the_owner_leads_then_the_team(make):
    d = call(make("2026-12-01 10:00", reps=owner_only(away=[])))
    assert d.plan.numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]
    assert d.trace.skips == ()


def test_outside_hours_everyone_on_office_hours_is_left_out_with_the_reason(make):
    d = call(make("2026-12-01 19:30", reps=owner_only(away=[])))
    assert d.plan.numbers == [FALLBACK]
    assert d.trace.skips == ("owner outside hours 'office'", "+91*******002 outside hours 'office'", "+91*******003 outside hours 'office'")
    assert "skipped=owner outside hours 'office' | +91*******002" in d.trace.header()


def test_a_window_that_crosses_midnight(make):
    for at, open_ in [("2026-12-01 23:00", True), ("2026-12-02 02:00", True), ("2026-12-02 09:29", True),
                      ("2026-12-02 09:30", False), ("2026-12-02 12:00", False), ("2026-12-02 18:30", True),
                      ("2026-12-07 03:00", True)]:  # Monday 03:00: Sunday's window, across the week's end
        d = call(make(at, owner="nina@example.com"))
        expected = [NINA, NIGHT2, FALLBACK] if open_ else [FALLBACK]
        assert d.plan.numbers == expected, at


def test_a_rep_in_another_zone_than_the_config(make):
    # Omar works office hours in Dubai (UTC+4): 09:30-18:30 there is 11:00-20:00 in India.
    reps = config()["reps"]
    reps[3]["hours"] = "office"
    d = call(make("2026-12-01 19:30", owner="omar@example.com", reps=reps))  # 18:00 in Dubai
    assert d.plan.numbers[0] == OMAR
    assert "+91*******022 outside hours 'office'" in d.trace.skips  # his team's backup keeps India time
    d = call(make("2026-12-01 10:00", owner="omar@example.com", reps=reps))  # 08:30 in Dubai
    assert d.plan.numbers == [EAST2, FALLBACK]
    assert d.trace.skips == ("owner outside hours 'office'",)


def test_a_holiday_closes_every_schedule_but_not_always_available_agents(make):
    d = call(make("2026-12-25 11:00", reps=owner_only(away=[])))  # a Friday
    assert d.plan.numbers == [FALLBACK]
    assert d.trace.skips[0] == "owner holiday 2026-12-25"
    d = call(make("2026-12-25 11:00", owner="nina@example.com", schedules={"office": {"mon-fri": "09:30-18:30"}, "night": {"mon-sun": "00:00-24:00"}}))
    assert d.plan.numbers == [FALLBACK]  # night hours closed too
    # a rep with no hours anywhere is always available, holidays included
    d = call(make("2026-12-25 11:00", teams={"north": {"backup": [VIKRAM]}, "east": {}, "nightshift": {}}, reps=owner_only(away=[])))
    assert d.plan.numbers == [ASHA, VIKRAM, FALLBACK]


# -- leave ---------------------------------------------------------------------------------------


def test_leave_with_a_delegate_puts_the_delegate_in_the_owners_place(make):
    d = call(make("2026-12-24 11:00"))
    assert d.plan.numbers == [RAVI, VIKRAM, NORTH3, FALLBACK]
    assert [s.why for s in d.plan.steps] == ["delegate", "team:north", "team:north", "fallback"]
    assert d.trace.skips == ("owner away until 2027-01-02; delegate Ravi",)
    assert "  skipped: owner away until 2027-01-02; delegate Ravi" in d.trace.explain()


def test_leave_ends_after_its_last_day(make):
    assert call(make("2027-01-02 12:00")).plan.numbers[0] == RAVI  # a Saturday, 10:00-14:00
    assert call(make("2027-01-04 10:00")).plan.numbers[0] == ASHA  # Monday after


def test_leave_without_a_delegate_rings_the_team(make):
    d = call(make("2026-12-24 11:00", reps=owner_only(away=[{"from": "2026-12-20", "to": "2027-01-02"}])))
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert d.trace.skips == ("owner away until 2027-01-02",)


def test_leave_with_date_times_and_a_delegate_who_is_away_too(make):
    reps = owner_only(away=[{"from": "2026-12-01T12:00", "to": "2026-12-01T15:00+05:30", "delegate": "vikram@example.com"}])
    reps[1]["away"] = [{"from": "2026-12-01", "to": "2026-12-01"}]
    assert call(make("2026-12-01 11:59", reps=reps)).plan.numbers[0] == ASHA
    d = call(make("2026-12-01 12:30", reps=reps))
    assert d.plan.numbers == [NORTH3, FALLBACK]  # Vikram is away: neither delegate nor backup
    assert d.trace.skips == ("owner away until 2026-12-01 15:00; delegate vikram", "delegate vikram away until 2026-12-01",
                             "+91*******002 away until 2026-12-01")


def test_strict_with_the_owner_away(make):
    teams = config()["teams"]
    teams["north"]["stickiness"] = "strict"
    d = call(make("2026-12-24 11:00", teams=teams))  # delegate takes the place; the team is never rung
    assert d.plan.numbers == [RAVI, FALLBACK]
    assert "team north is strict: backups not rung" in d.trace.skips
    d = call(make("2026-12-24 11:00", teams=teams, reps=owner_only(away=[{"from": "2026-12-20", "to": "2027-01-02"}])))
    assert d.plan.numbers == [FALLBACK]
    assert d.trace.skips == ("owner away until 2027-01-02", "team north is strict: backups not rung")
    d = call(make("2026-12-01 11:00", teams=teams))  # owner in: owner, then fallback
    assert d.plan.numbers == [ASHA, FALLBACK]


def test_an_inactive_owner_is_skipped_with_the_reason(make):
    svc = make("2026-12-01 11:00", active=False)
    d = call(svc)
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert d.trace.skips == ("owner inactive in the CRM",)
    counts, _ = svc.metrics.tallies()
    assert counts[("owner", "skipped", "inactive")] == 1


# -- busy ----------------------------------------------------------------------------------------


def test_a_busy_owner_moves_behind_the_team_and_leads_again_once_free(make):
    svc = make("2026-12-01 10:41")
    first = call(svc)
    assert first.plan.numbers[0] == ASHA
    assert svc.record_agent_event(first.trace.call_sid, ASHA, "busy") == "busy"
    svc.clock.advance(120)
    d = call(svc)
    assert d.plan.numbers == [VIKRAM, NORTH3, ASHA, FALLBACK]
    assert d.trace.skips == ("owner busy since 10:41; moved behind the available agents",)
    assert svc.record_agent_event(first.trace.call_sid, "09800000001", "free") == "free"
    assert call(svc).plan.numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]
    counts, _ = svc.metrics.tallies()
    assert counts[("owner", "rung-first", "first")] == 2 and counts[("owner", "skipped", "busy")] == 1


def test_a_busy_without_free_lapses_after_busy_ttl(make):
    svc = make("2026-12-01 10:41", busy_ttl_s=600)
    svc.record_agent_event(None, VIKRAM, "busy")
    assert call(svc).plan.numbers == [ASHA, NORTH3, VIKRAM, FALLBACK]
    svc.clock.advance(601)
    assert call(svc).plan.numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]


def test_an_event_for_a_number_we_never_offered_is_busy_for_nobody(make):
    svc = make("2026-12-01 10:41")
    first = call(svc)
    assert svc.record_agent_event(first.trace.call_sid, "+919999999999", "busy") == "nobody"
    assert svc.record_agent_event(None, "+919999999999", "busy") == "nobody"
    assert svc.record_agent_event(first.trace.call_sid, ASHA, "ringing") == "ignored"
    assert svc.ledger.busy_map() == {}


def test_passthru_completed_frees_the_agent(make):
    svc = make("2026-12-01 10:41")
    first = call(svc)
    svc.record_agent_event(first.trace.call_sid, ASHA, "busy")
    assert call(svc).plan.numbers[0] == VIKRAM
    svc.record_outcome(parse_request({"CallSid": first.trace.call_sid, "CallFrom": CALLER, "DialWhomNumber": ASHA, "DialCallStatus": "completed"}))
    assert call(svc).plan.numbers[0] == ASHA


# -- backup order --------------------------------------------------------------------------------


def _team(order: str, backup=None):
    teams = config()["teams"]
    teams["north"] = {"backup": backup or [VIKRAM, NORTH3, "+919800000005"], "order": order}
    return teams


def test_round_robin_rotates_per_new_call_and_a_call_keeps_its_plan(make):
    svc = make("2026-12-01 11:00", owner=None, teams=_team("round-robin"))
    leads = [call(svc, To=LINE_NORTH).plan.numbers[0] for _ in range(4)]
    assert leads == [VIKRAM, NORTH3, "+919800000005", VIKRAM]
    first = call(svc, "one-call", To=LINE_NORTH)
    again = [call(svc, "one-call", To=LINE_NORTH, DialWhomNumber=n, DialCallStatus="no-answer") for n in first.plan.numbers[:2]]
    assert all(d.plan.numbers == first.plan.numbers and d.trace.path == "repeat" for d in again)
    assert call(svc, To=LINE_NORTH).plan.numbers[0] != first.plan.numbers[0]  # the repeats took no turn


def test_round_robin_rotates_over_the_available_backups_only(make):
    reps = config()["reps"]
    reps[1]["away"] = [{"from": "2026-12-01", "to": "2026-12-01"}]  # Vikram
    svc = make("2026-12-01 11:00", owner=None, teams=_team("round-robin"), reps=reps)
    leads = [call(svc, To=LINE_NORTH).plan.numbers[0] for _ in range(4)]
    assert leads == [NORTH3, "+919800000005", NORTH3, "+919800000005"]


def test_longest_idle_after_completed_calls(make):
    svc = make("2026-12-01 11:00", teams=_team("longest-idle"), reps=owner_only(away=[]))
    c5 = "+919800000005"
    assert call(svc).plan.numbers == [ASHA, VIKRAM, NORTH3, c5, FALLBACK]  # nobody seen yet: config order
    for agent in (VIKRAM, NORTH3):
        d = call(svc)
        svc.record_outcome(parse_request({"CallSid": d.trace.call_sid, "CallFrom": CALLER, "DialWhomNumber": agent, "DialCallStatus": "completed"}))
        svc.clock.advance(60)
    assert call(svc).plan.numbers == [ASHA, c5, VIKRAM, NORTH3, FALLBACK]  # never seen first, then the longest idle
    svc.record_agent_event(None, c5, "busy")
    svc.clock.advance(60)
    svc.record_agent_event(None, c5, "free")
    assert call(svc).plan.numbers == [ASHA, VIKRAM, NORTH3, c5, FALLBACK]


# -- unknown callers -----------------------------------------------------------------------------


def test_unknown_callers_get_the_same_filters_on_the_line_team_and_last_agent(make):
    svc = make("2026-12-01 19:30", owner=None)
    d = call(svc, To=LINE_NORTH)
    assert d.plan.numbers == [FALLBACK]
    assert d.trace.skips == ("+91*******002 outside hours 'office'", "+91*******003 outside hours 'office'")
    svc.clock = FixedClock(ist("2026-12-01 11:00"))
    first = call(svc, To=LINE_NORTH)
    svc.record_outcome(parse_request({"CallSid": first.trace.call_sid, "CallFrom": CALLER, "DialWhomNumber": VIKRAM, "DialCallStatus": "completed"}))
    assert call(svc).plan.numbers[0] == VIKRAM  # last agent
    svc.record_agent_event(None, VIKRAM, "busy")
    d = call(svc)
    assert d.plan.numbers == [NORTH3, VIKRAM, FALLBACK]
    assert d.trace.skips[0].startswith("last agent +91*******002 busy since 11:00")


def test_fallback_endpoint_reads_neither_clock_nor_ledger(make):
    svc = make("2026-12-01 19:30")
    d = svc.fallback(parse_request({"To": LINE_NORTH}), Deadline.from_ms(2000))
    assert d.plan.numbers == [VIKRAM, NORTH3, FALLBACK]


# -- config --------------------------------------------------------------------------------------


def test_the_parsed_config():
    s = from_mapping(config(), environ={})
    assert s.timezone == "Asia/Kolkata" and s.busy_ttl_s == 1800.0
    assert s.teams["north"] == (VIKRAM, NORTH3) and s.teams["north"].hours == "office" and s.teams["north"].order == "in-order"
    assert s.reps[0].away[0].delegate == "ravi@example.com" and s.reps[3].timezone == "Asia/Dubai"
    assert str(s.holidays and min(s.holidays)) == "2026-12-25"


def _bad(**changes):
    return changes


@pytest.mark.parametrize("changes, key, words", [
    (_bad(reps=owner_only(hours="offfice")), "reps[0].hours", "not a schedule under 'schedules' (defined: night, office)"),
    (_bad(teams={"north": {"backup": [], "hours": "day"}, "east": {}, "nightshift": {}}), "teams.north.hours", "not a schedule"),
    (_bad(schedules={"office": {"mon-fri": "9-6"}}), "schedules.office.mon-fri", '"HH:MM-HH:MM"'),
    (_bad(schedules={"office": {"mon-fri": "25:00-26:00"}}), "schedules.office.mon-fri", "hours 00-23"),
    (_bad(schedules={"office": {"mon-fri": "09:00-09:00"}}), "schedules.office.mon-fri", "00:00-24:00"),
    (_bad(schedules={"office": {"monday": "09:00-18:00"}}), "schedules.office.monday", "mon, mon-fri or sat,sun"),
    (_bad(timezone="India/Delhi"), "timezone", "IANA name such as Asia/Kolkata"),
    (_bad(reps=owner_only(timezone="Mars/Olympus")), "reps[0].timezone", "IANA name"),
    (_bad(reps=owner_only(away=[{"from": "2026-12-20", "to": "2026-12-30", "delegate": "ghost@example.com"}])), "reps[0].away[0].delegate", "is not a rep"),
    (_bad(reps=owner_only(away=[{"from": "2026-12-20", "to": "2026-12-10"}])), "reps[0].away[0].to", "before 'from'"),
    (_bad(reps=owner_only(away=[{"from": "20/12/2026", "to": "2026-12-30"}])), "reps[0].away[0].from", "YYYY-MM-DD"),
    (_bad(holidays=["25 Dec"]), "holidays[0]", "YYYY-MM-DD"),
    (_bad(teams={"north": {"stickiness": "sticky"}, "east": {}, "nightshift": {}}), "teams.north.stickiness", "loose, strict"),
    (_bad(teams={"north": {"order": "random"}, "east": {}, "nightshift": {}}), "teams.north.order", "in-order, round-robin, longest-idle"),
    (_bad(teams={"north": {"parallel": 50}, "east": {}, "nightshift": {}}), "teams.north.parallel", "2 to 10"),
    (_bad(busy_ttl_s="long"), "busy_ttl_s", "expected a number"),
    (_bad(busy_ttl_s=5), "busy_ttl_s", "use 10 to 86400"),
    (_bad(reps=owner_only(hour="office")), "reps[0].hour", "did you mean 'hours'?"),
])
def test_bad_input_is_a_startup_error_naming_the_key_and_the_valid_form(changes, key, words):
    with pytest.raises(ConfigError) as err:
        from_mapping(config(**changes), environ={})
    assert err.value.key == key and words in str(err.value)


def test_yaml_dates_are_read_as_dates(tmp_path):
    from dialwhom.routing.config import load

    path = tmp_path / "c.yaml"
    path.write_text("timezone: Asia/Kolkata\nholidays: [2026-12-25]\nreps:\n  - {owner: a@x.com, phone: '+919800000001',"
                    " away: [{from: 2026-12-20, to: 2027-01-02}]}\n")
    s = load(path)
    assert s.reps[0].away[0].until == "2027-01-02" and len(s.holidays) == 1


def test_parse_at_reads_the_config_zone_unless_an_offset_is_given():
    assert parse_at("2026-12-24 19:30", "Asia/Kolkata") == ist("2026-12-24 19:30")
    assert parse_at("2026-12-24 14:00+00:00", "Asia/Kolkata") == ist("2026-12-24 19:30")
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM"):
        parse_at("tomorrow", "UTC")


def test_an_owner_with_two_phones_one_busy_still_leads_and_is_explained_once(make):
    desk = "+919800000009"
    svc = make("2026-12-01 10:41", reps=owner_only(phone=[ASHA, desk], away=[]))
    svc.record_agent_event(None, ASHA, "busy")
    d = call(svc)
    assert d.plan.numbers == [desk, VIKRAM, NORTH3, ASHA, FALLBACK]
    assert d.plan.owner == "first"
    svc.clock = FixedClock(ist("2026-12-01 20:00"))
    d = call(svc)
    assert d.plan.numbers == [FALLBACK] and d.trace.skips.count("owner outside hours 'office'") == 1
