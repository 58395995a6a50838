"""The dial plan rules: owner, then team, then fallback; line team for unknown callers."""

from __future__ import annotations

import sample
import pytest
from dialwhom.routing.config import from_mapping
from dialwhom.routing.model import Match, Owner
from dialwhom.routing.plan import build_plan
from hypothesis import given, settings
from hypothesis import strategies as st
from sample import ASHA, NORTH3, VIKRAM  # noqa: E402

MEERA, MEERA_DESK, RAHUL, SOUTH3 = sample.MEERA, "+918041112233", sample.RAHUL, sample.SOUTH3
FALLBACK = sample.FALLBACK
LINE_NORTH, LINE_SOUTH, LINE_OTHER = sample.LINE_NORTH, sample.LINE_SOUTH, "+918039513899"

BASE = {
    "reps": [
        {"owner": "asha@example.com", "phone": ASHA, "team": "north"},
        {"owner": ["vikram@example.com", "005x0000001"], "phone": VIKRAM, "team": "north"},
        {"owner": "meera@example.com", "phone": [MEERA, MEERA_DESK], "team": "south"},
        {"owner": "rahul@example.com", "phone": RAHUL, "team": "south"},
        {"owner": "solo@example.com", "phone": "sip:solo-desk"},
    ],
    "teams": {
        "north": {"backup": [VIKRAM, NORTH3]},
        "south": {"backup": [RAHUL, SOUTH3]},
        "Inside-Sales": {"backup": ["sip:queue-7"]},
    },
    "fallback": [FALLBACK],
    "lines": {LINE_NORTH: "north", LINE_SOUTH: "south"},
}


def cfg(**changes):
    return from_mapping({**BASE, **changes}, environ={})


S = cfg()


def plan(match=None, line=None, settings_=S):
    return build_plan(settings_, match, line)


def owner(**kw) -> Match:
    team = kw.pop("team", None)
    return Match(owner=Owner(**kw), team=team)


def test_owner_then_team_then_fallback():
    p = plan(owner(email="asha@example.com"))
    assert p.numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]
    assert [s.why for s in p.steps] == ["owner", "team:north", "team:north", "fallback"]
    assert p.owner_known and p.team == "north"
    assert p.body() == f"{ASHA},{VIKRAM},{NORTH3},{FALLBACK}"


def test_owner_email_matches_case_insensitively_and_by_id():
    assert plan(owner(email="Asha@Example.COM")).numbers[0] == ASHA
    assert plan(owner(id="005x0000001")).numbers[0] == VIKRAM
    assert plan(owner(id="005X0000001")).numbers[0] == VIKRAM


def test_rep_with_several_phones_rings_them_all_first():
    p = plan(owner(email="meera@example.com"))
    assert p.numbers == [MEERA, MEERA_DESK, RAHUL, SOUTH3, FALLBACK]
    assert [s.why for s in p.steps][:2] == ["owner", "owner"]


def test_owner_in_own_team_backup_is_rung_once():
    # Vikram is north's first backup and the owner: ring him once, first
    p = plan(owner(email="vikram@example.com"))
    assert p.numbers == [VIKRAM, NORTH3, FALLBACK]


def test_owner_not_in_reps_but_crm_phone_is_rung():
    p = plan(owner(email="new@example.com", phone="098111 22334"))
    assert p.numbers == ["+919811122334", FALLBACK]
    assert p.owner_known
    assert any("no reps entry" in n for n in p.notes)


def test_owner_not_in_reps_with_crm_phone_and_crm_team():
    p = plan(owner(email="new@example.com", phone="+919811122334", team="south"))
    assert p.numbers == ["+919811122334", RAHUL, SOUTH3, FALLBACK]


@pytest.mark.parametrize("crm_team", ["north", "NORTH", "North", "inside-sales", "INSIDE-SALES"])
def test_crm_team_name_is_case_insensitive(crm_team):
    p = plan(Match(owner=Owner(email="new@example.com", phone="+919811122334"), team=crm_team))
    assert p.team in ("north", "Inside-Sales")
    assert p.team.lower() == crm_team.lower()
    assert len(p.numbers) > 2


def test_owners_team_from_crm_owner_field():
    p = plan(owner(id="u-9", phone="+919811122334", team="South"))
    assert p.team == "south"
    assert p.numbers == ["+919811122334", RAHUL, SOUTH3, FALLBACK]


def test_crm_team_not_in_config_is_noted():
    p = plan(owner(email="new@example.com", phone="+919811122334", team="east"))
    assert p.numbers == ["+919811122334", FALLBACK]
    assert any("'east'" in n for n in p.notes)


def test_reps_team_wins_over_crm_team():
    p = plan(owner(email="asha@example.com", team="south"))
    assert p.numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]


def test_owner_we_cannot_ring_gets_crm_team_or_line_team():
    # no rep entry and no phone: the CRM's team, if known, else the line's team
    p = plan(owner(email="ghost@example.com", team="south"), LINE_NORTH)
    assert p.numbers == [RAHUL, SOUTH3, FALLBACK]
    p = plan(owner(email="ghost@example.com"), LINE_NORTH)
    assert p.numbers == [VIKRAM, NORTH3, FALLBACK]
    assert any("no phone" in n for n in p.notes)


def test_unknown_caller_gets_the_line_team_then_fallback():
    p = plan(None, LINE_SOUTH)
    assert p.numbers == [RAHUL, SOUTH3, FALLBACK]
    assert [s.why for s in p.steps] == ["line-team:south", "line-team:south", "fallback"]
    assert not p.owner_known and p.team == "south"


def test_known_owner_ignores_the_line_team():
    assert plan(owner(email="asha@example.com"), LINE_SOUTH).numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]


@pytest.mark.parametrize("line", [None, LINE_OTHER])
def test_unknown_caller_on_unknown_line_gets_fallback_only(line):
    assert plan(None, line).numbers == [FALLBACK]


def test_fallback_plan_is_config_only():
    assert build_plan(S, None, LINE_NORTH).numbers == [VIKRAM, NORTH3, FALLBACK]
    assert build_plan(S, None, None).numbers == [FALLBACK]


def test_numbers_are_unique_across_owner_team_and_fallback():
    s = cfg(fallback=[ASHA, VIKRAM, FALLBACK])
    p = plan(owner(email="asha@example.com"), settings_=s)
    assert p.numbers == [ASHA, VIKRAM, NORTH3, FALLBACK]
    assert [s.why for s in p.steps] == ["owner", "team:north", "team:north", "fallback"]


def test_capped_at_max_numbers_keeping_the_order():
    s = cfg(max_numbers=3)
    assert plan(owner(email="meera@example.com"), settings_=s).numbers == [MEERA, MEERA_DESK, RAHUL]
    s = cfg(max_numbers=1)
    assert plan(owner(email="asha@example.com"), settings_=s).numbers == [ASHA]


def test_default_cap_is_five():
    s = cfg(fallback=[FALLBACK, "+918000000001", "+918000000002"])
    assert len(plan(owner(email="meera@example.com"), settings_=s).numbers) == 5


def test_sip_numbers_pass_through_from_config():
    p = plan(owner(email="solo@example.com"))
    assert p.numbers == ["sip:solo-desk", FALLBACK]
    p = plan(owner(email="x@example.com", phone="+919811122334", team="inside-sales"))
    assert p.numbers == ["+919811122334", "sip:queue-7", FALLBACK]


def test_config_without_numbers_gives_an_empty_plan():
    p = build_plan(from_mapping({}, environ={}), None, None)
    assert p.numbers == [] and p.body() == ""


owners = st.one_of(
    st.none(),
    st.builds(
        lambda ident, phone, team: Match(owner=Owner(email=ident, phone=phone), team=team),
        st.sampled_from(["asha@example.com", "meera@example.com", "solo@example.com", "ghost@example.com", "x"]),
        st.sampled_from([None, "", "+919811122334", "garbage", "sip:crm-desk"]),
        st.sampled_from([None, "north", "SOUTH", "east", ""]),
    ),
)
lines = st.sampled_from([None, LINE_NORTH, LINE_SOUTH, LINE_OTHER])


@given(owners, lines, st.integers(1, 20))
@settings(max_examples=300, deadline=None)
def test_plan_is_unique_capped_and_never_empty_with_a_fallback(match, line, cap):
    s = cfg(max_numbers=cap)
    p = build_plan(s, match, line)
    assert p.numbers, "never empty while the config has a fallback number"
    assert len(p.numbers) == len(set(p.numbers)) <= cap
    for n in p.numbers:
        assert n.startswith("sip:") or (n.startswith("+") and n[1:].isdigit())
    if cap >= 5:
        assert FALLBACK in p.numbers


def test_never_empty_while_config_holds_any_number():
    s = from_mapping({k: v for k, v in BASE.items() if k != "fallback"}, environ={})
    assert build_plan(s, None, None).numbers
