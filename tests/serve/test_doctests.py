"""The ``>>>`` examples in hybridnb.serve's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hybridnb.serve", "hybridnb.serve.graph", "hybridnb.serve.bundle",
           "hybridnb.serve.settings", "hybridnb.serve.metrics", "hybridnb.serve.admission",
           "hybridnb.serve.auth", "hybridnb.serve.protocol", "hybridnb.serve.app",
           "hybridnb.serve.server", "hybridnb.serve.cache", "hybridnb.serve.router",
           "hybridnb.serve.router_app", "hybridnb.serve.autoscale", "hybridnb.serve.render",
           "hybridnb.serve.endpoint"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, hybridnb_home):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_import_is_lazy():
    import subprocess
    import sys

    code = ("import sys, hybridnb.serve; print([m for m in ('torch', 'starlette', 'numpy') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
