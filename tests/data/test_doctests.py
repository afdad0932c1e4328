"""The ``>>>`` examples of hybridnb.data run (those not marked to skip)."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = ["hybridnb.data", "hybridnb.data.dataset", "hybridnb.data.datasets",
           "hybridnb.data.readers", "hybridnb.data.steps", "hybridnb.data.transforms",
           "hybridnb.data.cache", "hybridnb.data.shards", "hybridnb.data.summary",
           "hybridnb.data.pipeline", "hybridnb.data.loader"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, hybridnb_home):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_importing_the_package_stays_cheap():
    code = ("import sys, hybridnb.data; "
            "print([m for m in ('dask', 'pandas', 'torch', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
