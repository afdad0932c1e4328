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


@pytest.mark.parametrize("package, heavy", [
    ("hybridnb.data", ("dask", "pandas", "torch", "numpy")),
    ("hybridnb.serve", ("torch", "starlette", "numpy")),
    ("hybridnb.train", ("torch", "numpy", "pydantic")),
    ("hybridnb.monitor", ("matplotlib", "pandas", "httpx")),
    ("hybridnb.widgets", ("ipywidgets",)),
    ("hybridnb.notebooks", ("papermill", "pandas")),
    ("hybridnb.k8s", ("dask_kubernetes", "jsonschema")),
])
def test_subpackages_import_cheaply(package, heavy):
    code = (f"import sys, {package}; "
            f"print(json.dumps([m for m in {list(heavy)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == []
