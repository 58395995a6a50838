"""The ``directory`` connector: a CSV of accounts (README, "Connectors")."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dialwhom.integrations.base import ConnectorContext
from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.routing.errors import ConfigError
from dialwhom.testing import build_connector
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Query

HEADER = "account_id,account_name,phones,owner\n"
CALLER = "+919876543210"


def write(path: Path, body: str, *, mtime: float | None = None) -> Path:
    path.write_text(body, encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def csv_path(tmp_path) -> Path:
    return write(tmp_path / "accounts.csv", HEADER + "A-1,Acme,098765 43210,asha@example.com\nB-7,Globex,+919800000555;080 4111 2233,vikram@example.com\n")


def build(tmp_path: Path, **options) -> DirectoryConnector:
    opts = {"path": "accounts.csv", **options}
    return build_connector(DirectoryConnector, opts, context=ConnectorContext(id="accounts", base_dir=tmp_path))


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


def test_edited_file_is_reloaded(tmp_path, csv_path):
    conn = build(tmp_path)
    assert phone(conn).owner.email == "asha@example.com"
    write(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n", mtime=os.stat(csv_path).st_mtime + 10)
    assert phone(conn).owner.email == "meera@example.com"
    assert phone(conn, "+919800000555") is None


def test_reload_false_keeps_the_startup_copy(tmp_path, csv_path):
    conn = build(tmp_path, reload=False)
    write(csv_path, HEADER + "A-1,Acme,9876543210,meera@example.com\n", mtime=os.stat(csv_path).st_mtime + 10)
    assert phone(conn).owner.email == "asha@example.com"


def test_broken_edit_keeps_serving_the_previous_file(tmp_path, csv_path, caplog):
    conn = build(tmp_path)
    caplog.set_level(logging.ERROR, logger="dialwhom.connector.accounts")
    write(csv_path, HEADER + "A-1,Acme,9876543210,\n", mtime=os.stat(csv_path).st_mtime + 10)
    assert phone(conn).owner.email == "asha@example.com"
    assert "kept the previous accounts.csv" in caplog.text
    assert "line 2" in caplog.text
    caplog.clear()
    assert phone(conn).owner.email == "asha@example.com"
    assert not caplog.records, "an unchanged broken file is reported once, not on every lookup"


def test_file_removed_while_running_keeps_serving(tmp_path, csv_path):
    conn = build(tmp_path)
    csv_path.unlink()
    assert phone(conn).record.id == "A-1"
