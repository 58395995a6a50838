"""The connector contract: one class, one required method.

A connector finds who owns a customer in one store (a CRM, a CSV, a team's own API)::

    class MyCrm(Connector):
        type_name = "mycrm"
        config_schema = (Field("url", str, required=True), Field("api_key", str, required=True, secret=True))

        def lookup(self, query, *, deadline):
            data = self.http.get_json(self.options["url"], params={"phone": query.value}, deadline=deadline)
            return None if not data else Match(owner=Owner(email=data["owner_email"]))

The rules of `lookup`:

- **One attempt.** The framework owns retries (in the shared HTTP layer), caching, the circuit
  breaker and the time budget. Never loop, never sleep.
- **None means not found.** A found customer is a `Match` with at least one owner field set.
- **Raise only `dialwhom.routing.errors`.** The shared HTTP layer (`self.http`) already translates
  transport failures; translate your own parsing failures into `BadResponse`.
- **Respect the deadline.** Pass `deadline` to every `self.http` call; check
  `deadline.expired` between steps when you make several calls.
- **Be thread-safe.** Lookups for different callers run concurrently on one instance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from dialwhom.integrations.http import HttpClient
from dialwhom.routing.schema import Field, mask_options
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Query

__all__ = ["Connector", "ConnectorContext"]


def _nothing() -> None:
    """The default `data_changed` hook: nothing is cached."""


@dataclass(frozen=True)
class ConnectorContext:
    """What the framework hands a connector besides its own options."""

    id: str
    region: str = "IN"
    timeout_s: float = 1.5
    retries: int = 1
    base_dir: Path = field(default_factory=Path.cwd)
    #: a `redis.Redis` client when `shared_state` is configured (rate limits, tokens shared
    #: by every instance), else None; keys go under `key_prefix`
    redis: Any = None
    key_prefix: str = "dialwhom:"
    #: call after the store's data changed under us (a file re-read): the framework drops
    #: this connector's cached answers
    data_changed: Callable[[], None] = _nothing

    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


class Connector:
    """Base class of every connector; subclasses set `type_name`, `config_schema`, `lookup`."""

    #: the ``type`` used in config and the entry-point name
    type_name: ClassVar[str] = ""
    #: the connector's own config keys (beyond id, type, timeout_ms, retries, enabled, max_in_flight)
    config_schema: ClassVar[tuple[Field, ...]] = ()
    #: kinds of query this connector can answer ("phone", "account")
    supports: ClassVar[tuple[str, ...]] = ("phone", "account")

    def __init__(self, options: Mapping[str, Any], context: ConnectorContext):
        """`options` are already validated against `config_schema` (defaults filled,
        secrets wrapped in `Secret`). Raise `ConfigError` for what the schema cannot say."""
        self.options = dict(options)
        self.context = context
        self.id = context.id
        self.log = logging.getLogger(f"dialwhom.connector.{context.id}")
        self._http: HttpClient | None = None

    @property
    def http(self) -> HttpClient:
        """This connector's pooled HTTP client (built on first use)."""
        if self._http is None:
            self._http = self.make_http()
        return self._http

    def make_http(self) -> HttpClient:
        """Override to pass a token provider, default headers or a status classifier."""
        return HttpClient(self.id, timeout_s=self.context.timeout_s, retries=self.context.retries)

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        """Who owns the customer `query` names; None if the store does not know them."""
        raise NotImplementedError

    def check(self, *, deadline: Deadline) -> str:
        """Prove the connector can reach its store (auth included); return a short note.

        Raise a connector error when the check fails. Start the note with ``"warn: "`` when
        it ran only in part or found a gap (a field it cannot read): `dialwhom check` prints
        it as a warning. The default says nothing was checked; connectors override it.
        """
        return "no connectivity check for this connector type"

    @property
    def rate_limit_remaining(self) -> float | None:
        """Requests left as the store last reported (for metrics); None if unknown."""
        return None if self._http is None else self._http.limit_remaining

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r} options={mask_options(self.options)!r}>"
