"""Small notebooks written by the tests themselves."""

from __future__ import annotations

import nbformat
import pytest


def make_notebook(path, parameters: str, *cells: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebook(hybridnb_home):
    """A notebook that records lr * batch, fails when asked, and can sleep or die."""
    path = hybridnb_home / "work" / "train.ipynb"
    return make_notebook(
        path,
        "lr = 0.1\nbatch = 32\nfail = False\nsleep = 0.0\ndie = False",
        "import time, os, hybridnb\ntime.sleep(sleep)",
        "if fail:\n    raise ValueError(f'bad lr {lr}')",
        "if die:\n    os._exit(1)",
        "score = lr * batch\nhybridnb.record('score', score)\nprint('score', score)",
    )
