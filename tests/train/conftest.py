"""Fixtures of the training tests: tiny specs and an isolated state store."""

from __future__ import annotations

import pytest

from hybridnb.state import StateStore


def tiny(**overrides):
    """A spec that trains a few steps of the digits CNN: seconds, not minutes."""
    spec = {"name": "tiny", "model": "digits_cnn", "data": "digits", "epochs": 1,
            "max_steps": 6, "batch_size": 16, "log_every": 1, "seed": 7,
            "optimizer": {"name": "adam", "lr": 0.003}}
    spec.update(overrides)
    return spec


@pytest.fixture
def store(hybridnb_home):
    return StateStore()
