"""The ``>>>`` examples in every module's docstrings run (those not marked to skip)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hybridnb

# __main__ modules run the CLI on import.
SKIP = {"hybridnb.__main__"}
MODULES = ["hybridnb", *sorted(
    m.name for m in pkgutil.walk_packages(hybridnb.__path__, prefix="hybridnb.")
    if m.name not in SKIP)]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, hybridnb_home):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
