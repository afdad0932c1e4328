"""Lazy public APIs (PEP 562): a package lists ``name -> "module:attr"`` and pays for an
import only when a name is first used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str], extra: Iterable[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` resolving the names in ``table``
    (``"module:attr"``, or ``"module"`` for a submodule).

    >>> getattr_, dir_ = lazy_exports("hybridnb", {"UsageError": "hybridnb.errors:UsageError"})
    >>> getattr_("UsageError").__name__
    'UsageError'
    """
    names = sorted({*table, *extra})

    def __getattr__(name: str) -> Any:
        try:
            target = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, _, attr = target.partition(":")
        # "pkg.mod" without ":attr" exports the submodule itself (hybridnb.widgets).
        value = importlib.import_module(module)
        if attr:
            value = getattr(value, attr)
        sys.modules[package].__dict__[name] = value  # resolve once
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
