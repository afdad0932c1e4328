"""Small notebooks written on the spot, for tests and benchmarks of ``hybridnb run``/``sweep``.

>>> import tempfile, pathlib
>>> path = make_notebook(pathlib.Path(tempfile.mkdtemp()) / "nb.ipynb", ["y = x + 1"])
>>> import nbformat; nb = nbformat.read(path, as_version=4)
>>> [c.source for c in nb.cells], nb.cells[0].metadata["tags"]
(['x = 1', 'y = x + 1'], ['parameters'])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def make_notebook(
    path: str | Path,
    cells: Sequence[str],
    parameters: str | None = "x = 1",
    *,
    kernel: str = "python3",
) -> Path:
    """Write a notebook of code ``cells`` after a cell tagged ``parameters``.

    Parameters
    ----------
    path:
        Where to write it (parent directories are made; the write is atomic).
    cells:
        Source of each code cell, in order.
    parameters:
        Source of the cell tagged ``parameters`` (papermill's defaults), or ``None`` for
        a notebook without one.
    kernel:
        The kernelspec name the notebook asks for.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = make_notebook(pathlib.Path(tempfile.mkdtemp()) / "a" / "b.ipynb", ["pass"],
    ...                   parameters="lr = 0.1")
    >>> p.name, p.exists()
    ('b.ipynb', True)
    """
    import nbformat

    from ..fileio import atomic_write_text

    if isinstance(cells, str):
        raise TypeError("cells: give a list of cell sources, e.g. ['y = x + 1']")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    code = [nbformat.v4.new_code_cell(source) for source in cells]
    if parameters is not None:
        params = nbformat.v4.new_code_cell(parameters)
        params.metadata["tags"] = ["parameters"]
        code.insert(0, params)
    nb.cells = code
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, nbformat.writes(nb))
