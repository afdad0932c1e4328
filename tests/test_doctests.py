"""The ``>>>`` examples in docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "hybridnb", "hybridnb.errors", "hybridnb.config", "hybridnb.config.units",
    "hybridnb.config.layers", "hybridnb.config.problems", "hybridnb.config.backends",
    "hybridnb.state", "hybridnb.cleanup", "hybridnb._lazy", "hybridnb.fileio",
    "hybridnb.config.tags", "hybridnb.sites.registry", "hybridnb.placement",
    "hybridnb.notebooks.secrets", "hybridnb.notebooks.records", "hybridnb.notebooks.sweep",
    "hybridnb.cli.notebooks",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, hybridnb_home):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
