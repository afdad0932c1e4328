"""Fixtures for data tests: isolated state, a stats cache and small real clusters."""

from __future__ import annotations

import pytest

import hybridnb
from hybridnb.state import StateStore


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def store(hybridnb_home):
    return StateStore()


@pytest.fixture
def local_cluster(store):
    """One in-process worker with two threads: a real distributed scheduler, fast."""
    with hybridnb.cluster("local", n_workers=1, threads_per_worker=2, processes=False,
                          store=store) as c:
        yield c
