"""Keep the README in step with the code: every config key and built-in connector documented."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dialwhom.routing.config import BreakerSettings, CacheSettings, Settings, SharedStateSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_BLOCK = README.split("## Configuration", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
# Settings fields that are not config keys, or are spelt differently in YAML
NOT_KEYS = {"source", "base_dir", "version"}
RENAMED = {"tokens": "token"}


def _documented_keys(block: str) -> set[str]:
    return set(re.findall(r"^\s*-?\s*([a-z_]+):", block, flags=re.M))


@pytest.mark.parametrize("cls", [Settings, CacheSettings, BreakerSettings, SharedStateSettings])
def test_every_config_key_is_in_the_readme_reference(cls):
    keys = {RENAMED.get(f.name, f.name) for f in dataclasses.fields(cls)} - NOT_KEYS
    missing = keys - _documented_keys(CONFIG_BLOCK)
    assert not missing, f"document these keys in README's Configuration block: {sorted(missing)}"


def test_the_readme_reference_config_is_valid(tmp_path, monkeypatch):
    """The reference block itself must load (with its env references set)."""
    import yaml

    from dialwhom.routing.config import from_mapping

    raw = yaml.safe_load(CONFIG_BLOCK)
    (tmp_path / "accounts.csv").write_text("account_id,account_name,phones,owner\n")
    settings = from_mapping(raw, environ={"DIALWHOM_TOKEN": "x" * 24}, base_dir=tmp_path)
    assert settings.tokens == ("x" * 24,)


def test_every_builtin_connector_has_a_readme_row_and_a_test_module():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["dialwhom.connectors"]
    for name, target in entry_points.items():
        assert f"| `{name}` |" in README, f"README's Connectors table lacks `{name}`"
        module = target.split(":")[0].split(".")[-1]
        candidates = [ROOT / "tests" / "integrations" / f"test_{name}.py", ROOT / "tests" / "integrations" / f"test_{module}.py"]
        assert any(p.exists() for p in candidates), f"no test module for connector {name} ({target})"


def test_every_builtin_connectors_keys_are_documented():
    """Each key of a built-in's `config_schema` is named in its README row or its docs/crm guide."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="dialwhom.connectors"):
        if not ep.value.startswith("dialwhom."):
            continue
        row = next((line for line in README.splitlines() if line.startswith(f"| `{ep.name}` |")), "")
        guide = ROOT / "docs" / "crm" / f"{ep.name}.md"
        text = row + (guide.read_text(encoding="utf-8") if guide.exists() else "")
        missing = [f.name for f in ep.load().config_schema if f"`{f.name}`" not in text]
        assert not missing, f"connector {ep.name}: document {missing} in its README row or docs/crm/{ep.name}.md"


def test_every_decision_path_is_declared_and_documented():
    """The path vocabulary lives in one place (routing/trace.py PATHS); code sets only those."""
    from dialwhom.routing.trace import PATHS

    for path in PATHS:
        assert f"`{path}`" in README, f"README's 'How a call is routed' does not name path `{path}`"
    for source in (ROOT / "routing").glob("*.py"):
        for path in re.findall(r'\bpath = "([a-z-]+)"', source.read_text(encoding="utf-8")):
            assert path in PATHS, f"routing/{source.name} sets path {path!r}, not declared in PATHS"


def test_readme_quick_start_commands_match_ci():
    """CI must run the README's test command (the second quick-start command)."""
    blocks = re.findall(r"```sh\n(.*?)\n```", README.split("## Quick start", 1)[1], flags=re.S)
    test_command = blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.replace("python3.11", '"$PY"') in ci


def test_every_command_has_help():
    for cmd in ("serve", "lookup", "check", "connectors", "simulate"):
        out = subprocess.run([sys.executable, "-c", "import sys; from dialwhom.cli import main; sys.exit(main(sys.argv[1:]))", cmd, "--help"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage: dialwhom" in out.stdout


def test_nothing_cites_a_file_the_repository_does_not_contain():
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    for name in tracked:
        if not name.endswith((".py", ".md", ".toml", ".yaml", ".cfg", ".txt")) or name == "CHANGELOG.md":
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        outside = ("/" + "work/", "shared" + "/docs")  # spelt apart so this file passes its own check
        assert not any(o in text for o in outside), f"{name} cites a path outside the repository"
        for cited in set(re.findall(r"\b(docs/[\w/.-]+\.md)", text)):
            assert (ROOT / cited).exists(), f"{name} cites {cited}, which the repository does not contain"
