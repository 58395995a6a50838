"""The dial plan: whom Exotel rings, in order.

Rules, in order of precedence:

1. A known customer: the owner's number(s) (from ``reps``, else the phone the CRM reported),
   then the owner's team backups (team from ``reps``, else from the CRM), then ``fallback``.
2. An unknown customer (or an owner we cannot ring): the agent who last talked to this caller
   (learnt from the Passthru applet) and their team, else the team of the line that was
   called (``lines``); then ``fallback``.
3. Always unique, E.164 (or ``sip:``), capped at ``max_numbers``, and never empty while the
   config holds any number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from dialwhom.routing.config import Settings
from dialwhom.routing.model import Match
from dialwhom.routing.phones import parse_config_number


@dataclass(frozen=True)
class Step:
    number: str
    why: str  # "owner", "team:north", "line-team:south", "fallback"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    owner_known: bool = False
    team: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def numbers(self) -> list[str]:
        return [s.number for s in self.steps]

    def body(self) -> str:
        """The text/plain answer Exotel expects."""
        return self._body

    # A plan is immutable and a cached caller's plan is reused (RoutingService._plan_for), so
    # what every answer derives from it is worked out once.
    @cached_property
    def _body(self) -> str:
        return ",".join(s.number for s in self.steps)

    @cached_property
    def reasons(self) -> str:
        """Why each number is there, in order (``owner,team:north,fallback``), for the trace."""
        return ",".join(s.why for s in self.steps) or "empty"

    @cached_property
    def packed(self) -> tuple:
        """See `pack_plan`."""
        return (tuple((s.number, s.why) for s in self.steps), self.owner_known, self.team, tuple(self.notes))


def pack_plan(plan: Plan) -> tuple:
    """The plan as plain tuples and strings, which the garbage collector does not track.

    Thousands of per-call plans are kept for repeat requests; as objects they would all be
    walked by every full collection, which holds the GIL while every request waits.
    """
    return plan.packed


def unpack_plan(packed: tuple) -> Plan:
    steps, owner_known, team, notes = packed
    return Plan(tuple(Step(n, why) for n, why in steps), owner_known, team, notes)


def build_plan(settings: Settings, match: Match | None, line: str | None = None, last_agent: str | None = None) -> Plan:
    """Apply the rules above to what the connectors found (or did not)."""
    steps: list[Step] = []
    notes: list[str] = []
    team: str | None = None
    owner_known = False

    if match is not None:
        owner = match.owner
        rep = next((r for k in owner.keys() if (r := settings.rep_for(k)) is not None), None)
        if rep is not None:
            steps += [Step(n, "owner") for n in rep.phones]
            team = rep.team or _known_team(settings, match.team or owner.team)
            owner_known = True
        else:
            phone = parse_config_number(owner.phone, settings.default_region) if owner.phone else None
            if phone:
                steps.append(Step(phone, "owner"))
                owner_known = True
                notes.append("owner has no reps entry; rang the phone the CRM reported")
            else:
                notes.append("owner has no reps entry and no phone in the CRM")
            team = _known_team(settings, match.team or owner.team)
            if (match.team or owner.team) and team is None:
                notes.append(f"CRM team {match.team or owner.team!r} is not under 'teams'")
        if team is not None:
            steps += [Step(n, f"team:{team}") for n in settings.teams.get(team, ())]

    if not owner_known and last_agent is not None:
        steps.append(Step(last_agent, "last-agent"))
        rep = settings.rep_by_phone(last_agent)
        if team is None and rep is not None and rep.team is not None:
            team = rep.team
            steps += [Step(n, f"team:{team}") for n in settings.teams.get(team, ())]

    if not owner_known and team is None and line is not None:
        line_team = settings.lines.get(line)
        if line_team is not None:
            team = line_team
            steps += [Step(n, f"line-team:{line_team}") for n in settings.teams.get(line_team, ())]

    steps += [Step(n, "fallback") for n in settings.fallback]
    if not steps:
        # Rule 3: while config holds any number, ring someone rather than no one.
        steps += [Step(n, f"last-resort:{t}") for t, nums in settings.teams.items() for n in nums]
        steps += [Step(n, "last-resort") for r in settings.reps for n in r.phones]
    return Plan(tuple(_unique(steps)[: settings.max_numbers]), owner_known, team, tuple(notes))


def _known_team(settings: Settings, name: str | None) -> str | None:
    if not name:
        return None
    if name in settings.teams:
        return name
    lowered = {t.lower(): t for t in settings.teams}
    return lowered.get(name.lower())


def _unique(steps: list[Step]) -> list[Step]:
    seen: set[str] = set()
    out: list[Step] = []
    for s in steps:
        if s.number not in seen:
            seen.add(s.number)
            out.append(s)
    return out
