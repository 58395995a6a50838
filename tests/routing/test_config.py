"""Config: found by the search order, `${ENV}`-substituted, validated with errors naming the key."""

from __future__ import annotations

import sample
import textwrap
from pathlib import Path

import pytest

from dialwhom.integrations.base import Connector
from dialwhom.integrations.connectors.directory import DirectoryConnector
from dialwhom.integrations.registry import build_connectors, registry_from_classes
from dialwhom.routing.schema import Field
from dialwhom.routing.config import BUDGET_CEILING_MS, EXAMPLE_CONFIG, ConfigError, find_config, from_mapping, load
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Query

OK = {"fallback": [sample.FALLBACK]}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No DIALWHOM_* from the outside, and a cwd without ./dialwhom.yaml."""
    monkeypatch.delenv("DIALWHOM_CONFIG", raising=False)
    monkeypatch.delenv("DIALWHOM_TOKEN", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- the error table ---------------------------------------------------------------------------

TEAMS = {"north": {"backup": [sample.VIKRAM]}}

ERRORS = [
    ("bad region", {"default_region": "XX"}, "default_region", "XX"),
    ("region not text", {"default_region": ["IN"]}, "default_region", "expected text"),
    ("budget too small", {"budget_ms": 10}, "budget_ms", "50 to 8000"),
    ("budget over the ceiling", {"budget_ms": BUDGET_CEILING_MS + 1}, "budget_ms", "8000"),
    ("budget at Exotel's limit", {"budget_ms": 10_000}, "budget_ms", "out of range"),
    ("budget not a number", {"budget_ms": "fast"}, "budget_ms", "whole number"),
    ("budget a bool", {"budget_ms": True}, "budget_ms", "whole number"),
    ("bad lookup_order item", {"lookup_order": ["caller", "email"]}, "lookup_order[1]", "'email'"),
    ("lookup_order repeats", {"lookup_order": ["caller", "caller"]}, "lookup_order", "once"),
    ("lookup_order not a list", {"lookup_order": "caller"}, "lookup_order", "list"),
    ("rep without phone", {"teams": TEAMS, "reps": [{"owner": "a@x.com", "team": "north"}]}, "reps[0].phone", "required"),
    ("rep with empty phone", {"reps": [{"owner": "a@x.com", "phone": ""}]}, "reps[0].phone", "required"),
    ("rep without owner", {"reps": [{"phone": sample.ASHA}]}, "reps[0].owner", "required"),
    ("rep with bad phone", {"reps": [{"owner": "a@x.com", "phone": [sample.ASHA, "12"]}]}, "reps[0].phone[1]", "'12'"),
    ("rep unknown key", {"reps": [{"owner": "a@x.com", "phone": sample.ASHA, "email": "x"}]}, "reps[0].email", "unknown key"),
    ("rep owner twice", {"reps": [{"owner": "a@x.com", "phone": sample.ASHA}, {"owner": "A@X.com", "phone": sample.VIKRAM}]}, "reps[1].owner", "reps[0]"),
    ("rep team unknown", {"teams": TEAMS, "reps": [{"owner": "a@x.com", "phone": sample.ASHA, "team": "west"}]}, "reps[0].team", "'west'"),
    ("bad phone in a team backup", {"teams": {"x": {"backup": [sample.VIKRAM, "not-a-number"]}}}, "teams.x.backup[1]", "not-a-number"),
    ("team as a list", {"teams": {"x": [sample.VIKRAM]}}, "teams.x", "backup"),
    ("team unknown key", {"teams": {"x": {"backups": []}}}, "teams.x.backups", "did you mean 'backup'? (valid keys: backup, hours, name, order, parallel, ring_timeout_s, stickiness)"),
    ("bad fallback", {"fallback": [sample.FALLBACK, "123"]}, "fallback[1]", "'123'"),
    ("fallback number not text", {"fallback": [None]}, "fallback[0]", "phone number"),
    ("line to unknown team", {"teams": TEAMS, "lines": {sample.LINE_NORTH: "west"}}, "lines.+918039513882", "'west'"),
    ("line not a number", {"teams": TEAMS, "lines": {"reception": "north"}}, "lines.reception", "not a phone number"),
    ("duplicate connector ids", {"connectors": [{"id": "crm", "type": "http"}, {"id": "crm", "type": "directory"}]}, "connectors[1].id", "unique"),
    ("bad connector id", {"connectors": [{"id": "My CRM", "type": "http"}]}, "connectors[0].id", "lowercase"),
    ("missing connector id", {"connectors": [{"type": "http"}]}, "connectors[0].id", "required"),
    ("missing connector type", {"connectors": [{"id": "crm"}]}, "connectors[0].type", "required"),
    ("connector not a mapping", {"connectors": ["crm"]}, "connectors[0]", "mapping"),
    ("connector timeout over the ceiling", {"connectors": [{"id": "crm", "type": "http", "timeout_ms": 9000}]}, "connectors[0].timeout_ms", "8000"),
    ("connector retries", {"connectors": [{"id": "crm", "type": "http", "retries": 9}]}, "connectors[0].retries", "0 to 5"),
    ("connector enabled", {"connectors": [{"id": "crm", "type": "http", "enabled": "yes"}]}, "connectors[0].enabled", "true or false"),
    ("unknown top-level key", {"fallbak": [sample.FALLBACK]}, "fallbak", "did you mean 'fallback'?"),
    ("unknown cache key", {"cache": {"ttl": 5}}, "cache.ttl", "unknown key"),
    ("cache value out of range", {"cache": {"call_ttl_s": 1}}, "cache.call_ttl_s", "out of range"),
    ("unknown breaker key", {"breaker": {"threshold": 3}}, "breaker.threshold", "unknown key"),
    ("token too short", {"token": "short-secret"}, "token", "16"),
    ("second token too short", {"token": ["a" * 20, "short"]}, "token[1]", "16"),
    ("token not text", {"token": 12345678901234567890}, "token", "text"),
    ("max_numbers", {"max_numbers": 0}, "max_numbers", "1 to 20"),
    ("log_level", {"log_level": "LOUD"}, "log_level", "'LOUD'"),
    ("check_number", {"check_number": "abc"}, "check_number", "'abc'"),
    ("top level not a mapping", ["fallback"], "<file>", "mapping"),
    pytest.param(
        "local-only number without area code", {"fallback": ["2345678"]}, "fallback[0]", "not a phone number",
        id="local-only-number",
    ),
]


@pytest.mark.parametrize("name, raw, key, words", ERRORS, ids=[e[0] if isinstance(e, tuple) else None for e in ERRORS])
def test_config_error_names_the_key(name, raw, key, words):
    with pytest.raises(ConfigError) as err:
        from_mapping(raw, environ={})
    assert err.value.key == key
    assert words in err.value.message
    assert f"'{key}'" in str(err.value)


def test_budget_ceiling_is_accepted():
    assert from_mapping({"budget_ms": BUDGET_CEILING_MS}, environ={}).budget_ms == 8000


def test_connector_timeout_defaults_to_at_most_the_budget():
    s = from_mapping({"budget_ms": 800, "connectors": [{"id": "crm", "type": "http"}]}, environ={})
    assert s.connectors[0].timeout_ms == 800
    assert s.connectors[0].options == {}


def test_connector_keys_beyond_the_framework_ones_are_options():
    s = from_mapping({"connectors": [{"id": "crm", "type": "http", "url": "https://x/{phone}", "timeout_ms": 300, "retries": 0}]}, environ={})
    c = s.connectors[0]
    assert (c.id, c.type, c.timeout_ms, c.retries, c.enabled) == ("crm", "http", 300, 0, True)
    assert c.options == {"url": "https://x/{phone}"}


# -- environment references ------------------------------------------------------------------


def test_unset_env_var_names_the_key_and_the_variable():
    raw = {"connectors": [{"id": "crm", "type": "http", "bearer_token": "${CRM_TOKEN}"}]}
    with pytest.raises(ConfigError) as err:
        from_mapping(raw, environ={})
    assert err.value.key == "connectors[0].bearer_token"
    assert "CRM_TOKEN" in err.value.message


def test_unset_env_var_at_top_level():
    with pytest.raises(ConfigError) as err:
        from_mapping({"token": "${DIALWHOM_TOKEN}"}, environ={})
    assert err.value.key == "token" and "DIALWHOM_TOKEN" in err.value.message


def test_env_var_is_substituted():
    s = from_mapping({"token": "${T}", "fallback": ["${FB}"]}, environ={"T": "t" * 24, "FB": "08000000000"})
    assert s.tokens == ("t" * 24,)
    assert s.fallback == (sample.FALLBACK,)


def test_env_var_inside_a_longer_value():
    s = from_mapping({"fallback": ["+91${FB_NUM}"]}, environ={"FB_NUM": "8000000000"})
    assert s.fallback == (sample.FALLBACK,)


@pytest.mark.parametrize(
    "value, environ, tokens",
    [
        ("${X:-}", {}, ()),
        ("${X:-" + "d" * 20 + "}", {}, ("d" * 20,)),
        ("${X:-" + "d" * 20 + "}", {"X": "e" * 20}, ("e" * 20,)),
        ("${X:-" + "d" * 20 + "}", {"X": ""}, ()),
    ],
)
def test_env_var_default(value, environ, tokens):
    assert from_mapping({"token": value}, environ=environ).tokens == tokens


def test_os_environ_is_the_default_environment(monkeypatch):
    monkeypatch.setenv("DIALWHOM_TEST_FALLBACK", "+918000000001")
    assert from_mapping({"fallback": ["${DIALWHOM_TEST_FALLBACK}"]}).fallback == ("+918000000001",)


def test_several_tokens_for_rotation():
    s = from_mapping({"token": ["a" * 16, " ", "b" * 32]}, environ={})
    assert s.tokens == ("a" * 16, "b" * 32)


# -- reading files -----------------------------------------------------------------------------


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path / "bad.yaml", """\
        default_region: IN
        fallback: ["+918000000000"
        teams:
          north: {}
        """)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == "<file>"
    assert "not valid YAML" in err.value.message
    assert "line 3" in err.value.message or "line 2" in err.value.message
    assert str(path) in err.value.message


def test_empty_file_is_an_empty_config(tmp_path):
    s = load(write(tmp_path / "empty.yaml", ""))
    assert s.fallback == () and s.connectors == ()


def test_missing_file_via_explicit_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "nope.yaml")
    assert err.value.key == "--config"
    assert "nope.yaml" in err.value.message


def test_missing_file_via_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DIALWHOM_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError) as err:
        load()
    assert err.value.key == "DIALWHOM_CONFIG"
    assert "gone.yaml" in err.value.message


def test_file_errors_name_the_key_too(tmp_path):
    path = write(tmp_path / "c.yaml", "budget_ms: 9000\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == "budget_ms"


def test_search_order(tmp_path, monkeypatch):
    explicit = write(tmp_path / "explicit.yaml", "fallback: ['+918000000001']\n")
    env = write(tmp_path / "env.yaml", "fallback: ['+918000000002']\n")
    local = write(Path.cwd() / "dialwhom.yaml", "fallback: ['+918000000003']\n")

    monkeypatch.setenv("DIALWHOM_CONFIG", str(env))
    assert find_config(explicit) == explicit
    assert load(explicit).fallback == ("+918000000001",)
    assert find_config() == env
    assert load().fallback == ("+918000000002",)

    monkeypatch.delenv("DIALWHOM_CONFIG")
    assert find_config().resolve() == local.resolve()
    assert load().fallback == ("+918000000003",)

    local.unlink()
    assert find_config() == EXAMPLE_CONFIG
    assert load().source == str(EXAMPLE_CONFIG)


def test_empty_env_var_falls_through(monkeypatch):
    monkeypatch.setenv("DIALWHOM_CONFIG", "")
    assert find_config() == EXAMPLE_CONFIG


def test_source_and_base_dir_come_from_the_file(tmp_path):
    path = write(tmp_path / "conf" / "dialwhom.yaml", "fallback: ['+918000000000']\n")
    s = load(path)
    assert s.source == str(path)
    assert s.base_dir == path.parent.resolve()
    assert s.resolve_path("accounts.csv") == path.parent.resolve() / "accounts.csv"
    assert s.resolve_path("/abs/x.csv") == Path("/abs/x.csv")


def test_relative_csv_path_is_resolved_against_the_config_folder(tmp_path):
    folder = tmp_path / "elsewhere"
    write(folder / "accounts.csv", "account_id,account_name,phones,owner\nA-1,Acme,09876543210,asha@example.com\n")
    path = write(folder / "dialwhom.yaml", """\
        connectors:
          - id: accounts
            type: directory
            path: accounts.csv
        fallback: ["+918000000000"]
        """)
    s = load(path)  # cwd is another folder
    [conn] = build_connectors(s, registry_from_classes([DirectoryConnector]))
    assert conn.path.resolve() == (folder / "accounts.csv").resolve()
    match = conn.lookup(Query("phone", "+919876543210"), deadline=Deadline(1.0))
    assert match is not None and match.owner.email == "asha@example.com"


# -- the shipped example ----------------------------------------------------------------------


def test_the_shipped_example_loads_and_builds():
    s = load(EXAMPLE_CONFIG, environ={})
    assert s.default_region == "IN"
    assert s.tokens == ()  # ${DIALWHOM_TOKEN:-}
    assert s.lookup_order == ("custom_field", "digits", "caller")
    assert [c.id for c in s.connectors] == ["accounts"]
    assert s.fallback == (sample.FALLBACK,)
    assert s.lines == {sample.LINE_NORTH: "north", sample.LINE_SOUTH: "south"}
    assert s.rep_for("MEERA@example.com").phones == (sample.MEERA, "+918041112233")
    [conn] = build_connectors(s, registry_from_classes([DirectoryConnector]))
    assert conn.path == EXAMPLE_CONFIG.parent / "accounts.csv"


def test_the_shipped_example_takes_its_token_from_the_env():
    s = load(EXAMPLE_CONFIG, environ={"DIALWHOM_TOKEN": "r" * 24})
    assert s.tokens == ("r" * 24,)


# -- connector entries checked at build time -----------------------------------------------------


class _Needy(Connector):
    type_name = "needy"
    config_schema = (
        Field("url", str, required=True, help="where"),
        Field("api_key", str, required=True, secret=True, help="the key"),
        Field("page_size", int, default=10, min=1, max=100),
    )

    def lookup(self, query, *, deadline):
        return None


REGISTRY = registry_from_classes([DirectoryConnector, _Needy])


def _build(*entries):
    return build_connectors(from_mapping({"connectors": list(entries)}, environ={}), REGISTRY)


def test_unknown_connector_type_names_the_installed_ones():
    with pytest.raises(ConfigError) as err:
        _build({"id": "a", "type": "directory", "path": str(EXAMPLE_CONFIG.parent / "accounts.csv")}, {"id": "sf", "type": "salesforce"})
    assert err.value.key == "connectors[1].type"
    assert "'salesforce'" in err.value.message
    assert "directory" in err.value.message and "needy" in err.value.message


@pytest.mark.parametrize(
    "entry, key, words",
    [
        ({"id": "n", "type": "needy", "api_key": "k" * 10}, "connectors[0].url", "required"),
        ({"id": "n", "type": "needy", "url": "https://x"}, "connectors[0].api_key", "environment variable"),
        ({"id": "n", "type": "needy", "url": "https://x", "api_key": "k", "pagesize": 5}, "connectors[0].pagesize", "did you mean 'page_size'? (valid keys: api_key, enabled, id, max_in_flight, page_size, retries, timeout_ms, type, url)"),
        ({"id": "n", "type": "needy", "url": "https://x", "api_key": "k", "page_size": 500}, "connectors[0].page_size", "out of range"),
        ({"id": "n", "type": "needy", "url": "https://x", "api_key": "k", "page_size": "ten"}, "connectors[0].page_size", "whole number"),
        ({"id": "d", "type": "directory"}, "connectors[0].path", "required"),
        ({"id": "d", "type": "directory", "path": "no-such.csv"}, "connectors[0].path", "not found"),
    ],
)
def test_connector_schema_errors_name_the_entry_key(entry, key, words):
    with pytest.raises(ConfigError) as err:
        _build(entry)
    assert err.value.key == key
    assert words in err.value.message


def test_secret_values_never_show_in_schema_errors():
    with pytest.raises(ConfigError) as err:
        _build({"id": "n", "type": "needy", "url": "https://x", "api_key": ["super-secret-value"]})
    assert err.value.key == "connectors[0].api_key"
    assert "super-secret-value" not in str(err.value)


def test_disabled_connectors_are_not_built():
    built = _build({"id": "n", "type": "needy", "url": "https://x", "api_key": "k"}, {"id": "off", "type": "missing", "enabled": False})
    assert [c.id for c in built] == ["n"]
