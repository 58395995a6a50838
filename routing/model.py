"""Small value types passed between the request, the connectors and the dial plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Which request value identified the customer.
KeySource = Literal["custom_field", "digits", "caller"]


@dataclass(frozen=True, slots=True)
class Query:
    """What a connector is asked to find.

    `kind` is ``"phone"`` when `value` is an E.164 number, ``"account"`` when it is an account
    id or number (from CustomField or keyed digits). `source` says which request value it came
    from. `phone` is the E.164 number when there is one, else None.
    """

    kind: Literal["phone", "account"]
    value: str
    source: KeySource = "caller"

    @property
    def phone(self) -> str | None:
        return self.value if self.kind == "phone" else None

    def cache_key(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns the customer in the CRM. Any field may be missing."""

    id: str | None = None
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    #: the owner's team as the CRM reports it, when the connector knows it
    team: str | None = None
    #: False when the CRM says this user is deactivated (left, archived); None when not known.
    #: The plan treats an inactive owner as unavailable and says so in the trace.
    active: bool | None = None

    def keys(self) -> list[str]:
        """Identities to match against `reps[].owner` (`Settings.rep_for` ignores case)."""
        return [k for k in (self.id, self.email) if k]


@dataclass(frozen=True, slots=True)
class Record:
    """The CRM record that matched (for the trace)."""

    type: str | None = None
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A connector's answer: the owner of the customer, and why."""

    owner: Owner
    team: str | None = None
    record: Record | None = None
    #: free notes for the decision trace (tie-breaks, owner source, ...)
    notes: tuple[str, ...] = field(default=())
