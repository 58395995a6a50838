"""Example CRM connector. API reference: this package's README.md, "The Example CRM API".

``GET {base_url}/v1/contacts?phone=<E.164>`` with header ``X-Api-Key`` answers
``{"contacts": [{"id", "phone", "owner_email", "updated_at", "name"?}]}``. The API matches
numbers loosely, so every contact is re-checked here; when several share the caller's number
the most recently updated wins (`pick_record`) and the trace says so.
"""

from __future__ import annotations

from typing import Any

from dialwhom.sdk import (
    BadResponse,
    Candidate,
    ConfigError,
    Connector,
    Deadline,
    Field,
    HttpClient,
    Match,
    Owner,
    Query,
    Record,
    pick_record,
    same_number,
)

#: asked for by `check`: a valid-looking number that belongs to nobody
CHECK_NUMBER = "+15550000000"


class ExampleCrmConnector(Connector):
    """Caller -> Example CRM contact -> the contact owner's email."""

    type_name = "examplecrm"
    supports = ("phone",)
    config_schema = (
        Field("base_url", str, required=True, help="API root, e.g. https://crm.example.com"),
        Field("api_key", str, required=True, secret=True, help="API key, sent as X-Api-Key"),
    )

    def __init__(self, options, context):
        super().__init__(options, context)
        base = self.options["base_url"].strip().rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ConfigError("base_url", f"'{base}' must start with https:// (or http:// for a local server)")
        self.base_url = base
        self.contacts_url = f"{base}/v1/contacts"

    def make_http(self) -> HttpClient:
        # Default headers go on every request; the key stays out of repr and logs because
        # options["api_key"] is a Secret and HttpClient never logs headers.
        return HttpClient(
            self.id,
            timeout_s=self.context.timeout_s,
            retries=self.context.retries,
            headers={"X-Api-Key": str(self.options["api_key"])},
        )

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        data = self.http.get_json(self.contacts_url, params={"phone": query.phone}, deadline=deadline)
        if data is None:  # 404 or 204: the API does not know the number
            return None
        contacts = data.get("contacts") if isinstance(data, dict) else None
        if not isinstance(contacts, list):
            raise BadResponse(f"{self.id}: expected {{\"contacts\": [...]}} from {self.contacts_url}", connector=self.id)
        candidates = []
        for contact in contacts:
            if not isinstance(contact, dict) or _text(contact.get("id")) is None:
                raise BadResponse(f"{self.id}: a contact without an id in the contacts answer", connector=self.id)
            if same_number(_text(contact.get("phone")), query.phone, self.context.region):
                candidates.append(Candidate("contact", _text(contact["id"]), _text(contact.get("updated_at")) or "", contact))
        winner, note = pick_record(candidates, ["contact"])
        if winner is None:
            return None
        email = _text(winner.data.get("owner_email"))
        if email is None:
            return None  # a contact nobody owns: routing falls through to the line's team
        if "@" not in email:
            raise BadResponse(f"{self.id}: contact {winner.record_id} has an owner_email that is not an email", connector=self.id)
        return Match(
            owner=Owner(email=email),
            record=Record("contact", winner.record_id, _text(winner.data.get("name"))),
            notes=tuple(n for n in (note, f"owner of examplecrm contact {winner.record_id}") if n),
        )

    def check(self, *, deadline: Deadline) -> str:
        """`dialwhom check`: one search for a number nobody has proves the key and the URL."""
        resp = self.http.request("GET", self.contacts_url, params={"phone": CHECK_NUMBER}, deadline=deadline, retry=False)
        return f"API key accepted by {self.base_url} (HTTP {resp.status})"


def _text(value: Any) -> str | None:
    """A stripped, non-empty string from a JSON scalar, else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None
