"""The `dialwhom` command: lookup, check, connectors, help (main() called in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import dialwhom.integrations.registry as registry_mod
import pytest
from dialwhom.cli import main
from dialwhom.integrations.base import Connector
from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.integrations.registry import registry_from_classes
from dialwhom.routing.config import EXAMPLE_CONFIG
from dialwhom.routing.errors import AuthError
from sample import ASHA, FALLBACK, NORTH3, VIKRAM  # noqa: E402


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """The embedded default applies: no DIALWHOM_* and a cwd without ./dialwhom.yaml."""
    monkeypatch.delenv("DIALWHOM_CONFIG", raising=False)
    monkeypatch.delenv("DIALWHOM_TOKEN", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(folder, text: str):
    path = folder / "conf.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


class Unreachable(Connector):
    """A connector whose store is down and whose credentials are refused."""

    type_name = "unreachable"

    def lookup(self, query, *, deadline):
        raise AuthError("unreachable: credentials refused")

    def check(self, *, deadline):
        raise AuthError("unreachable: credentials refused (401)")


@pytest.fixture
def with_unreachable(monkeypatch):
    monkeypatch.setattr(registry_mod, "discover", lambda: registry_from_classes([DirectoryConnector, Unreachable]))


# -- lookup ----------------------------------------------------------------------------------


def test_lookup_text(capsys):
    assert main(["lookup", "09876543210"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"1. {ASHA}  (owner)",
        f"2. {VIKRAM}  (team:north)",
        f"3. {NORTH3}  (team:north)",
        f"4. {FALLBACK}  (fallback)",
    ]


@pytest.mark.parametrize("number", ["+919876543210", "98765 43210", "0091-98765-43210"])
def test_lookup_accepts_any_common_format(capsys, number):
    assert main(["lookup", number]) == 0
    assert capsys.readouterr().out.startswith(f"1. {ASHA}  (owner)")


def test_lookup_json(capsys):
    assert main(["lookup", "09876543210", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["numbers"] == [ASHA, VIKRAM, NORTH3, FALLBACK]
    assert doc["reasons"] == ["owner", "team:north", "team:north", "fallback"]
    assert (doc["path"], doc["key"], doc["connector"]) == ("fresh", "caller", "accounts")
    assert doc["steps"][0]["connector"] == "accounts" and doc["steps"][0]["outcome"] == "found"
    assert isinstance(doc["elapsed_ms"], float)


def test_lookup_explain(capsys):
    assert main(["lookup", "09876543210", "--explain"]) == 0
    out = capsys.readouterr().out
    assert f"1. {ASHA}  (owner)" in out
    assert "answer path: fresh (customer identified by caller via accounts)" in out
    assert "accounts: looked up by caller -> found" in out
    assert "plan: owner,team:north,team:north,fallback" in out


def test_lookup_unknown_caller_with_line(capsys):
    assert main(["lookup", "07777777777", "--to", "08039513882", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["numbers"] == [VIKRAM, NORTH3, FALLBACK]
    assert doc["path"] == "not-found"


def test_lookup_by_custom_field_and_digits(capsys):
    assert main(["lookup", "--custom-field", "A-1004", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == "custom_field"
    assert main(["lookup", "--digits", "A-1002", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["key"] == "digits" and doc["numbers"][0] == VIKRAM


def test_lookup_needs_something_to_look_up(capsys):
    assert main(["lookup"]) == 2
    assert "NUMBER" in capsys.readouterr().err


def test_lookup_of_garbage_is_a_usage_error(capsys):
    assert main(["lookup", "not-a-number"]) == 2
    assert "not a phone number" in capsys.readouterr().err


def test_lookup_with_explicit_config(capsys, isolated):
    path = write_config(isolated, """\
        fallback: ["+918000000009"]
        """)
    assert main(["lookup", "09876543210", "--config", path]) == 0
    assert capsys.readouterr().out.strip() == "1. +918000000009  (fallback)"


def test_lookup_with_config_from_env(capsys, isolated, monkeypatch):
    monkeypatch.setenv("DIALWHOM_CONFIG", write_config(isolated, 'fallback: ["+918000000008"]\n'))
    assert main(["lookup", "09876543210"]) == 0
    assert "+918000000008" in capsys.readouterr().out


def test_lookup_with_no_numbers_in_config(capsys, isolated):
    assert main(["lookup", "09876543210", "--config", write_config(isolated, "{}\n")]) == 0
    assert "nobody" in capsys.readouterr().out


# -- check -----------------------------------------------------------------------------------


@pytest.fixture
def out_to_capsys(capsys, monkeypatch):
    """`check` prints to whatever sys.stdout is when it runs, so capsys sees it."""
    return capsys


def test_check_writes_to_the_current_stdout(capsys):
    assert main(["check"]) == 0
    assert "all good" in capsys.readouterr().out


def test_check_the_example(out_to_capsys):
    assert main(["check"]) == 0
    out = out_to_capsys.readouterr().out
    assert f"config {EXAMPLE_CONFIG}: valid (1 connectors, 4 reps, 2 teams)" in out
    assert "connector accounts (directory): 5 accounts" in out
    assert "no token" in out  # a warning, not a failure
    assert out.strip().endswith("all good")


def test_check_json_report(out_to_capsys):
    assert main(["check", "--json"]) == 0
    lines = out_to_capsys.readouterr().out.splitlines()
    start, end = lines.index("{"), len(lines) - lines[::-1].index("}")
    doc = json.loads("\n".join(lines[start:end]))
    assert doc["config"] == str(EXAMPLE_CONFIG)
    assert doc["problems"] == []
    assert doc["connectors"][0]["id"] == "accounts"


def test_check_json_stdout_is_only_json(isolated):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALWHOM_")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(['check', '--json']))"],
        cwd=isolated, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["problems"] == []


def test_check_with_a_failing_connector_exits_1(out_to_capsys, isolated, with_unreachable):
    path = write_config(isolated, """\
        connectors:
          - id: crm
            type: unreachable
        fallback: ["+918000000000"]
        check_number: "09876543210"
        """)
    assert main(["check", "--config", path]) == 1
    out = out_to_capsys.readouterr().out
    assert "FAIL connector crm (unreachable): AuthError" in out
    assert "2 problem(s) found" in out
    assert "9876543210" not in out  # check_number shown masked


def test_check_without_fallback_exits_1(out_to_capsys, isolated):
    assert main(["check", "--config", write_config(isolated, "{}\n")]) == 1
    assert "no 'fallback' numbers" in out_to_capsys.readouterr().out


@pytest.mark.parametrize(
    "text, key",
    [
        ("budget_ms: 9000\n", "budget_ms"),
        ("teams:\n  x:\n    backup: ['+919800000002', 'abc']\n", "teams.x.backup[1]"),
        ("connectors:\n  - id: crm\n    type: nosuchtype\n", "connectors[0].type"),
        ("connectors:\n  - id: accounts\n    type: directory\n    path: missing.csv\n", "connectors[0].path"),
        ("fallback: [\n", "<file>"),
    ],
)
def test_check_on_a_broken_config_exits_2_naming_the_key(capsys, isolated, text, key):
    assert main(["check", "--config", write_config(isolated, text)]) == 2
    captured = capsys.readouterr()
    assert f"'{key}'" in captured.err
    assert captured.err.startswith("dialwhom: config error")


def test_missing_config_file_exits_2(capsys, isolated):
    assert main(["check", "--config", str(isolated / "nope.yaml")]) == 2
    assert "'--config'" in capsys.readouterr().err


def test_unset_env_var_in_config_exits_2_naming_it(capsys, isolated):
    path = write_config(isolated, "token: ${DIALWHOM_TEST_UNSET_TOKEN}\n")
    assert main(["lookup", "09876543210", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "'token'" in err and "DIALWHOM_TEST_UNSET_TOKEN" in err


# -- connectors, help --------------------------------------------------------------------------


def test_connectors_listing(capsys):
    assert main(["connectors", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_type = {r["type"]: r for r in rows}
    assert by_type["directory"]["target"] == "dialwhom.integrations.connectors.directory:DirectoryConnector"
    assert by_type["directory"]["status"] == "ok"
    assert by_type["http"]["status"] == "ok"
    rc = main(["connectors"])
    out = capsys.readouterr().out
    assert "directory" in out and "http" in out
    assert rc == (0 if all(r["status"] == "ok" for r in rows) else 1)


def test_connectors_listing_reports_a_broken_plugin(capsys, monkeypatch):
    from importlib.metadata import EntryPoint

    from dialwhom.integrations.registry import ConnectorType

    broken = ConnectorType("ghost", "no_such_module:Ghost", "ghost-plugin", "0.1", entry_point=EntryPoint("ghost", "no_such_module:Ghost", "dialwhom.connectors"))
    monkeypatch.setattr(registry_mod, "discover", lambda: {**registry_from_classes([DirectoryConnector]), "ghost": [broken]})
    assert main(["connectors"]) == 1
    out = capsys.readouterr().out
    assert "ghost" in out and "fails to load" in out


@pytest.mark.parametrize("argv", [["--help"], ["lookup", "--help"], ["check", "--help"], ["connectors", "--help"]])
def test_help_exits_0(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: dialwhom" in capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("serve", "lookup", "check", "connectors"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: dialwhom" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_output_cut_short_by_a_closed_pipe_is_no_traceback(tmp_path):
    """`dialwhom lookup ... --explain | head -1`: the reader goes away; exit quietly."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already left when the answer is written
    try:
        proc = subprocess.run([sys.executable, "-m", "dialwhom", "lookup", "09876543210", "--explain"],
                              cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
