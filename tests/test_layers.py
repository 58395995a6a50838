"""The layout's import rules, checked on the source (README, "Development"):
routing/ is the core and imports nothing outward; nothing imports the repository's folders
by their bare names; the built-in connectors use only the public SDK."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("routing", "integrations", "simulator") for p in (ROOT / d).rglob("*.py")) + sorted(ROOT.glob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name `path` imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_top_level_names(path):
    bare = {n for n in imported(path) if n.split(".")[0] in {"app", "routing", "integrations", "simulator", "cli", "sdk", "testing"}}
    assert not bare, f"{path.name} imports {sorted(bare)}: import them as dialwhom.*"


@pytest.mark.parametrize("path", sorted((ROOT / "routing").rglob("*.py")), ids=lambda p: p.name)
def test_routing_is_the_inner_layer(path):
    outward = {n for n in imported(path) if n.startswith("dialwhom.") and not n.startswith("dialwhom.routing")} | ({"flask"} & imported(path))
    assert not outward, f"routing/{path.name} imports {sorted(outward)}"


@pytest.mark.parametrize("path", sorted((ROOT / "integrations" / "connectors").glob("*.py")), ids=lambda p: p.name)
def test_builtin_connectors_use_only_the_sdk(path):
    inner = {n for n in imported(path) if n.startswith("dialwhom.") and n != "dialwhom.sdk"}
    assert not inner, f"integrations/connectors/{path.name} imports {sorted(inner)}: use dialwhom.sdk"


def test_integrations_do_not_import_the_web_or_command_layer():
    for path in (ROOT / "integrations").rglob("*.py"):
        outer = {n for n in imported(path) if n.split(".")[:2] in (["dialwhom", "app"], ["dialwhom", "cli"], ["dialwhom", "simulator"])}
        assert not outer, f"{path.relative_to(ROOT)} imports {sorted(outer)}"


def test_the_kit_and_the_example_plugin_use_only_the_documented_paths():
    for path in [ROOT / "testing.py", *sorted((ROOT / "examples" / "plugin").rglob("*.py"))]:
        used = {n for n in imported(path) if n.startswith("dialwhom.")}
        assert used <= {"dialwhom.sdk", "dialwhom.testing"}, f"{path.relative_to(ROOT)} imports {sorted(used - {'dialwhom.sdk', 'dialwhom.testing'})}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["dialwhom", *parts])


def _top_level_imports(path: Path) -> set[str]:
    """Imports run when the module loads (module level, outside `if TYPE_CHECKING:`)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("dialwhom")}


def test_no_import_cycles():
    modules = {_module_name(p): p for p in SOURCES}
    graph = {m: {n for n in _top_level_imports(p) if n in modules and n != m} for m, p in modules.items()}
    # a package imports its own submodules in __init__; a submodule importing its package is not a cycle
    for m in graph:
        graph[m] = {n for n in graph[m] if not m.startswith(n + ".")}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
