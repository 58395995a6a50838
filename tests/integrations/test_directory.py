"""The ``directory`` connector: a CSV of accounts (README, "Connectors")."""

from __future__ import annotations

import sample
import logging
import os
import threading
import time
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings, strategies as st

from dialwhom.integrations.base import ConnectorContext
from dialwhom.integrations.connectors import directory as directory_mod
from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.integrations.registry import registry_from_classes
from dialwhom.routing.errors import ConfigError
from dialwhom.testing import build_connector
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Query
from dialwhom.routing.phones import to_e164

HEADER = "account_id,account_name,phones,owner\n"
CALLER = "+919876543210"


def write(path: Path, body: str, *, mtime: float | None = None) -> Path:
    path.write_bytes(body.encode("utf-8", "surrogateescape"))  # surrogateescape: tests can write bytes that are not UTF-8
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def csv_path(tmp_path) -> Path:
    return write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,098765 43210,asha@example.com\nB-7,Globex,+919800000555;080 4111 2233,vikram@example.com\n")


@pytest.fixture(autouse=True)
def _closed():
    """Every connector a test builds is closed afterwards (its watcher thread stops)."""
    yield
    for conn in BUILT:
        conn.close()
    BUILT.clear()


BUILT: list[DirectoryConnector] = []


def build(tmp_path: Path, *, data_changed=None, **options) -> DirectoryConnector:
    opts = {"path": "accounts.csv", **options}
    context = ConnectorContext(id="accounts", base_dir=tmp_path, **({"data_changed": data_changed} if data_changed else {}))
    conn = build_connector(DirectoryConnector, opts, context=context)
    BUILT.append(conn)
    return conn


def edit(path: Path, body: str) -> None:
    """Write `body` over the file in place, with a later mtime (as an editor saving it would)."""
    write(path, body, mtime=os.stat(path).st_mtime + 10)


def settle(conn: DirectoryConnector) -> bool:
    """Two looks by the watcher: the first sees the change, the second sees it has stopped."""
    first = conn.refresh()
    return conn.refresh() or first


def phone(conn, number: str = CALLER):
    return conn.lookup(Query("phone", number), deadline=Deadline(1.0))


def account(conn, value: str):
    return conn.lookup(Query("account", value, "custom_field"), deadline=Deadline(1.0))


# --- reading the file ----------------------------------------------------------------------------


def test_match_carries_owner_record_and_row(tmp_path, csv_path):
    match = phone(build(tmp_path))
    assert match.owner.id == match.owner.email == "asha@example.com"
    assert (match.record.type, match.record.id, match.record.name) == ("account", "A-1", "Acme")
    assert match.notes == ("directory row 2",)


def test_owner_without_at_sign_is_an_id_not_an_email(tmp_path):
    write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,9876543210,rep-17\n")
    match = phone(build(tmp_path))
    assert (match.owner.id, match.owner.email) == ("rep-17", None)


@pytest.mark.parametrize("written", [
    "098765 43210",
    "09876543210",
    "9876543210",
    "+91 98765 43210",
    "+91-98765-43210",
    "0091 98765 43210",
    "(+91) 98765-43210",
    "919876543210",
])
def test_phone_formats_people_type_all_match(tmp_path, written):
    write(tmp_path / "accounts.csv", HEADER + f"A-1,Acme,{written},asha@example.com\n")
    assert phone(build(tmp_path)).record.id == "A-1"


def test_several_numbers_per_account(tmp_path, csv_path):
    conn = build(tmp_path)
    assert phone(conn, "+919800000555").record.id == "B-7"
    assert phone(conn, "+918041112233").record.id == "B-7"


def test_unknown_number_is_none(tmp_path, csv_path):
    assert phone(build(tmp_path), "+919811122233") is None


def test_first_row_wins_for_a_shared_number(tmp_path):
    write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,Acme Branch,+919876543210,vikram@example.com\n")
    assert phone(build(tmp_path)).record.id == "A-1"


def test_blank_lines_and_bom_are_tolerated(tmp_path):
    (tmp_path / "accounts.csv").write_bytes(("\ufeff" + HEADER + ",,,\nA-1,Acme,9876543210,asha@example.com\n").encode("utf-8"))
    conn = build(tmp_path)
    assert phone(conn).record.id == "A-1"
    assert conn.check(deadline=Deadline(1.0)) == "1 accounts, 1 phone numbers from accounts.csv"


@pytest.mark.parametrize("value", ["A-1", "a-1", "  A-1 ", "b-7", "B-7"])
def test_account_id_lookup_is_case_insensitive(tmp_path, csv_path, value):
    match = account(build(tmp_path), value)
    assert match is not None and match.record.id.lower() == value.strip().lower()


def test_unknown_account_is_none(tmp_path, csv_path):
    assert account(build(tmp_path), "Z-9") is None


def test_path_is_relative_to_the_config_folder(tmp_path, csv_path):
    conn = build(tmp_path)
    assert conn.path == csv_path


# --- errors name the line --------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    (HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,Globex,9800000555,\n", ["line 3", "'owner' is empty"]),
    (HEADER + "A-1,Acme,call me maybe,asha@example.com\n", ["line 2", "is not a phone number"]),
    pytest.param(
        HEADER + "A-1,Acme,9876543210,asha@example.com\n\nA-2,Globex,98765,vikram@example.com\n", ["line 4", "is not a phone number"],
        id="after-a-blank-line",
    ),
    ("id,name,phone,owner\nA-1,Acme,9876543210,asha@example.com\n", ["missing column(s) account_id, account_name, phones"]),
])
def test_csv_errors_name_the_line(tmp_path, body, words):
    write(tmp_path / "accounts.csv", body)
    with pytest.raises(ConfigError) as info:
        build(tmp_path)
    assert info.value.key == "connectors[0].path"
    for word in words:
        assert word in info.value.message, info.value.message


def test_bad_number_is_not_echoed_in_full(tmp_path):
    write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,98765432109876543210987654321098765432109,asha@example.com\n")
    with pytest.raises(ConfigError) as info:
        build(tmp_path)
    assert "98765432109" not in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        build(tmp_path)
    assert info.value.key == "connectors[0].path"
    assert "file not found" in info.value.message


# --- reload on change ------------------------------------------------------------------------------


def test_edited_file_is_reloaded_once_it_stops_changing_and_cached_answers_go(tmp_path, csv_path):
    changed = []
    conn = build(tmp_path, data_changed=lambda: changed.append(1))
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    assert conn.refresh() is False, "a file seen changing for the first time may still be being written"
    assert phone(conn).owner.email == "asha@example.com" and not changed
    assert conn.refresh() is True
    assert phone(conn).owner.email == "meera@example.com"
    assert phone(conn, "+919800000555") is None
    assert changed == [1], "the runtime must be told, so the connector's cached answers (found and not found) go"
    assert conn.refresh() is False and changed == [1]


def test_a_file_still_growing_is_not_loaded(tmp_path, csv_path):
    conn = build(tmp_path)
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    conn.refresh()
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\nA-2,Globex,9800000555,ravi@example.com\n")
    assert conn.refresh() is False  # changed again since the last look
    assert phone(conn).owner.email == "asha@example.com"
    assert conn.refresh() is True
    assert phone(conn, "+919800000555").owner.email == "ravi@example.com"


def test_a_file_that_changes_while_it_is_read_is_read_again(tmp_path, csv_path, monkeypatch, caplog):
    conn = build(tmp_path)
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    conn.refresh()
    real_add = DirectoryConnector._add_row
    appended = []

    def add_and_append(self, *args):
        if not appended:  # the writer is still at work while we read
            appended.append(1)
            with open(csv_path, "a", encoding="utf-8") as fh:
                fh.write("A-2,Globex,9800000555,ravi@example.com\n")
        return real_add(self, *args)

    monkeypatch.setattr(DirectoryConnector, "_add_row", add_and_append)
    caplog.set_level(logging.INFO, logger="dialwhom.connector.accounts")
    assert conn.refresh() is False
    assert "changed while it was read" in caplog.text and "kept the previous" not in caplog.text
    assert phone(conn).owner.email == "asha@example.com"
    assert settle(conn)
    assert phone(conn).owner.email == "meera@example.com" and phone(conn, "+919800000555").owner.email == "ravi@example.com"


def test_renamed_over_file_is_picked_up(tmp_path, csv_path):
    conn = build(tmp_path)
    new = write(tmp_path / "accounts.csv.new", HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    os.replace(new, csv_path)
    assert settle(conn)
    assert phone(conn).owner.email == "meera@example.com"


def test_reload_false_keeps_the_startup_copy(tmp_path, csv_path):
    conn = build(tmp_path, reload=False)
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    assert phone(conn).owner.email == "asha@example.com"
    assert conn._watcher is None


@pytest.mark.parametrize("body, words", [
    (HEADER + "A-1,Acme,9876543210,\n", ["line 2", "'owner' is empty"]),
    (HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,Glo", ["line 3", "2 of 4 columns", "half-written"]),
    ("account_id,phones,owner\nA-1,9876543210,asha@example.com\n", ["missing column(s) account_name"]),
    (HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,\"" + "x" * 140_000 + "\",9800000555,ravi@example.com\n",
     ["line 3", "field larger than field limit"]),
    (HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,Glob\u00e9x,9800000555,ravi@example.com\n".encode("latin-1").decode("utf-8", "surrogateescape"),
     ["line 3", "not UTF-8"]),
])
def test_broken_edit_keeps_serving_the_previous_file(tmp_path, csv_path, caplog, body, words):
    changed = []
    conn = build(tmp_path, data_changed=lambda: changed.append(1))
    caplog.set_level(logging.INFO, logger="dialwhom.connector.accounts")
    edit(csv_path, body)
    assert settle(conn) is False
    assert phone(conn).owner.email == "asha@example.com"
    assert phone(conn, "+919800000555").record.id == "B-7"
    assert not changed, "a refused file changes nothing, so the cache stays"
    assert "kept the previous accounts.csv (2 accounts)" in caplog.text
    for word in words:
        assert word in caplog.text, caplog.text
    assert "9876543210" not in caplog.text and "9800000555" not in caplog.text
    caplog.clear()
    assert conn.refresh() is False
    assert not caplog.records, "an unchanged broken file is reported once, not on every look"
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    assert settle(conn) and phone(conn).owner.email == "meera@example.com", "a fixed file is loaded"


def test_oversize_cell_at_startup_is_a_config_error_naming_the_row(tmp_path):
    write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,\"" + "x" * 140_000 + "\",1,b@x\n")
    with pytest.raises(ConfigError) as info:
        build(tmp_path)
    assert info.value.key == "connectors[0].path"
    assert "line 3" in info.value.message and "field larger than field limit" in info.value.message


def test_half_written_file_at_startup_is_a_config_error(tmp_path):
    write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,9876543210,asha@example.com\nA-2,Glob")
    with pytest.raises(ConfigError) as info:
        build(tmp_path)
    assert info.value.key == "connectors[0].path" and "line 3" in info.value.message


def test_file_removed_while_running_keeps_serving(tmp_path, csv_path):
    conn = build(tmp_path)
    csv_path.unlink()
    assert settle(conn) is False
    assert phone(conn).record.id == "A-1"


def test_lookups_do_not_wait_for_a_reload(tmp_path, csv_path, monkeypatch):
    """While a new file is being read on the watcher thread, callers are answered from the old one."""
    conn = build(tmp_path)
    started, release = threading.Event(), threading.Event()
    real_load = DirectoryConnector._load

    def slow_load(self):
        started.set()
        release.wait(5)
        return real_load(self)

    monkeypatch.setattr(DirectoryConnector, "_load", slow_load)
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    conn.refresh()
    loader = threading.Thread(target=conn.refresh)
    loader.start()
    try:
        assert started.wait(5)
        t0 = time.perf_counter()
        assert phone(conn).owner.email == "asha@example.com"
        assert time.perf_counter() - t0 < 0.25  # not blocked behind the load (held until release)
    finally:
        release.set()
        loader.join(5)
    assert phone(conn).owner.email == "meera@example.com"


def test_the_watcher_thread_reloads_by_itself(tmp_path, csv_path, monkeypatch):
    monkeypatch.setattr(directory_mod, "POLL_S", 0.02)
    changed = threading.Event()
    conn = build(tmp_path, data_changed=changed.set)
    edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n")
    assert changed.wait(5)
    assert phone(conn).owner.email == "meera@example.com"
    conn.close()
    assert not conn._watcher.is_alive()


# --- the fast path for numbers written in E.164 ------------------------------------------------------


REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@st.composite
def written_numbers(draw):
    """(region, a number as someone in that region might write it): possible lengths, prefixes, separators."""
    region = draw(st.sampled_from(["IN"] * 20 + REGIONS))
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    lengths = [n for n in meta.general_desc.possible_length if n > 0] or [8]
    size = draw(st.sampled_from(lengths)) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    national = draw(st.sampled_from("123456789")) + draw(st.text("0123456789", min_size=max(0, size - 1), max_size=max(0, size - 1)))
    start = draw(st.sampled_from(["", "0", meta.national_prefix or "", f"+{meta.country_code}", f"{meta.country_code}",
                                  f"00{meta.country_code}", f"+{meta.country_code}0", "+"]))
    text = start + national
    cuts = draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=3))
    for i in sorted(set(cuts), reverse=True):
        text = text[:i] + draw(st.sampled_from([" ", "-", "- "])) + text[i:]
    return region, text.strip()


@settings(max_examples=400, deadline=None)  # 60,000 examples passed in a one-off run
@given(written_numbers())
def test_fast_e164_agrees_with_to_e164(case):
    region, written = case
    assert directory_mod._fast_e164(written, region) == to_e164(written, region), (region, written)


@settings(max_examples=500, deadline=None)
@given(cc=st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)), rest=st.text("0123456789", min_size=1, max_size=15))
def test_fast_e164_agrees_on_any_international_digits(cc, rest):
    written = f"+{cc}{rest}"
    assert directory_mod._fast_e164(written, "IN") == to_e164(written, "IN")


@pytest.mark.parametrize("written", ["+919876543210", "+14155550123", "+442079460958", "+390612345678", "+5491123456789", "+12",
                                     "+9999999999", "098765 43210", "9876543210", "+91-98765-43210", "0091 98765 43210", "919876543210",
                                     "(+91) 98765-43210", "080 4111 2233", "98765"])
def test_fast_e164_on_known_forms(written):
    assert directory_mod._fast_e164(written, "IN") == to_e164(written, "IN")


# --- end to end: a CSV edit shows up at once -----------------------------------------------------------


def test_e2e_an_edit_replaces_cached_found_and_not_found_answers(tmp_path, csv_path):
    from dialwhom.app import create_app

    config = {
        "default_region": "IN",
        "connectors": [{"id": "accounts", "type": "directory", "path": str(csv_path)}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA}, {"owner": "meera@example.com", "phone": sample.VIKRAM}],
        "fallback": [sample.FALLBACK],
    }
    app = create_app(config, registry=registry_from_classes([DirectoryConnector]))
    runtime = app.extensions["dialwhom"]
    try:
        client = app.test_client()

        def first(caller: str, sid: str) -> str:
            return client.get("/exotel/dial-whom", query_string={"CallSid": sid, "From": caller}).get_data(as_text=True).split(",")[0]

        assert first("09876543210", "c1") == sample.ASHA
        assert first("09811122233", "c2") == sample.FALLBACK  # not in the file: cached as not found
        edit(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\nA-3,Initech,9811122233,asha@example.com\n")
        assert first("09876543210", "c3") == sample.ASHA  # still the cached answer
        assert settle(runtime.connectors[0])
        assert first("09876543210", "c4") == sample.VIKRAM
        assert first("09811122233", "c5") == sample.ASHA
    finally:
        runtime.close()
