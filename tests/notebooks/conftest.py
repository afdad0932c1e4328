"""Small notebooks written by the tests themselves (with hybridnb.testing.notebooks)."""

from __future__ import annotations

import pytest

from hybridnb.testing.notebooks import make_notebook


@pytest.fixture
def notebook(hybridnb_home):
    """A notebook that records lr * batch, fails when asked, and can sleep or die."""
    return make_notebook(
        hybridnb_home / "work" / "train.ipynb",
        ["import time, os, hybridnb\ntime.sleep(sleep)",
         "if fail:\n    raise ValueError(f'bad lr {lr}')",
         "if die:\n    os._exit(1)",
         "score = lr * batch\nhybridnb.record('score', score)\nprint('score', score)"],
        parameters="lr = 0.1\nbatch = 32\nfail = False\nsleep = 0.0\ndie = False",
    )
