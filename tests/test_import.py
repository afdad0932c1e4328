"""``import hybridnb`` stays cheap, and the lazy public API resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import hybridnb

HEAVY = ("torch", "dask", "distributed", "matplotlib", "jupyter_core", "jupyterlab",
         "ipywidgets", "papermill", "pydantic", "pandas", "numpy")


def test_import_loads_no_heavy_module():
    code = ("import sys, json, hybridnb; "
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize("name", sorted(hybridnb._LAZY))
def test_lazy_names_resolve(name):
    assert getattr(hybridnb, name) is not None
    assert name in dir(hybridnb)


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hybridnb.nope  # noqa: B018
