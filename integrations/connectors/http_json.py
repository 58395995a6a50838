"""The ``http`` connector: a team's own JSON endpoint (README, "Connectors").

``GET <url>`` with ``{phone}``, ``{key}`` and ``{kind}`` substituted (URL-encoded) answers 200
with ``{"owner": {"id", "email", "name", "phone"}, "team": ..., "record": {...}}``; 404 or
``{"owner": null}`` means not found.
"""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

from dialwhom.sdk import (
    BadResponse,
    ConfigError,
    Connector,
    ConnectorContext,
    Deadline,
    Field,
    HttpClient,
    Match,
    Owner,
    Query,
    Record,
)

_PLACEHOLDERS = {"phone", "key", "kind"}


class HttpJsonConnector(Connector):
    """Owners from a JSON endpoint the team runs itself."""

    type_name = "http"
    config_schema = (
        Field("url", str, required=True, help="URL template with {phone}, {key} and/or {kind}"),
        Field("headers", dict, default=None, help="extra request headers"),
        Field("bearer_token", str, secret=True, help="sent as 'Authorization: Bearer …'"),
    )

    def __init__(self, options, context: ConnectorContext):
        super().__init__(options, context)
        url = self.options["url"]
        if not url.startswith(("http://", "https://")):
            raise ConfigError("url", "must start with http:// or https://")
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(url) if f is not None}
        except ValueError as exc:
            raise ConfigError("url", f"bad placeholder syntax: {exc}") from None
        unknown = names - _PLACEHOLDERS
        if unknown:
            raise ConfigError("url", f"unknown placeholder {{{sorted(unknown)[0]}}}; use {{phone}}, {{key}} or {{kind}}")
        if not names:
            raise ConfigError("url", "needs a {phone} or {key} placeholder so the endpoint knows whom we ask about")
        self.supports = ("phone", "account") if "key" in names else ("phone",)

    def make_http(self) -> HttpClient:
        headers = {str(k): str(v) for k, v in (self.options.get("headers") or {}).items()}
        if self.options.get("bearer_token"):
            headers["Authorization"] = f"Bearer {self.options['bearer_token']}"
        return HttpClient(self.id, timeout_s=self.context.timeout_s, retries=self.context.retries, headers=headers)

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        url = self.options["url"].format(
            phone=quote(query.phone or "", safe=""),
            key=quote(query.value, safe=""),
            kind=query.kind,
        )
        data = self.http.get_json(url, deadline=deadline)
        if data is None:
            return None
        return parse_owner_document(data, self.id)


def parse_owner_document(data: Any, connector_id: str) -> Match | None:
    """The remote JSON as a Match; BadResponse when it has the wrong shape."""
    if not isinstance(data, dict):
        raise BadResponse(f"{connector_id}: expected a JSON object, got {type(data).__name__}")
    owner = data.get("owner")
    if owner is None:
        return None
    if not isinstance(owner, dict):
        raise BadResponse(f"{connector_id}: 'owner' must be an object or null")
    fields = {k: _text(owner.get(k)) for k in ("id", "email", "name", "phone", "team")}
    if not any(fields[k] for k in ("id", "email", "phone")):
        raise BadResponse(f"{connector_id}: 'owner' has none of id, email or phone")
    record = data.get("record") if isinstance(data.get("record"), dict) else {}
    return Match(
        owner=Owner(**fields),
        team=_text(data.get("team")),
        record=Record(_text(record.get("type")), _text(record.get("id")), _text(record.get("name"))) if record else None,
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None
