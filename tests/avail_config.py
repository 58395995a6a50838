"""A config with hours, holidays, leave and team policies, for the availability tests."""

from __future__ import annotations

import sample
from datetime import datetime
from zoneinfo import ZoneInfo

from dialwhom.routing.model import Match, Owner

IST = ZoneInfo("Asia/Kolkata")
ASHA, VIKRAM, NORTH3, RAVI = sample.ASHA, sample.VIKRAM, sample.NORTH3, "+919800000004"
OMAR, EAST2 = "+971500000001", "+919800000022"
NINA, NIGHT2 = "+919800000031", "+919800000032"
FALLBACK = sample.FALLBACK
LINE_NORTH = sample.LINE_NORTH


def config(**changes):
    """A fresh config mapping (tests change parts of it)."""
    base = {
        "timezone": "Asia/Kolkata",
        "schedules": {
            "office": {"mon-fri": "09:30-18:30", "sat": "10:00-14:00"},
            "night": {"mon-sun": "18:30-09:30"},
        },
        "holidays": ["2026-12-25"],
        "reps": [
            {"owner": "asha@example.com", "phone": ASHA, "team": "north",
             "away": [{"from": "2026-12-20", "to": "2027-01-02", "delegate": "ravi@example.com"}]},
            {"owner": "vikram@example.com", "phone": VIKRAM, "team": "north"},
            {"owner": "ravi@example.com", "name": "Ravi", "phone": RAVI, "team": "north"},
            {"owner": "omar@example.com", "phone": OMAR, "team": "east", "timezone": "Asia/Dubai"},
            {"owner": "nina@example.com", "phone": NINA, "team": "nightshift"},
        ],
        "teams": {
            "north": {"backup": [VIKRAM, NORTH3], "hours": "office"},
            "east": {"backup": [EAST2], "hours": "office"},
            "nightshift": {"backup": [NIGHT2], "hours": "night"},
        },
        "fallback": [FALLBACK],
        "lines": {LINE_NORTH: "north"},
        "connectors": [{"id": "fake", "type": "fake"}],
    }
    base.update(changes)
    return base


def ist(text: str) -> datetime:
    """'2026-12-01 10:41' in India time."""
    return datetime.fromisoformat(text).replace(tzinfo=IST)


class OwnerSource:
    """A connector that finds every caller, owned by `email` (changeable), counting calls."""

    id = "fake"
    supports = ("phone", "account")

    def __init__(self, email: str | None = "asha@example.com", active: bool | None = None):
        self.email, self.active = email, active
        self.calls = 0

    def lookup(self, query, *, deadline):
        self.calls += 1
        return Match(Owner(email=self.email, active=self.active)) if self.email else None
