"""A local fake of the Freshsales (Freshworks CRM) API for end-to-end tests: real HTTP on 127.0.0.1.

Serves under ``/crm/sales/api`` (the bundle root, as https://developers.freshworks.com/crm/api/
documents it), from an in-memory dataset, what the `freshsales` connector uses:

- ``GET /lookup?q=&f=&entities=contact,sales_account``: exact match of ``q`` on field ``f``'s
  stored text (no phone normalisation; ``cf_`` fields live under ``custom_field``); the answer
  nests each entity twice (``{"contacts": {"contacts": [...]}}``), as integrators' code reads it;
  a field the entity does not have is a 400;
- ``GET /selector/owners``: ``{"users": [{id, display_name, email, is_active, work_number, mobile_number}]}``;
- ``GET /contacts/{id}`` and ``GET /sales_accounts/{id}``.

The key must come as ``Authorization: Token token=<key>`` (else 401). Calls beyond ``per_minute``
in 60 s or ``per_hour`` in an hour, counted per account, are answered 429 (Freshsales documents
the status, not headers or a body; the body here is a guess, see docs/crm/freshsales.md).
``hide_owner_in_lookup`` leaves ``owner_id`` out of lookup hits (the shape is not documented) so
the connector's fallback read can be tested. Other paths answer an HTML 404 page. `inject` (from
`fake_crm.FakeCrmServer`) queues canned failures. Run ``python tests/integrations/fake_freshsales.py``.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from typing import Any, Iterable, Mapping

from fake_crm import FakeCrmServer, RecordedRequest, Response

__all__ = ["FakeFreshsales", "sample_data", "API_KEY", "ROOT"]

API_KEY = "sfg999666t673t7t82-fake"
ROOT = "/crm/sales/api/"
FIELDS = {"contact": {"mobile_number", "work_number", "email", "display_name"}, "sales_account": {"phone", "name", "website"}}
BLOCKS = {"contact": "contacts", "sales_account": "sales_accounts"}


def sample_data() -> dict[str, Any]:
    """Asha owns Meera (stored E.164) and an account; Ravi owns Kiran (stored national); Old Rep left."""
    return {
        "owners": [
            {"id": 31000148397, "display_name": "Asha Rao", "email": "asha@example.com", "is_active": True,
             "work_number": "+919800000001", "mobile_number": None},
            {"id": 31000148398, "display_name": "Ravi Kumar", "email": "ravi@example.com", "is_active": True,
             "work_number": None, "mobile_number": "+919800000011"},
            {"id": 31000148399, "display_name": "Old Rep", "email": "old.rep@example.com", "is_active": False,
             "work_number": "+919800000099", "mobile_number": None},
        ],
        "contacts": [
            {"id": 31016358306, "display_name": "Meera Shah", "mobile_number": "+919876543210", "work_number": None,
             "owner_id": 31000148397, "updated_at": "2025-05-10T20:48:27+05:30"},
            {"id": 31016358307, "display_name": "Kiran Das", "mobile_number": None, "work_number": "9988776655",
             "owner_id": 31000148398, "updated_at": "2025-04-01T10:00:00+05:30"},
            {"id": 31016358308, "display_name": "Dev Nair", "mobile_number": "919123456780", "work_number": None,
             "owner_id": 31000148399, "updated_at": "2025-03-01T10:00:00+05:30"},
        ],
        "sales_accounts": [
            {"id": 31000290001, "name": "Acme Traders", "phone": "+918040001000", "owner_id": 31000148398,
             "updated_at": "2025-02-01T10:00:00+05:30", "custom_field": {"cf_account_number": "ACC-1001"}},
        ],
    }


class FakeFreshsales(FakeCrmServer):
    """The fake server; `start()`/`stop()` or use it as a context manager."""

    thread_name = "fake-freshsales"

    def __init__(
        self,
        *,
        owners: Iterable[Mapping[str, Any]] = (),
        contacts: Iterable[Mapping[str, Any]] = (),
        sales_accounts: Iterable[Mapping[str, Any]] = (),
        api_key: str = API_KEY,
        per_minute: int = 400,
        per_hour: int = 1000,
        hide_owner_in_lookup: bool = False,
    ):
        super().__init__()
        self.owners = [dict(o) for o in owners]
        self.records = {"contact": [dict(c) for c in contacts], "sales_account": [dict(a) for a in sales_accounts]}
        self.api_key = api_key
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.hide_owner_in_lookup = hide_owner_in_lookup
        self._stamps: collections.deque[float] = collections.deque()
        self._stamps_lock = threading.Lock()

    def _listen(self, host: str, port: int) -> None:
        super()._listen(host, port)
        assert self._server is not None
        # A hang test's client is gone when the late answer is written: not worth a traceback.
        self._server.handle_error = lambda request, address: None

    # -- request handling ---------------------------------------------------------------------

    def _route(self, r: RecordedRequest) -> Response:
        if not r.path.startswith(ROOT) or r.method != "GET":
            return _not_found()
        if r.headers.get("Authorization") != f"Token token={self.api_key}":
            return 401, {"login": "failed", "message": "Incorrect or expired API key"}, {}
        if self._over_limit():
            return 429, {"errors": {"code": 429, "message": ["Too many requests"]}}, {}
        segs = r.path[len(ROOT):].strip("/").split("/")
        if segs == ["lookup"]:
            return self._lookup(r)
        if segs == ["selector", "owners"]:
            return 200, {"users": self.owners}, {}
        if len(segs) == 2 and segs[0] in ("contacts", "sales_accounts"):
            entity = "contact" if segs[0] == "contacts" else "sales_account"
            record = next((x for x in self.records[entity] if str(x["id"]) == segs[1]), None)
            if record is None:
                return 404, {"errors": {"code": 404, "message": ["Record not found"]}}, {}
            return 200, {entity: record}, {}
        return _not_found()

    def _over_limit(self) -> bool:
        now = time.monotonic()
        with self._stamps_lock:
            while self._stamps and now - self._stamps[0] >= 3600:
                self._stamps.popleft()
            last_minute = sum(1 for t in self._stamps if now - t < 60)
            if len(self._stamps) >= self.per_hour or last_minute >= self.per_minute:
                return True
            self._stamps.append(now)
            return False

    def _lookup(self, r: RecordedRequest) -> Response:
        q, field = r.arg("q"), r.arg("f")
        entities = [e for e in (r.arg("entities") or "").split(",") if e]
        if not q or not field or not entities or any(e not in FIELDS for e in entities):
            return 400, {"errors": {"code": 400, "message": ["q, f and entities (contact, sales_account, deal) are required"]}}, {}
        out: dict[str, Any] = {}
        for entity in entities:
            known = FIELDS[entity] | {k for rec in self.records[entity] for k in (rec.get("custom_field") or {})}
            if field not in known:
                return 400, {"errors": {"code": 400, "message": [f"Invalid field {field} for {entity}"]}}, {}
            hits = [self._shape(rec) for rec in self.records[entity] if _stored(rec, field) == q]
            out[BLOCKS[entity]] = {BLOCKS[entity]: hits}
        return 200, out, {}

    def _shape(self, record: Mapping[str, Any]) -> dict:
        out = dict(record)
        if self.hide_owner_in_lookup:
            out.pop("owner_id", None)
        return out


def _stored(record: Mapping[str, Any], field: str) -> Any:
    if field in record:
        return record[field]
    return (record.get("custom_field") or {}).get(field)


def _not_found() -> Response:
    return 404, "<!DOCTYPE html><html><head><title>The page you were looking for doesn't exist (404)</title></head><body></body></html>", {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeFreshsales(**sample_data()).start(args.port)
    print(f"fake Freshsales at {fake.url}/crm/sales  (api key {API_KEY})", flush=True)
    fake.serve_until_interrupted()


if __name__ == "__main__":
    main()
