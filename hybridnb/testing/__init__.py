"""Test fixtures shipped with hybridnb: several hosts on one machine, an sshd in one, the
hybrid case (onprem, cloud and edge hosts) built from them.

Names resolve lazily (PEP 562), so importing this package loads nothing heavy.
The pytest fixtures live in :mod:`hybridnb.testing.pytest_plugin`.

>>> from hybridnb.testing import NetnsHosts, skip_reason   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "NetnsHosts": "hybridnb.testing.netns",
    "NetnsHost": "hybridnb.testing.netns",
    "HostCommandError": "hybridnb.testing.netns",
    "available": "hybridnb.testing.netns",
    "skip_reason": "hybridnb.testing.netns",
    "cleanup_stale": "hybridnb.testing.netns",
    "wait_for_port": "hybridnb.testing.netns",
    "leftovers": "hybridnb.testing.netns",
    "SSHDaemon": "hybridnb.testing.sshd",
    "HybridCase": "hybridnb.testing.hybrid_case",
    "sshd_skip_reason": "hybridnb.testing.sshd",
    "wait_until": "hybridnb.testing.waiting",
    "stop_processes": "hybridnb.testing.waiting",
    "running_children": "hybridnb.testing.waiting",
    "make_notebook": "hybridnb.testing.notebooks",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hybridnb.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
