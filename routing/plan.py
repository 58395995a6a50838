"""The dial plan: whom Exotel rings, in order.

Rules, in order of precedence:

1. A known customer: the owner's number(s) (from ``reps``, else the phone the CRM reported),
   then the owner's team backups (team from ``reps``, else from the CRM), then ``fallback``.
2. An unknown customer (or an owner we cannot ring): the agent who last talked to this caller
   (learnt from the Passthru applet) and their team, else the team of the line that was
   called (``lines``); then ``fallback``.
3. Always unique, E.164 (or ``sip:``), capped at ``max_numbers``, and never empty while the
   config holds any number.

`candidates` applies these rules; `arrange` then keeps whom can take the call at a `Moment`
(hours, holidays, leave with delegates, inactive owners, busy agents moved last, strict teams,
backup order) and says why each agent was left out or moved. `build_plan` is both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from typing import TYPE_CHECKING

from dialwhom.routing.availability import team_policy
from dialwhom.routing.config import Settings
from dialwhom.routing.model import Match
from dialwhom.routing.phones import parse_config_number
from dialwhom.routing.redact import mask

if TYPE_CHECKING:
    from dialwhom.routing.ledger import Moment


@dataclass(frozen=True)
class Step:
    number: str
    why: str  # "owner", "delegate", "last-agent", "team:north", "line-team:south", "fallback"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    owner_known: bool = False
    team: str | None = None
    notes: tuple[str, ...] = field(default=())
    #: who was left out or moved, and why ("owner away until 2027-01-02; delegate ravi")
    skips: tuple[str, ...] = field(default=())
    #: the owner in this plan: "first" (rung first), a reason they were not ("away", "busy", ...), or ""
    owner: str = ""
    #: the CRM says the owner is deactivated (set by `candidates`, applied by `arrange`)
    owner_inactive: bool = False

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
        return (tuple((s.number, s.why) for s in self.steps), self.owner_known, self.team, tuple(self.notes), self.skips, self.owner)


def pack_plan(plan: Plan) -> tuple:
    """The plan as plain tuples and strings, which the garbage collector does not track.

    Thousands of per-call plans are kept for repeat requests; as objects they would all be
    walked by every full collection, which holds the GIL while every request waits.
    """
    return plan.packed


def unpack_plan(packed: tuple) -> Plan:
    steps, owner_known, team, notes, skips, owner = packed
    return Plan(tuple(Step(n, why) for n, why in steps), owner_known, team, notes, skips, owner)


def build_plan(settings: Settings, match: Match | None, line: str | None = None, last_agent: str | None = None, moment: Moment | None = None) -> Plan:
    """Apply the rules above to what the connectors found (or did not), at `moment` if given."""
    return arrange(settings, candidates(settings, match, line, last_agent), moment)


def candidates(settings: Settings, match: Match | None, line: str | None = None, last_agent: str | None = None) -> Plan:
    """Everyone the rules would ring, in order, uncapped, before availability (see `arrange`)."""
    steps: list[Step] = []
    notes: list[str] = []
    team: str | None = None
    owner_known = False
    inactive = False

    if match is not None:
        owner = match.owner
        inactive = owner.active is False
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
    return Plan(tuple(_unique(steps)), owner_known, team, tuple(notes), owner_inactive=inactive)


def arrange(settings: Settings, base: Plan, moment: Moment | None = None) -> Plan:
    """Whom to ring at `moment`, from `candidates`: the available first, the busy after them.

    The owner (or last agent) leads if they can take the call; one on leave with a delegate
    gives their place to the delegate; out of hours, on a holiday, away or inactive: left out.
    Then, unless the team is strict, the team's available backups in the team's `order`; then
    every busy agent (busy ends in minutes); then fallback. Capped at `max_numbers`.
    """
    team = base.team
    sticky = [s for s in base.steps if s.why in ("owner", "last-agent")]
    backups = [s for s in base.steps if s.why.startswith(("team:", "line-team:"))]
    rest = [s for s in base.steps if s.why not in ("owner", "last-agent") and not s.why.startswith(("team:", "line-team:"))]
    ready: list[Step] = []
    busy: list[Step] = []
    skips: list[str] = []
    owner = ""  # the first reason the owner could not lead

    def place(step: Step, label: str, into: list[Step] = ready) -> None:
        """Into `into` if free, else behind every available agent (busy ends in minutes)."""
        since = moment.busy_since(step.number) if moment is not None else None
        if since is None:
            into.append(step)
        else:
            busy.append(step)
            skips.append(f"{label} busy since {moment.clock_time(since)}; moved behind the available agents")

    for step in sticky:
        label = "owner" if step.why == "owner" else f"last agent {mask(step.number)}"
        if step.why == "owner" and base.owner_inactive:
            skips.append("owner inactive in the CRM")
            owner = owner or "inactive"
            continue
        why_not = moment.unavailable(step.number, team) if moment is not None else None
        if why_not is None:
            if step.why == "owner" and moment is not None and moment.busy_since(step.number) is not None:
                owner = owner or "busy"
            place(step, label)
            continue
        if step.why == "owner":
            owner = owner or why_not.kind
        rep = settings.rep_for(why_not.delegate) if why_not.delegate else None
        if rep is None:
            skips.append(f"{label} {why_not.text}")
            continue
        who = rep.name or why_not.delegate.split("@")[0]
        skips.append(f"{label} {why_not.text}; delegate {who}")
        for number in rep.phones:
            d_not = moment.unavailable(number, rep.team or team)
            if d_not is None:
                place(Step(number, "delegate"), f"delegate {who}")
            else:
                skips.append(f"delegate {who} {d_not.text}")

    if backups and sticky and team_policy(settings.teams.get(team), "stickiness") == "strict":
        skips.append(f"team {team} is strict: backups not rung")
        backups = []
    team_ready: list[Step] = []
    for step in backups:
        why_not = moment.unavailable(step.number, team) if moment is not None else None
        if why_not is not None:
            skips.append(f"{mask(step.number)} {why_not.text}")
            continue
        place(step, mask(step.number), team_ready)
    if moment is not None and len(team_ready) > 1 and team is not None:
        order = team_policy(settings.teams.get(team), "order")
        if order == "round-robin":
            k = moment.turn(team) % len(team_ready)
            team_ready = team_ready[k:] + team_ready[:k]
        elif order == "longest-idle":
            team_ready.sort(key=lambda s: moment.idle_since(s.number))
    if base.owner_known:
        owner = "first" if ready and ready[0].why == "owner" else owner or "not-rung"
    steps = _unique(ready + team_ready + busy + rest)
    notes = base.notes
    if not steps and base.steps:
        # Rule 3 still holds: nobody can take the call now, and no fallback: ring them anyway.
        steps = list(base.steps)
        notes += ("nobody in the plan can take the call now and there is no fallback; ringing them anyway",)
    # an owner with two phones is skipped twice for one reason: say it once
    return Plan(tuple(steps[: settings.max_numbers]), base.owner_known, team, notes, tuple(dict.fromkeys(skips)), owner if base.owner_known else "")


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
