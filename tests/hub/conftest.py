"""The real hub the team tests share (see :mod:`hybridnb.testing.hub`)."""

from __future__ import annotations

import pytest

from hybridnb.testing.hub import Hub, free_port, running_hub

__all__ = ["Hub", "free_port", "hub_env"]


@pytest.fixture(scope="session")
def real_hub(tmp_path_factory):
    """alice (research), bob (clinical), carol (research, hybridnb admin), alice's and
    bob's servers running with hybridnb's extension; the service and a dask-gateway."""
    try:
        with running_hub(tmp_path_factory.mktemp("hub")) as hub:
            yield hub
    except RuntimeError as exc:
        if "configurable-http-proxy is missing" in str(exc):
            pytest.fail(str(exc))
        raise


def hub_env(monkeypatch: pytest.MonkeyPatch, hub: Hub, user: str) -> None:
    """Make this process look like one of ``user``'s server (for library calls)."""
    for key, value in hub.user_env(user).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(hub.base / "home" / user))
