"""The ``>>>`` examples in hybridnb.train run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hybridnb.train", "hybridnb.train.spec", "hybridnb.train.models",
           "hybridnb.train.data", "hybridnb.train.optim", "hybridnb.train.checkpoint",
           "hybridnb.train.metrics", "hybridnb.train.result", "hybridnb.train.k8s",
           "hybridnb.train.launch"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, hybridnb_home):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
