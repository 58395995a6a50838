"""Keep the plugin author surface honest: built-ins tested with the kit, the guide in step with the code."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

import dialwhom.sdk as sdk
import dialwhom.testing as kit
from dialwhom.integrations.base import Connector

ROOT = Path(__file__).resolve().parents[2]
GUIDE_PATH = ROOT / "docs" / "writing-a-connector.md"
GUIDE = GUIDE_PATH.read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENTRY_POINTS: dict[str, str] = PYPROJECT["project"]["entry-points"][kit.GROUP]
BUILTINS = {name: target for name, target in ENTRY_POINTS.items() if target.startswith("dialwhom.integrations.connectors.")}


def section(title: str) -> str:
    """The guide's text under the ``## title`` heading, up to the next ``## ``."""
    parts = re.split(r"^## ", GUIDE, flags=re.M)
    for part in parts:
        if part.startswith(title + "\n"):
            return part
    raise AssertionError(f"docs/writing-a-connector.md has no '## {title}' section")


def first_column_names(text: str) -> set[str]:
    """Identifiers in backticks in the first column of every table row of `text`."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", line.split("|")[1]))
    return names


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", text, flags=re.S)


# --- every built-in connector: a test module and a run of the kit ---------------------------------


def kit_runs() -> dict[str, list[str]]:
    """'module:Class' -> the test classes that run the contract kit on it (read from the source)."""
    runs: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {a.asname or a.name: f"{n.module}:{a.name}" for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module for a in n.names}
        if imported.get("ConnectorContract") != "dialwhom.testing:ConnectorContract":
            continue
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        contract = {"ConnectorContract"}
        grew = True
        while grew:  # subclasses of subclasses run the kit too
            grew = False
            for c in classes:
                if c.name not in contract and any(isinstance(b, ast.Name) and b.id in contract for b in c.bases):
                    contract.add(c.name)
                    grew = True
        for c in classes:
            if c.name == "ConnectorContract" or c.name not in contract:
                continue
            for stmt in c.body:
                if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name)
                        and any(isinstance(t, ast.Name) and t.id == "connector_class" for t in stmt.targets)):
                    target = imported.get(stmt.value.id)
                    if target:
                        runs.setdefault(target, []).append(f"{path.relative_to(ROOT)}::{c.name}")
    return runs


def test_pyproject_registers_the_builtins():
    assert {"directory", "http"} <= set(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_connector_has_its_test_module(name):
    module = BUILTINS[name].split(":")[0].rsplit(".", 1)[-1]
    candidates = [ROOT / "tests" / "integrations" / f"test_{name}.py", ROOT / "tests" / "integrations" / f"test_{module}.py"]
    assert any(p.exists() for p in candidates), f"connector '{name}' needs tests/integrations/test_{name}.py (or test_{module}.py)"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_connector_runs_the_kit(name):
    target = BUILTINS[name]
    assert kit_runs().get(target), (
        f"no ConnectorContract subclass with connector_class = {target.split(':')[1]} under tests/; "
        "add one to tests/integrations/test_contract_builtins.py"
    )


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_type_name_matches_its_entry_point(name):
    module, _, cls_name = BUILTINS[name].partition(":")
    cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
    assert issubclass(cls, Connector) and cls.type_name == name


# --- the guide documents exactly the author surface ------------------------------------------------


def test_sdk_exports_what_it_lists():
    for name in sdk.__all__:
        assert hasattr(sdk, name), f"dialwhom.sdk.__all__ lists {name} but does not define it"
    assert len(set(sdk.__all__)) == len(sdk.__all__)


def test_every_sdk_name_is_in_the_guide_and_vice_versa():
    documented = first_column_names(section("SDK reference"))
    exported = set(sdk.__all__)
    assert not exported - documented, f"document in the guide's 'SDK reference': {sorted(exported - documented)}"
    assert not documented - exported, f"the guide's 'SDK reference' lists names dialwhom.sdk does not export: {sorted(documented - exported)}"


def test_every_kit_name_is_in_the_guide_and_vice_versa():
    documented = first_column_names(section("Kit reference"))
    exported = set(kit.__all__)
    assert not exported - documented, f"document in the guide's 'Kit reference': {sorted(exported - documented)}"
    assert not documented - exported, f"the guide's 'Kit reference' lists names dialwhom.testing does not export: {sorted(documented - exported)}"
    for name in kit.__all__:
        assert hasattr(kit, name)


def test_every_kit_setting_is_in_the_guide_and_vice_versa():
    settings = {n for n, v in vars(kit.ConnectorContract).items()
                if not n.startswith(("_", "test_", "pytest_")) and not isinstance(v, type(kit.ConnectorContract.fake_http))}
    documented = first_column_names(section("5. Run the kit").split("What you can set on your subclass:", 1)[1])
    assert not settings - documented, f"document these ConnectorContract settings in the guide: {sorted(settings - documented)}"
    assert not documented - settings - {"self", "tmp_path", "fake_http", "query", "changes"}, (
        f"the guide documents settings the kit does not have: {sorted(documented - settings)}"
    )


def test_every_kit_check_id_is_in_the_guide_and_vice_versa():
    source = Path(kit.__file__).read_text(encoding="utf-8")
    ids = {re.sub(r"\{.*", "", i) for i in re.findall(r'self\._(?:check|needs_http)\(f?"([^"]+)"\)', source)}
    table = section("5. Run the kit").split("What the kit checks", 1)[1].split("What you can set", 1)[0]
    documented = {re.sub(r"<.*", "", i) for line in table.splitlines() if line.startswith("| `")
                  for i in re.findall(r"`([^`]+)`", line.split("|")[1])}
    assert ids == documented, f"kit check ids {sorted(ids)} vs the guide's table {sorted(documented)}"


def test_the_guides_minimal_connector_works():
    """The class in '3. The minimal connector' runs as printed."""
    import responses

    from dialwhom.testing import build_connector, assert_well_formed_match
    from dialwhom.routing.deadline import Deadline
    from dialwhom.routing.model import Query

    code = code_blocks(section("3. The minimal connector"), "python")[0]
    namespace: dict = {}
    exec(compile(code, str(GUIDE_PATH), "exec"), namespace)
    cls = namespace["MyCrmConnector"]
    conn = build_connector(cls, {"base_url": "https://crm.example.test/", "api_key": "k-0123456789"})
    with responses.RequestsMock() as mock:
        mock.get("https://crm.example.test/v1/contacts", json={"contacts": [{"id": 1, "owner_email": "asha@example.com"}]})
        mock.get("https://crm.example.test/v1/contacts", json={"contacts": []})
        assert_well_formed_match(conn.lookup(Query("phone", "+919876543210"), deadline=Deadline(2)))
        assert conn.lookup(Query("phone", "+919876543210"), deadline=Deadline(2)) is None
        assert mock.calls[0].request.headers["X-Api-Key"] == "k-0123456789"


def test_the_guides_entry_point_snippet_names_the_group_and_the_type():
    snippet = tomllib.loads(code_blocks(section("2. The entry point"), "toml")[0])
    assert snippet["project"]["entry-points"][kit.GROUP] == {"mycrm": "dialwhom_mycrm:MyCrmConnector"}


def test_the_example_package_registers_its_connector_as_the_guide_says():
    example = tomllib.loads((ROOT / "examples" / "plugin" / "pyproject.toml").read_text(encoding="utf-8"))
    assert example["project"]["entry-points"][kit.GROUP] == {"examplecrm": "dialwhom_example_crm:ExampleCrmConnector"}
    assert "dialwhom>=0.1" in example["project"]["dependencies"]
    assert (ROOT / "examples" / "plugin" / "tests" / "test_connector.py").exists()
    assert "examplecrm" in GUIDE and "examples/plugin/" in GUIDE
