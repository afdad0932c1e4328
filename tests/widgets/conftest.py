"""Fixtures for the panel tests: an isolated user, and panels closed at the end."""

from __future__ import annotations

import pytest


@pytest.fixture
def panels(hybridnb_home):
    """Make panels through ``panels(Class, **kw)``; every one is closed afterwards."""
    made = []

    def make(cls, **kwargs):
        panel = cls(**kwargs)
        made.append(panel)
        return panel

    yield make
    for panel in reversed(made):
        panel.close()
