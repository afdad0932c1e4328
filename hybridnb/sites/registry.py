"""The registry of site backends: built-ins and plug-ins, found the same way.

A plug-in declares an entry point in the ``hybridnb.site_backends`` group naming its
:class:`~hybridnb.sites.base.Backend` subclass; :func:`register_backend` adds one at run
time (tests, notebooks). Backends are imported only when a site uses them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..config.backends import (
    ENTRY_POINT_GROUP,
    add_backend_name,
    backend_names,
    remove_backend_name,
)
from ..errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from .base import Backend

# The built-ins, so they are found also when the package metadata is missing (a
# source checkout on sys.path); pyproject.toml declares the same entry points.
BUILTIN = {
    "local": "hybridnb.sites.local:LocalBackend",
    "scheduler": "hybridnb.sites.scheduler:SchedulerBackend",
    "ssh": "hybridnb.sites.ssh:SSHBackend",
    "kubernetes": "hybridnb.sites.kubernetes:KubernetesBackend",
    "gateway": "hybridnb.sites.gateway:GatewayBackend",
}
_runtime: dict[str, type[Backend]] = {}


def register_backend(name: str, cls: type[Backend]) -> None:
    """Register ``cls`` as backend ``name`` for this process (config accepts it too)."""
    _runtime[name] = cls
    add_backend_name(name)


def unregister_backend(name: str) -> None:
    """Forget a backend added by :func:`register_backend` (built-ins cannot be removed).

    >>> from hybridnb.sites.local import LocalBackend
    >>> register_backend("mine", LocalBackend); "mine" in known_backends()
    True
    >>> unregister_backend("mine"); "mine" in known_backends()
    False
    """
    _runtime.pop(name, None)
    remove_backend_name(name)


def get_backend(name: str) -> type[Backend]:
    """The backend class called ``name``.

    >>> get_backend("local").__name__
    'LocalBackend'
    """
    if name in _runtime:
        return _runtime[name]
    target = BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        known = sorted({*BUILTIN, *_runtime, *backend_names()})
        raise UsageError(f"unknown backend '{name}'{did_you_mean(name, known)}; known: "
                         f"{', '.join(known)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def known_backends() -> list[str]:
    """Names of every backend: built-ins, entry points and run-time registrations."""
    return sorted({*BUILTIN, *backend_names(), *_runtime})
