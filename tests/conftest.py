"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest

# Reusable fixtures shipped with the package (network-namespace hosts, sshd).
pytest_plugins = ["hybridnb.testing.pytest_plugin"]


@pytest.fixture
def hybridnb_home(tmp_path, monkeypatch):
    """An isolated user: empty HOME, config dirs and state home under ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("HYBRIDNB_CONFIG", raising=False)
    monkeypatch.setenv("HYBRIDNB_SYSTEM_CONFIG", str(tmp_path / "etc" / "hybridnb.yaml"))
    monkeypatch.setenv("HYBRIDNB_HOME", str(tmp_path / "state"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path
