"""The ``directory`` connector: a CSV file of accounts (README, "Connectors").

Columns ``account_id,account_name,phones,owner``; ``phones`` holds numbers in any common format
separated by ``;``; ``owner`` is a rep key from ``reps``. The file is read at startup (errors
name the line) and re-read when it changes on disk, so an admin can edit it without a restart.
"""

from __future__ import annotations

import csv
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from dialwhom.sdk import (
    ConfigError,
    Connector,
    ConnectorContext,
    ConnectorUnavailable,
    Deadline,
    Field,
    Match,
    Owner,
    Query,
    Record,
    to_e164,
)

REQUIRED_COLUMNS = ("account_id", "account_name", "phones", "owner")


@dataclass(frozen=True)
class _Index:
    by_phone: dict[str, Match]
    by_account: dict[str, Match]
    mtime: float
    rows: int


class DirectoryConnector(Connector):
    """Owners from a CSV file of accounts."""

    type_name = "directory"
    config_schema = (
        Field("path", str, required=True, help="the CSV file, relative to the config file's folder"),
        Field("reload", bool, default=True, help="re-read the file when it changes"),
    )

    def __init__(self, options, context: ConnectorContext):
        super().__init__(options, context)
        self.path: Path = context.resolve_path(self.options["path"])
        self._lock = threading.Lock()
        try:
            self._index = self._load()
        except FileNotFoundError:
            raise ConfigError("path", f"file not found: {self.path}") from None
        except ValueError as exc:
            raise ConfigError("path", str(exc)) from None

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        index = self._current()
        if query.kind == "phone":
            return index.by_phone.get(query.value)
        return index.by_account.get(query.value.strip().lower())

    def check(self, *, deadline: Deadline) -> str:
        index = self._current()
        return f"{index.rows} accounts, {len(index.by_phone)} phone numbers from {self.path.name}"

    def data_version(self) -> float:
        """The file's modification time as last read (re-read first if it changed): the
        framework drops this connector's cached answers when it moves."""
        return self._current().mtime

    def _current(self) -> _Index:
        if not self.options["reload"]:
            return self._index
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            if self._index is not None:
                return self._index  # keep serving what we had; the file may be mid-replace
            raise ConnectorUnavailable(f"{self.id}: cannot read {self.path}: {exc}", connector=self.id) from None
        if mtime != self._index.mtime:
            with self._lock:
                if mtime != self._index.mtime:
                    try:
                        self._index = self._load()
                        self.log.info("reloaded %s (%d accounts)", self.path, self._index.rows)
                    except (OSError, ValueError) as exc:
                        self.log.error("kept the previous %s: the new file is unusable: %s", self.path.name, exc)
                        self._index = _Index(self._index.by_phone, self._index.by_account, mtime, self._index.rows)
        return self._index

    def _load(self) -> _Index:
        mtime = os.stat(self.path).st_mtime
        by_phone: dict[str, Match] = {}
        by_account: dict[str, Match] = {}
        rows = 0
        with open(self.path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{self.path.name}: missing column(s) {', '.join(missing)}; the header must be {','.join(REQUIRED_COLUMNS)}")
            for row in reader:
                line_no = reader.line_num  # the file's line: DictReader skips blank lines
                account_id = (row.get("account_id") or "").strip()
                owner = (row.get("owner") or "").strip()
                if not account_id and not row.get("phones"):
                    continue  # blank line
                if not owner:
                    raise ValueError(f"{self.path.name} line {line_no}: 'owner' is empty")
                match = Match(
                    owner=Owner(id=owner, email=owner if "@" in owner else None),
                    record=Record("account", account_id or None, (row.get("account_name") or "").strip() or None),
                    notes=(f"directory row {line_no}",),
                )
                rows += 1
                if account_id:
                    by_account.setdefault(account_id.lower(), match)
                for raw in (row.get("phones") or "").split(";"):
                    if not raw.strip():
                        continue
                    e164 = to_e164(raw, self.context.region)
                    if e164 is None:
                        raise ValueError(f"{self.path.name} line {line_no}: '{raw.strip()[:4]}…' in phones is not a phone number")
                    by_phone.setdefault(e164, match)  # first row wins, as in the file
                    by_account.setdefault(e164, match)
        return _Index(by_phone, by_account, mtime, rows)
