"""Issue 12, break 6: config input is bounded (aliases, ${ENV} expansion, size, nesting)."""

from __future__ import annotations

import sample
import time

import pytest

from dialwhom.routing import config
from dialwhom.routing.config import ConfigError, load


def _bomb() -> str:
    """Nine levels of nine aliases: under 1 KB of YAML, 9**9 strings once expanded."""
    lines = ['a0: &a0 "${HOME:-x}"']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_1kb_alias_bomb_fails_fast_with_a_clear_error(tmp_path):
    text = _bomb()
    assert len(text) < 1024
    path = tmp_path / "dialwhom.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert time.monotonic() - started < 2.0
    assert "MAX_CONFIG_VALUES" in str(exc.value) and "alias" in str(exc.value)


def test_a_recursive_alias_is_refused_by_the_nesting_limit(tmp_path):
    path = tmp_path / "dialwhom.yaml"
    path.write_text("fallback: &loop [*loop]\n")
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert "MAX_CONFIG_DEPTH" in str(exc.value)


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_CONFIG_BYTES", 1000)
    path = tmp_path / "dialwhom.yaml"
    path.write_text("fallback: ['+918000000000']\n" + "# padding\n" * 200)
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert "over the 1000-byte limit (MAX_CONFIG_BYTES)" in str(exc.value)


def test_env_expansion_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_EXPANDED_CHARS", 10_000)
    path = tmp_path / "dialwhom.yaml"
    path.write_text("fallback: ['+918000000000']\nlog_level: ${BIG}\n")
    with pytest.raises(ConfigError) as exc:
        load(path, environ={"BIG": "x" * 20_000})
    assert exc.value.key == "log_level" and "MAX_EXPANDED_CHARS" in str(exc.value)


def test_an_ordinary_config_with_aliases_still_loads(tmp_path):
    path = tmp_path / "dialwhom.yaml"
    path.write_text("teams:\n  north: {backup: &b ['+919800000002']}\n  south: {backup: *b}\nfallback: ['+918000000000']\n")
    settings = load(path)
    assert settings.teams["south"] == (sample.VIKRAM,)
