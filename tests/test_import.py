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


def test_subpackages_resolve_as_attributes():
    # DESIGN.md writes hybridnb.serve.bundle(...): after `import hybridnb` alone, each
    # subpackage is an attribute, imported on first use (and still cheaply).
    code = ("import sys, json, hybridnb\n"
            f"names = {list(hybridnb._SUBMODULES)!r}\n"
            "mods = [getattr(hybridnb, n) for n in names]\n"
            "assert [m.__name__ for m in mods] == ['hybridnb.' + n for n in names]\n"
            "assert callable(hybridnb.serve.bundle) and callable(hybridnb.train.fit)\n"
            "print(json.dumps(['torch' in sys.modules, sorted(set(names) - set(dir(hybridnb)))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    # hybridnb.serve.bundle is a lazy name of its own: resolving it imports no torch.
    assert json.loads(out) == [False, []]


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


def _lazy_packages():
    import importlib
    import pkgutil

    for info in [None, *pkgutil.walk_packages(hybridnb.__path__, prefix="hybridnb.")]:
        if info is None or info.ispkg:
            pkg = importlib.import_module(info.name if info else "hybridnb")
            if hasattr(pkg, "_LAZY"):
                yield pkg


def test_no_public_name_is_also_a_submodule():
    # Such a name would be shadowed by the submodule once that is imported (the import
    # system binds it on the package).
    import pkgutil

    clashes = [f"{pkg.__name__}.{name}" for pkg in _lazy_packages()
               for name in sorted({m.name for m in pkgutil.iter_modules(pkg.__path__)})
               if name in pkg._LAZY and ":" in pkg._LAZY[name]]
    assert clashes == []


def test_public_callables_win_after_their_modules_are_imported():
    # In a fresh interpreter: the modules first, then the public names.
    code = ("import json, hybridnb.serve.model_bundle as m, hybridnb.serve.compress_bundle, "
            "hybridnb.serve.deployment, hybridnb.serve.endpoint, hybridnb.widgets.tabs, "
            "hybridnb.notebooks.sweeps\n"
            "from hybridnb.serve import bundle, compress, deploy\n"
            "from hybridnb.widgets import ui\n"
            "from hybridnb.notebooks import sweep\n"
            "assert bundle is m.bundle, bundle\n"
            "print(json.dumps([type(f).__name__ for f in (bundle, compress, deploy, ui, sweep)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == ["function"] * 5
