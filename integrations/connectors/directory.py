"""The ``directory`` connector: a CSV file of accounts (README, "Connectors").

Columns ``account_id,account_name,phones,owner``; ``phones`` holds numbers in any common format
separated by ``;``; ``owner`` is a rep key from ``reps``. The file is read completely and
validated at startup (errors name the line). With ``reload`` on, a background thread watches it:
a changed file is read once it has stopped changing, validated whole, and only then swapped in
for the old index, and the connector's cached answers are dropped. A broken file leaves the old
index serving and the log says why. Edit it by writing a new file and renaming it over the old
one (docs/crm/directory.md).

The index is compact so a million rows fit in well under 200 MB: sorted 64-bit arrays of numbers
and account-id hashes pointing at row numbers, the rows' text in one byte string, and each owner
stored once.
"""

from __future__ import annotations

import csv
import ctypes
import os
import re
import threading
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import phonenumbers

from dialwhom.sdk import (
    ConfigError,
    Connector,
    ConnectorContext,
    Deadline,
    Field,
    Match,
    Owner,
    Query,
    Record,
    to_e164,
)

REQUIRED_COLUMNS = ("account_id", "account_name", "phones", "owner")
#: how often the watcher looks at the file; a change is loaded once two looks agree
POLL_S = 1.0
#: row numbers share a 64-bit sort key with the number or hash they index
_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
_SEP = "\x1f"  # between account_id and account_name in the row text (a CSV cell cannot hold it unquoted, and we strip it)
_PLUS_DIGITS = re.compile(r"\+[1-9][0-9]*")


class _Changed(ValueError):
    """The file changed while it was being read: read it again once it is still."""


@dataclass(frozen=True)
class _Stat:
    """What tells one version of the file from another."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> "_Stat":
        st = os.stat(path)
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class _Index:
    """One version of the file, read-only once built: numbers and account ids to rows."""

    __slots__ = ("phones", "phone_rows", "hashes", "hash_rows", "text", "offsets", "owner_of", "line_of", "owners", "stat", "rows")

    def __init__(self, stat: _Stat):
        self.stat = stat
        self.phones = array("q")      # E.164 digits as integers, sorted
        self.phone_rows = array("i")  # the row each of them belongs to (first row in the file wins)
        self.hashes = array("q")      # hash of each lower-cased account_id, sorted
        self.hash_rows = array("i")
        self.text = b""               # every row's account_id, _SEP, account_name, UTF-8, back to back
        self.offsets = array("q", [0])
        self.owner_of = array("i")    # row -> index into owners
        self.line_of = array("i")     # row -> line in the file (for the trace)
        self.owners: list[Owner] = []
        self.rows = 0

    def match(self, row: int) -> Match:
        account_id, _, name = self.text[self.offsets[row]:self.offsets[row + 1]].decode("utf-8").partition(_SEP)
        return Match(
            owner=self.owners[self.owner_of[row]],
            record=Record("account", account_id or None, name or None),
            notes=(f"directory row {self.line_of[row]}",),
        )

    def by_phone(self, e164: str) -> Match | None:
        if not _PLUS_DIGITS.fullmatch(e164):
            return None
        key = int(e164[1:])
        i = bisect_left(self.phones, key)
        return self.match(self.phone_rows[i]) if i < len(self.phones) and self.phones[i] == key else None

    def by_account(self, value: str) -> Match | None:
        wanted = value.strip().lower()
        key = hash(wanted)
        i = bisect_left(self.hashes, key)
        while i < len(self.hashes) and self.hashes[i] == key:  # equal hashes: check the id itself
            match = self.match(self.hash_rows[i])
            if match.record.id and match.record.id.lower() == wanted:
                return match
            i += 1
        return self.by_phone(wanted)  # a CustomField that holds a number written as E.164


class _Builder:
    """Collects rows while the file is read; `finish` sorts them into an `_Index`."""

    def __init__(self, stat: _Stat):
        self.index = _Index(stat)
        self.phone_keys: list[int] = []  # (number << _ROW_BITS) | row: one sort orders by number, then row
        self.hash_keys: list[int] = []
        self.text = bytearray()
        self.owner_ids: dict[str, int] = {}

    def add(self, account_id: str, name: str, owner: str, phones: list[str], line: int) -> None:
        ix = self.index
        row = ix.rows
        if row > _ROW_MASK >> 1:
            raise ValueError(f"line {line}: more than {_ROW_MASK >> 1} rows; use the sql connector with SQLite for a directory this big")
        ix.rows += 1
        self.text += (account_id + _SEP + name).encode("utf-8")
        ix.offsets.append(len(self.text))
        owner_no = self.owner_ids.get(owner)
        if owner_no is None:
            owner_no = self.owner_ids[owner] = len(ix.owners)
            ix.owners.append(Owner(id=owner, email=owner if "@" in owner else None))
        ix.owner_of.append(owner_no)
        ix.line_of.append(line)
        if account_id:
            # hash() of a str is 64-bit and fixed for the life of the process: enough for an in-memory index
            self.hash_keys.append(((hash(account_id.lower()) + (1 << 63)) << _ROW_BITS) | row)
        for e164 in phones:
            self.phone_keys.append((int(e164[1:]) << _ROW_BITS) | row)

    def finish(self) -> _Index:
        ix = self.index
        ix.text = bytes(self.text)
        ix.phones, ix.phone_rows = _sorted_first(self.phone_keys, 0)
        ix.hashes, ix.hash_rows = _sorted_first(self.hash_keys, 1 << 63, unique=False)
        self.phone_keys = self.hash_keys = []
        return ix


def _sorted_first(keys: list[int], offset: int, *, unique: bool = True) -> tuple[array, array]:
    """Split packed keys into sorted value and row arrays; with `unique`, the first row per value only."""
    keys.sort()
    values, rows = array("q"), array("i")
    last = None
    for packed in keys:
        value = (packed >> _ROW_BITS) - offset
        if unique and value == last:
            continue  # a number listed again later in the file: the first row keeps it
        last = value
        values.append(value)
        rows.append(packed & _ROW_MASK)
    return values, rows


# -- reading numbers fast ---------------------------------------------------------------------------
#
# phonenumbers.parse costs ~15-20 us, most of a million-row start. The forms a directory holds
# almost always are digits with spaces or hyphens, with a leading '+' or in the region's own
# national form; for those the result is worked out from the same metadata phonenumbers uses, and
# every case with a rule we do not repeat here (a national prefix with carrier codes or a
# transform, an international dialling prefix, a leading zero, a length that is not possible) goes
# to `to_e164` itself. tests/integrations/test_directory.py checks both agree, across regions.

_SIMPLE = re.compile(r"\+?[0-9][0-9 \-]*")


def _fast_e164(text: str, region: str) -> str | None:
    """Exactly `to_e164(text, region)` for a stripped cell, faster for the usual forms."""
    if len(text) > 40 or not _SIMPLE.fullmatch(text):
        return to_e164(text, region)
    digits = text.replace(" ", "").replace("-", "")
    if text[0] == "+":
        country = _country(digits[1:4]) if 6 <= len(digits) - 1 <= 17 and digits[1] != "0" else None
        if country is None:
            return to_e164(text, region)
        n, cc, prefix, pattern, lengths = country
        national = digits[1 + n:]
    else:
        country = _region(region) if len(digits) >= 6 else None
        if country is None:
            return to_e164(text, region)
        idd, cc, prefix, pattern, lengths = country
        if idd.match(digits) or digits.startswith(cc):
            return to_e164(text, region)  # dialled from abroad, or the country code without '+'
        national = digits
    if prefix is not None and (m := prefix.match(national)):
        if text[0] == "+" or m.lastindex is not None or (pattern.fullmatch(national) and not pattern.fullmatch(national[m.end():])):
            return to_e164(text, region)  # a prefix after '+', carrier codes, or one phonenumbers would keep
        national = national[m.end():]
    if national[:1] == "0" or len(national) not in lengths:
        return to_e164(text, region)
    return "+" + cc + national


@lru_cache(maxsize=1024)
def _country(first3: str):
    """(length of the country code, the code, national prefix, number pattern, possible lengths) for an E.164 start."""
    for n in (1, 2, 3):
        cc = int(first3[:n])
        if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            info = _metadata(phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(cc, phonenumbers.region_code_for_country_code(cc)))
            return None if info is None else (n, str(cc), *info)
    return None


@lru_cache(maxsize=256)
def _region(region: str):
    """(international dialling prefix, country code, national prefix, number pattern, possible lengths) of a region."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    info = _metadata(meta)
    if info is None or not meta.international_prefix:
        return None
    return (re.compile(meta.international_prefix), str(meta.country_code), *info)


def _metadata(meta):
    if meta is None or meta.national_prefix_transform_rule or meta.general_desc is None or not meta.general_desc.national_number_pattern:
        return None
    prefix = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
    # Possibility depends on the length alone: ask phonenumbers once per length, as to_e164 does.
    possible = phonenumbers.ValidationResult.IS_POSSIBLE
    lengths = frozenset(n for n in range(2, 18) if phonenumbers.is_possible_number_with_reason(
        phonenumbers.PhoneNumber(country_code=meta.country_code, national_number=int("5" * n))) == possible)
    return prefix, re.compile(meta.general_desc.national_number_pattern), lengths


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
        try:
            self._index = self._load_still()
        except FileNotFoundError:
            raise ConfigError("path", f"file not found: {self.path}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError("path", str(exc)) from None
        _give_back_memory()
        self._seen: _Stat | None = self._index.stat  # the last stat the watcher saw
        self._refused: _Stat | None = None           # the broken version already reported
        self._refreshing = threading.Lock()  # one load at a time (the watcher, or a test calling refresh)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if self.options["reload"]:
            self._watcher = threading.Thread(target=self._watch, name=f"dialwhom-directory-{self.id}", daemon=True)
            self._watcher.start()

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        # The answer path only reads the current index: loading happens on the watcher thread.
        index = self._index
        return index.by_phone(query.value) if query.kind == "phone" else index.by_account(query.value)

    def check(self, *, deadline: Deadline) -> str:
        index = self._index
        return f"{index.rows} accounts, {len(index.phones)} phone numbers from {self.path.name}"

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(POLL_S + 1)
        super().close()

    # -- reloading ---------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """One look at the file: load it if it changed and has stayed unchanged since the last look.

        Returns True when a new index was swapped in. The watcher thread calls this every
        `POLL_S`; tests call it directly.
        """
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            stat = _Stat.of(self.path)
        except OSError:
            return False  # gone or mid-rename: keep serving what we have
        previous, self._seen = self._seen, stat
        if stat == self._index.stat or stat == self._refused or stat != previous:
            return False  # unchanged, already refused, or still being written
        try:
            index = self._load()
        except _Changed as exc:
            self.log.info("%s", exc)  # not refused: the next looks will see it change and settle
            return False
        except (OSError, ValueError) as exc:
            self._refused = stat
            self.log.error("kept the previous %s (%d accounts): the new file is unusable: %s", self.path.name, self._index.rows, exc)
            return False
        self._index = index  # one reference swap: a lookup sees the old index or the new one, whole
        del index
        _give_back_memory()
        self.log.info("reloaded %s (%d accounts)", self.path.name, self._index.rows)
        self.context.data_changed()
        return True

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any surprise; the old index keeps serving
                self.log.exception("watching %s failed", self.path.name)

    def _load_still(self, tries: int = 3) -> _Index:
        """`_load` at startup, trying again if the file is being written meanwhile."""
        for _ in range(tries - 1):
            try:
                return self._load()
            except _Changed:
                time.sleep(POLL_S)
        return self._load()

    def _load(self) -> _Index:
        """Read and validate the whole file; raise ValueError naming the line on any problem."""
        before = _Stat.of(self.path)
        builder = _Builder(before)
        name = self.path.name
        with open(self.path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = [h.strip() for h in next(reader, [])]
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if missing:
                    raise ValueError(f"{name}: missing column(s) {', '.join(missing)}; the header must be {','.join(REQUIRED_COLUMNS)}")
                col = tuple(header.index(c) for c in REQUIRED_COLUMNS)
                width = len(header)
                for cells in reader:
                    line = reader.line_num  # the file's line where this row ends
                    if len(cells) != width:
                        if not any(c.strip() for c in cells):
                            continue  # blank line
                        raise ValueError(f"{name} line {line}: {len(cells)} of {width} columns (a half-written or broken row)")
                    self._add_row(builder, cells, col, line)
            except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
                raise ValueError(f"{name} line {reader.line_num}: {exc}") from None
            except UnicodeDecodeError:  # decoded ahead of the reader, in blocks: find the line in the bytes
                raise ValueError(f"{name} line {_bad_utf8_line(self.path)}: not UTF-8 text (save the file as UTF-8 CSV)") from None
            read = fh.buffer.tell()  # bytes consumed: the whole file, as it was when read
        if _Stat.of(self.path) != before or read != before.size:
            raise _Changed(f"{name} changed while it was read; it is read again once it stops changing")
        return builder.finish()

    def _add_row(self, builder: _Builder, cells: list[str], col: tuple[int, ...], line: int) -> None:
        account_id, account_name, phones_cell, owner = (cells[i].strip() for i in col)
        if not account_id and not phones_cell:
            return  # a row of empty cells
        if not owner:
            raise ValueError(f"{self.path.name} line {line}: 'owner' is empty")
        phones = []
        for raw in phones_cell.split(";"):
            raw = raw.strip()
            if not raw:
                continue
            e164 = _fast_e164(raw, self.context.region)
            if e164 is None:
                raise ValueError(f"{self.path.name} line {line}: '{raw[:4]}…' in phones is not a phone number")
            phones.append(e164)
        builder.add(account_id.replace(_SEP, " "), account_name.replace(_SEP, " "), owner, phones, line)


def _bad_utf8_line(path: Path) -> int:
    """The line of the first byte in `path` that is not UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data.count(b"\n", 0, exc.start) + 1
    return 1


def _give_back_memory() -> None:
    """Hand the memory a load used and freed back to the system (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
