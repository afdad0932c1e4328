"""Fixtures for cluster tests: a hybrid cloud of local-backend sites on loopback."""

from __future__ import annotations

import pytest

from hybridnb.config import load_config
from hybridnb.sites import security
from hybridnb.state import StateStore


def two_site_config(**extra):
    """onprem (private, may hold pii) and cloud (public, public data only), both local."""
    sites = {
        "onprem": {"tier": "private", "backend": "local", "tls": False,
                   "capacity": {"cpu": 2, "memory": "4GiB"},
                   "classifications": ["public", "internal", "pii"]},
        "cloud": {"tier": "public", "backend": "local", "tls": False,
                  "capacity": {"cpu": 2, "memory": "4GiB"}, "classifications": ["public"]},
    }
    for name, body in extra.pop("sites", {}).items():
        sites[name] = body
    return load_config(overrides={
        "sites": sites,
        "datasets": {"patients": {"site": "onprem", "path": "/data/p.parquet",
                                  "classification": "pii"},
                     "weather": {"site": "cloud", "path": "/data/w.parquet",
                                 "classification": "public"}},
        **extra})


@pytest.fixture
def store(hybridnb_home):
    return StateStore()


@pytest.fixture
def hybrid_config(hybridnb_home):
    return two_site_config()


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget which sites were already warned about in this process (once per site)."""
    monkeypatch.setattr(security, "_warned", set())


def listening(pid: int, port: int | None = None) -> set[tuple[str, int]]:
    """``(address, port)`` of the TCP sockets process ``pid`` listens on (this network
    namespace), optionally only on ``port``."""
    import psutil

    return {(c.laddr.ip, c.laddr.port)
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and (port is None or c.laddr.port == port)}
