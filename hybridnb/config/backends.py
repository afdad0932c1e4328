"""Which site backends exist, by name, without importing them.

Built-in backends are listed in :data:`BUILTIN_BACKENDS`; plug-ins declare an entry point
in the ``hybridnb.site_backends`` group (the built-ins are declared there too, so both are
found the same way in an installed package). Only names are read here: configuration
validation must not import Dask or Kubernetes clients.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from .models import BUILTIN_BACKENDS

ENTRY_POINT_GROUP = "hybridnb.site_backends"
_registered: list[str] = []  # names added at run time (hybridnb.sites.register_backend)


def add_backend_name(name: str) -> None:
    """Accept ``name`` as a backend in configuration (for run-time registrations)."""
    if name not in _registered:
        _registered.append(name)


def remove_backend_name(name: str) -> None:
    """Stop accepting a run-time registered ``name`` (built-ins and entry points stay)."""
    if name in _registered:
        _registered.remove(name)


def backend_names() -> tuple[str, ...]:
    """Names of every known backend, built-ins first.

    >>> "local" in backend_names()
    True
    """
    names = list(_entry_point_names())
    names += [n for n in _registered if n not in names]
    return tuple(names)


@lru_cache(maxsize=1)
def _entry_point_names() -> tuple[str, ...]:
    names = list(BUILTIN_BACKENDS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in names:
            names.append(ep.name)
    return tuple(names)
