"""Whether an agent can take a call at a moment, and if not, why: hours, holidays, leave.

Config (README, "Configuration"): a top-level `timezone`, named weekly `schedules`, `holidays`;
per rep `hours`, `timezone`, `away`; per team `hours`, `stickiness`, `order` and the JSON-mode
options. `parse` reads them (called once from `dialwhom.routing.config.from_mapping`); every bad
value is a `ConfigError` naming the key and the valid form.

At run time `Availability.check(number, team, ts)` answers from a per-minute memo: schedule
windows are whole minutes, so the answer for one agent cannot change within a minute, and the
zone conversion is done once per zone per minute, not once per request.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialwhom.routing.config_error import ConfigError
from dialwhom.routing.schema import Field, validate_options

# -- a stopped clock ------------------------------------------------------------------------------


class FixedClock:
    """A `dialwhom.routing.ports.Clock` stopped at one moment (`dialwhom lookup --at`); `advance` moves it (tests)."""

    def __init__(self, at: datetime):
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = at
        self._mono = 1000.0

    def now(self) -> datetime:
        return self.at

    def time(self) -> float:
        return self.at.timestamp()

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self._mono += seconds


# -- config: the keys, declared once (README "Configuration" documents each) --------------------


def _zone_name(value: Any, key: str) -> str | None:
    if value is None:
        return None
    _zone(key, value)
    return value


def _passed(value: Any, key: str) -> Any:
    return value  # checked by `parse`, which needs the other sections (schedules, reps)


#: top-level keys (`dialwhom.routing.config.TOP_LEVEL` includes them)
TOP = (
    Field("timezone", default="UTC", parse=_zone_name, help="IANA zone for schedules, holidays and leave"),
    Field("schedules", default={}, parse=lambda v, k: _schedules(v, k), help="named weekly hours; a day not listed is closed"),
    Field("holidays", default=[], parse=lambda v, k: _holidays(v, k), help="YYYY-MM-DD dates every schedule is closed on"),
    Field("busy_ttl_s", float, default=1800.0, min=10, max=86400, help="a busy agent with no later free is free after this"),
)
#: keys of each entry of `reps` (`config.REP` includes them)
REP = (
    Field("hours", parse=_passed, help="a schedule name; default: the team's hours; absent everywhere: always"),
    Field("timezone", parse=_zone_name, help="an IANA zone overriding the top-level one for this rep"),
    Field("away", default=[], parse=_passed, help="leave: [{from, to, delegate}], dates inclusive or ISO date-times"),
)
STICKINESS = ("loose", "strict")
ORDERS = ("in-order", "round-robin", "longest-idle")
#: keys of each team under `teams` (`config.TEAM` includes them)
TEAM = (
    Field("hours", parse=_passed, help="a schedule name: for the team's backups, and the default for its reps"),
    Field("stickiness", str, default="loose", choices=STICKINESS, help="strict: owner (or delegate) only, then fallback"),
    Field("order", str, default="in-order", choices=ORDERS, help="the order of the backups"),
    Field("ring_timeout_s", int, min=5, max=600, help="JSON mode: max_ringing_duration of each attempt"),
    Field("parallel", int, min=2, max=10, help="JSON mode: ring this many numbers at once (parallel_ringing)"),
)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_WEEK = 7 * 1440


class Team(tuple):
    """A team's backup numbers (a tuple of E.164, as before) with its routing policy."""

    hours: str | None
    stickiness: str
    order: str
    ring_timeout_s: int | None
    parallel: int | None

    def __new__(cls, numbers=(), *, hours=None, stickiness="loose", order="in-order", ring_timeout_s=None, parallel=None):
        self = super().__new__(cls, numbers)
        self.hours, self.stickiness, self.order = hours, stickiness, order
        self.ring_timeout_s, self.parallel = ring_timeout_s, parallel
        return self


def team_policy(team: Any, name: str) -> str:
    """A team's `name` setting, also for a plain tuple of numbers (the default policy)."""
    return getattr(team, name, None) or {"stickiness": "loose", "order": "in-order"}.get(name)


@dataclass(frozen=True)
class Schedule:
    """Weekly hours: open intervals in minutes of the week (Monday 00:00 = 0), sorted."""

    name: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def is_open(self, week_minute: int) -> bool:
        i = bisect.bisect_right(self.starts, week_minute) - 1
        return i >= 0 and week_minute < self.ends[i]


@dataclass(frozen=True)
class Leave:
    """One stretch of leave, as aware datetimes [start, end), with who takes the calls."""

    start: datetime
    end: datetime
    delegate: str | None
    until: str  # as written, for people: "2027-01-02"


def parse(top: Mapping[str, Any], reps: list, teams: dict) -> tuple[dict[str, Any], list, dict]:
    """The availability part of the config: (Settings fields, reps with hours/zone/leave, teams as `Team`).

    `top` is the validated top level (its `reps` and `teams` still the raw entries); `reps` and
    `teams` are what `config.from_mapping` made of those entries.
    """
    schedules = top["schedules"]
    zone = _zone("timezone", top["timezone"])

    def hours(key: str, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or value not in schedules:
            known = ", ".join(sorted(schedules)) or "none defined"
            raise ConfigError(key, f"'{value}' is not a schedule under 'schedules' (defined: {known})")
        return value

    new_teams: dict[str, Team] = {}
    for name, numbers in teams.items():
        key = f"teams.{name}"
        body = top["teams"].get(name) or {}
        t = validate_options(TEAM, _own(TEAM, body), key, what="a team")
        new_teams[name] = Team(numbers, hours=hours(f"{key}.hours", t["hours"]), stickiness=t["stickiness"], order=t["order"],
                               ring_timeout_s=t["ring_timeout_s"], parallel=t["parallel"])

    owners = {o.lower() for r in reps for o in r.owners}
    new_reps = []
    for i, (rep, body) in enumerate(zip(reps, top["reps"], strict=True)):
        key = f"reps[{i}]"
        r = validate_options(REP, _own(REP, body), key, what="a rep")
        rep_zone = _zone(f"{key}.timezone", r["timezone"]) if r["timezone"] is not None else zone
        if not isinstance(r["away"], list):
            raise ConfigError(f"{key}.away", "expected a list of {from: YYYY-MM-DD, to: YYYY-MM-DD, delegate: <rep owner>}")
        leaves = tuple(_leave(f"{key}.away[{j}]", item, rep_zone, owners, rep.owners) for j, item in enumerate(r["away"]))
        new_reps.append(replace(rep, hours=hours(f"{key}.hours", r["hours"]), timezone=r["timezone"], away=leaves))
    fields = {"timezone": top["timezone"], "schedules": schedules, "holidays": top["holidays"], "busy_ttl_s": top["busy_ttl_s"]}
    return fields, new_reps, new_teams


def _own(schema: tuple[Field, ...], body: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of an entry this module declares (config.py has checked the entry as a whole)."""
    names = {f.name for f in schema}
    return {k: v for k, v in body.items() if k in names}


def _zone(key: str, name: Any) -> ZoneInfo:
    try:
        if not isinstance(name, str) or not name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(key, f"{name!r} is not a time zone; use an IANA name such as Asia/Kolkata, Asia/Dubai or UTC") from None


def _schedules(value: Any, key: str = "schedules") -> dict[str, Schedule]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, 'expected a mapping of names to weekly hours, e.g. office: {mon-fri: "09:30-18:30"}')
    out = {}
    for name, days in value.items():
        skey = f"{key}.{name}"
        if not isinstance(days, Mapping) or not days:
            raise ConfigError(skey, 'expected days and windows, e.g. {mon-fri: "09:30-18:30", sat: "10:00-14:00"}')
        intervals: list[tuple[int, int]] = []
        for day_spec, windows in days.items():
            dkey = f"{skey}.{day_spec}"
            for day in _days(dkey, str(day_spec)):
                for start, end in _windows(dkey, windows):
                    s, e = day * 1440 + start, day * 1440 + end
                    if e > _WEEK:  # Sunday night into Monday morning
                        intervals += [(s, _WEEK), (0, e - _WEEK)]
                    else:
                        intervals.append((s, e))
        intervals.sort()
        merged: list[list[int]] = []
        for s, e in intervals:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out[str(name)] = Schedule(str(name), tuple(s for s, _ in merged), tuple(e for _, e in merged))
    return out


def _days(key: str, spec: str) -> list[int]:
    days: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        ends = part.split("-")
        if len(ends) not in (1, 2) or any(d not in _DAYS for d in ends):
            raise ConfigError(key, f"{spec!r} is not a day or range of days; write mon, mon-fri or sat,sun")
        a, b = _DAYS.index(ends[0]), _DAYS.index(ends[-1])
        days += [(a + k) % 7 for k in range((b - a) % 7 + 1)]
    return days


def _windows(key: str, value: Any) -> list[tuple[int, int]]:
    items = value if isinstance(value, list) else str(value).split(",") if isinstance(value, str) else [value]
    out = []
    for item in items:
        m = _WINDOW.match(str(item).strip()) if isinstance(item, str) else None
        if m is None:
            raise ConfigError(key, f'{item!r} is not a window; write "HH:MM-HH:MM" (24-hour clock), e.g. "09:30-18:30" or "18:30-09:30" across midnight')
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ConfigError(key, f"{item!r} is not a time of day; hours 00-23 (24:00 only as an end), minutes 00-59")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise ConfigError(key, f'{item!r} is empty; for the whole day write "00:00-24:00"')
        out.append((start, end if end > start else end + 1440))  # an end before the start is the next day
    return out


def _holidays(value: Any, key: str = "holidays") -> frozenset[date]:
    if not isinstance(value, list):
        raise ConfigError(key, 'expected a list of dates, e.g. ["2026-12-25", "2027-01-26"]')
    out = set()
    for i, item in enumerate(value):
        if isinstance(item, date) and not isinstance(item, datetime):  # YAML reads bare dates itself
            out.add(item)
            continue
        try:
            out.add(date.fromisoformat(str(item)))
        except ValueError:
            raise ConfigError(f"{key}[{i}]", f"{item!r} is not a date; write YYYY-MM-DD") from None
    return frozenset(out)


def _moment(key: str, value: Any, zone: ZoneInfo, *, end: bool) -> tuple[datetime, str]:
    """A leave bound: a date (whole day, inclusive) or an ISO date-time (zone unless an offset)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        day = value + timedelta(days=1) if end else value
        return datetime(day.year, day.month, day.day, tzinfo=zone), value.isoformat()
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                return _moment(key, date.fromisoformat(text), zone, end=end)
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(key, f"{value!r} is not a date; write YYYY-MM-DD or an ISO date-time like 2026-12-20T14:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt, dt.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _leave(key: str, item: Any, zone: ZoneInfo, owners: set[str], own: tuple[str, ...]) -> Leave:
    if not isinstance(item, Mapping) or "from" not in item or "to" not in item:
        raise ConfigError(key, "expected {from: YYYY-MM-DD, to: YYYY-MM-DD} and an optional delegate (a rep's owner)")
    unknown = set(item) - {"from", "to", "delegate"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key; leave has from, to and an optional delegate")
    start, _ = _moment(f"{key}.from", item["from"], zone, end=False)
    end, until = _moment(f"{key}.to", item["to"], zone, end=True)
    if end <= start:
        raise ConfigError(f"{key}.to", f"'to' ({until}) is before 'from'; write the first day of leave in 'from' and the last in 'to'")
    delegate = item.get("delegate")
    if delegate is not None:
        delegate = str(delegate).strip()
        if delegate.lower() not in owners:
            raise ConfigError(f"{key}.delegate", f"{delegate!r} is not a rep; write the 'owner' of another entry under 'reps'")
        if delegate.lower() in {o.lower() for o in own}:
            raise ConfigError(f"{key}.delegate", "a rep cannot delegate to themselves; name another rep")
    return Leave(start, end, delegate, until)


def parse_at(text: str, zone_name: str) -> datetime:
    """`lookup --at "YYYY-MM-DD HH:MM"`: an aware moment (the config's zone unless it has an offset)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a moment; write \"YYYY-MM-DD HH:MM\" (optionally with an offset like +05:30)") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=ZoneInfo(zone_name))


# -- run time ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why an agent cannot take the call now: `kind` for metrics, `text` for the trace."""

    kind: str  # outside-hours, holiday, away
    text: str
    delegate: str | None = None


@dataclass(frozen=True, slots=True)
class _Rules:
    zone: ZoneInfo
    schedule: Schedule | None
    leaves: tuple[Leave, ...]


class Availability:
    """Hours, holidays and leave of every number the config knows, checked per minute."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self.holidays = settings.holidays
        self._zones: dict[str, ZoneInfo] = {}
        #: (minute, answers by (number, team), local (week minute, date) by zone): replaced as a
        #: whole when the minute changes, so a thread still on the last minute writes to the old one
        self._state: tuple[int, dict, dict] = (-1, {}, {})
        self.enabled = bool(settings.schedules or settings.holidays or any(r.away for r in settings.reps))

    def _rules(self, number: str, team: str | None) -> _Rules:
        s = self.settings
        rep = s.rep_by_phone(number)
        team_hours = team_policy(s.teams.get(team), "hours") if team else None
        if rep is not None:
            # the rep's own hours, else their team's, else those of the team they are rung for
            hours = rep.hours or (team_policy(s.teams.get(rep.team), "hours") if rep.team else None) or team_hours
            zone = self._zone(rep.timezone) if rep.timezone else self.zone
            return _Rules(zone, s.schedules.get(hours) if hours else None, rep.away)
        return _Rules(self.zone, s.schedules.get(team_hours) if team_hours else None, ())

    def _zone(self, name: str) -> ZoneInfo:
        z = self._zones.get(name)
        if z is None:
            z = self._zones[name] = ZoneInfo(name)
        return z

    def check(self, number: str, team: str | None, ts: float) -> Unavailable | None:
        """None when `number` (rung for `team`) can take a call at `ts`; else why not."""
        if not self.enabled:
            return None
        minute = int(ts // 60)
        state = self._state
        if state[0] != minute:  # a new minute (or another moment: lookup --at): start afresh
            state = self._state = (minute, {}, {})
        key = (number, team)
        memo = state[1]
        if key in memo:
            return memo[key]
        result = memo[key] = self._check(self._rules(number, team), minute * 60, state[2])
        return result

    def _check(self, rules: _Rules, ts: int, locals_: dict) -> Unavailable | None:
        local = locals_.get(rules.zone)
        if local is None:
            dt = datetime.fromtimestamp(ts, rules.zone)
            local = locals_[rules.zone] = (dt.weekday() * 1440 + dt.hour * 60 + dt.minute, dt.date())
        week_minute, today = local
        for leave in rules.leaves:
            if leave.start.timestamp() <= ts < leave.end.timestamp():
                return Unavailable("away", f"away until {leave.until}", leave.delegate)
        if rules.schedule is not None:
            if today in self.holidays:
                return Unavailable("holiday", f"holiday {today.isoformat()}")
            if not rules.schedule.is_open(week_minute):
                return Unavailable("outside-hours", f"outside hours '{rules.schedule.name}'")
        return None

    def clock_time(self, ts: float) -> str:
        """HH:MM in the config's zone, for 'busy since 10:41'."""
        return datetime.fromtimestamp(ts, self.zone).strftime("%H:%M")


def connect_options(team: Any) -> dict[str, Any]:
    """The JSON mode's fields a team's options fill (`/exotel/connect`, exotel.md §5)."""
    out: dict[str, Any] = {}
    if getattr(team, "ring_timeout_s", None):
        out["max_ringing_duration"] = team.ring_timeout_s
    if getattr(team, "parallel", None):
        out["parallel_ringing"] = {"activate": True, "max_parallel_attempts": team.parallel}
    return out
