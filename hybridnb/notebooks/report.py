"""The HTML report of a notebook run: a summary first, then the notebook, figures inlined.

The summary says what someone opening the report wants first: how the run ended and how
long it took, the parameters it ran with (each with its default and the comment of the
``parameters`` cell), the key results (what the notebook recorded with
:func:`hybridnb.record`), and links to the executed notebook and the plots beside it.

>>> format_value(0.98134, "test_accuracy"), format_value(12.3456, "p99_ms")
('98.13 %', '12.35')
>>> format_value({"train": 1437, "test": 180}, "samples")
'train 1437, test 180'
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from typing import Any

from .records import format_value

logger = logging.getLogger(__name__)

#: Files beside the report that the summary links to.
LINKED = ("*.png", "*.svg", "*.html", "*.csv", "*.json")
MAX_LINKS = 20

_STYLE = """
<style>
.hybridnb-summary { font-family: var(--jp-ui-font-family, sans-serif); margin: 0 0 2em 0; }
.hybridnb-summary h1 { font-size: 1.6em; margin: 0 0 0.3em 0; }
.hybridnb-summary .outcome { font-weight: 600; }
.hybridnb-summary .ok { color: #2e7d32; } .hybridnb-summary .bad { color: #c62828; }
.hybridnb-summary table { border-collapse: collapse; margin: 0.4em 0 1em 0; }
.hybridnb-summary th, .hybridnb-summary td { border: 1px solid #ddd; padding: 3px 10px;
  text-align: left; vertical-align: top; }
.hybridnb-summary th { background: #f2f2f2; }
.hybridnb-summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
.hybridnb-summary .muted { color: #777; }
.hybridnb-summary .error { color: #c62828; white-space: pre-wrap; }
</style>
"""


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _declared(notebook: Path) -> dict[str, dict[str, Any]]:
    """The parameters the notebook declares: default (as written) and its comment."""
    try:
        import papermill

        return dict(papermill.inspect_notebook(str(notebook)))
    except Exception as exc:  # a report without defaults beats no report
        logger.debug("cannot read the parameters of %s: %s", notebook, exc)
        return {}


def summary_html(notebook: Path, *, parameters: dict[str, Any] | None = None,
                 records: dict[str, Any] | None = None, outcome: str | None = None,
                 seconds: float | None = None, error: str | None = None,
                 failed_cell: int | None = None) -> str:
    """The summary block that opens the report (HTML)."""
    parameters = dict(parameters or {})
    records = dict(records or {})
    declared = _declared(notebook)
    ok = outcome in (None, "succeeded")
    state = escape(outcome or "ran")
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    parts = [_STYLE, '<div class="hybridnb-summary">',
             f"<h1>{escape(notebook.stem)}</h1>",
             f'<p class="outcome {"ok" if ok else "bad"}">{state}{took}</p>']
    if error:
        where = f" at cell [{failed_cell}]" if failed_cell is not None else ""
        parts.append(f'<p class="error">failed{escape(where)}: {escape(error)}</p>')
    # Parameters: every declared one with the value it ran with, then any extra.
    rows = []
    for name, info in declared.items():
        default = str(info.get("default", ""))
        if name in parameters:
            value, note = format_value(parameters.pop(name), name), f"set (default {default})"
        else:
            value, note = default, "default"
        about = str(info.get("help") or "")
        rows.append((name, value, note, about))
    rows += [(name, format_value(v, name), "not declared", "") for name, v in
             parameters.items()]
    if rows:
        body = "".join(f"<tr><td><code>{escape(n)}</code></td><td>{escape(v)}</td>"
                       f'<td class="muted">{escape(note)}</td><td>{escape(about)}</td></tr>'
                       for n, v, note, about in rows)
        parts.append("<h2>Parameters</h2><table><thead><tr><th>parameter</th>"
                     "<th>value</th><th>set</th><th>about</th></tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    if records:
        cells = []
        for k, v in records.items():
            align = ' class="num"' if _numeric(v) else ""
            cells.append(f"<tr><td>{escape(k.replace('_', ' '))}</td>"
                         f"<td{align}>{escape(format_value(v, k))}</td></tr>")
        body = "".join(cells)
        parts.append("<h2>Results</h2><table><thead><tr><th>result</th><th>value</th>"
                     f"</tr></thead><tbody>{body}</tbody></table>")
    beside = sorted({p for pattern in LINKED for p in notebook.parent.glob(pattern)
                     if p != notebook.with_suffix(".html")})
    links = [notebook, *beside[:MAX_LINKS]]
    items = "".join(f'<li><a href="{escape(p.name)}">{escape(p.name)}</a></li>'
                    for p in links)
    parts.append(f"<h2>Files</h2><ul>{items}</ul></div>")
    return "".join(parts)


def write_report(notebook: Path, *, parameters: dict[str, Any] | None = None,
                 records: dict[str, Any] | None = None, outcome: str | None = None,
                 seconds: float | None = None, error: str | None = None,
                 failed_cell: int | None = None) -> Path:
    """An HTML report of an executed notebook beside it (``.html``): the summary, then
    the notebook with figures inlined and input prompts hidden.

    >>> write_report(Path("build/demo/00_quickstart.ipynb"),  # doctest: +SKIP
    ...              records={"test_accuracy": 0.98})
    PosixPath('build/demo/00_quickstart.html')
    """
    import nbformat
    from nbconvert import HTMLExporter

    from ..fileio import atomic_write_text

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    head = summary_html(notebook, parameters=parameters, records=records, outcome=outcome,
                        seconds=seconds, error=error, failed_cell=failed_cell)
    # A markdown cell of HTML: nbconvert renders it in the notebook's own styles.
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    # nbconvert warns per figure without alt text; a report is no place for that noise.
    exporter.log.setLevel(logging.ERROR)
    body, _ = exporter.from_notebook_node(nb)
    return atomic_write_text(notebook.with_suffix(".html"), body)
