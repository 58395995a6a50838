"""The doctests in dialwhom's own modules, imported by their installed names (not by path, which
would load a second copy of each module)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dialwhom

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(dialwhom.__path__, "dialwhom.")
    if not m.name.endswith("__main__") and m.name != "dialwhom.testing"  # runs the CLI / needs pytest's run
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
