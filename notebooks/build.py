"""Generate the notebooks in this directory from their sources in ``notebooks/src/``.

    python notebooks/build.py            # rewrite every .ipynb here (make notebooks)
    python notebooks/build.py --check    # exit 1, naming them, if any .ipynb is stale
    python notebooks/build.py --out DIR  # write them to DIR instead

Each source is a Python file in jupytext's percent format: ``# %%`` starts a code cell,
``# %% [markdown]`` a markdown one (its lines commented), and the one cell that papermill
(``hybridnb run``) overrides is ``# %% tags=["parameters"]``. The sources are linted by
ruff and type-checked by mypy like the package. Adding a notebook is adding a source:
``notebooks/src/NN_name.py`` becomes ``notebooks/NN_name.ipynb``.

The generated files carry no outputs, the python3 kernel and stable cell ids
(``NN-00``, ``NN-01``, ...), and keep only the ``tags`` of each cell, so a change to a
source shows up as a small, reviewable diff of its .ipynb.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jupytext
import nbformat
from nbformat.notebooknode import NotebookNode

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def sources(src: Path = SRC) -> list[Path]:
    """The notebook sources, in order (files starting with ``_`` are not notebooks)."""
    return sorted(p for p in src.glob("*.py") if not p.name.startswith("_"))


def build(source: Path) -> NotebookNode:
    """The notebook a source generates: no outputs, stable cell ids, the python3 kernel."""
    parsed = jupytext.read(source, fmt="py:percent")
    prefix = source.stem.split("_")[0]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(parsed.cells):
        if cell.cell_type == "markdown":
            fresh = nbformat.v4.new_markdown_cell(cell.source)
        elif cell.cell_type == "code":
            fresh = nbformat.v4.new_code_cell(cell.source)
        else:
            raise SystemExit(f"{source}: cell {i} is a {cell.cell_type} cell; "
                             "write markdown (# %% [markdown]) or code (# %%)")
        fresh.id = f"{prefix}-{i:02d}"
        tags = list(cell.metadata.get("tags", []))
        if tags:
            fresh.metadata["tags"] = tags
        nb.cells.append(fresh)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise SystemExit(f'{source}: needs exactly one # %% tags=["parameters"] cell '
                         f"(papermill's), found {len(tagged)}")
    nbformat.validate(nb)
    return nb


def render(source: Path) -> str:
    """The .ipynb text a source generates, as :func:`nbformat.writes` formats it."""
    return nbformat.writes(build(source)) + "\n"


def write_all(out: Path = HERE, src: Path = SRC) -> list[Path]:
    """Write every notebook to ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sources(src):
        path = out / f"{source.stem}.ipynb"
        text = render(source)
        # Unchanged files are left alone (their mtime too: make's labextension rule
        # depends on the quickstart).
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def stale(out: Path = HERE, src: Path = SRC) -> list[str]:
    """What ``--check`` reports: notebooks that differ from, or lack, a source."""
    problems = []
    expected = {f"{s.stem}.ipynb": s for s in sources(src)}
    for name, source in expected.items():
        path = out / name
        if not path.exists():
            problems.append(f"{name}: missing (generated from {source.name})")
        elif path.read_text(encoding="utf-8") != render(source):
            problems.append(f"{name}: differs from src/{source.name}")
    for path in sorted(out.glob("*.ipynb")):
        if path.name not in expected:
            problems.append(f"{path.name}: no source src/{path.stem}.py (add one or delete it)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write them")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.out)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python notebooks/build.py (make notebooks)", file=sys.stderr)
        return 1 if problems else 0
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
