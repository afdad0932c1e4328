"""The HTML report of a run opens with a summary: outcome, parameters, results, links."""

from __future__ import annotations

import html
import re

from hybridnb.notebooks.runner import run_notebook
from hybridnb.testing.notebooks import make_notebook


def _text(page: str) -> str:
    """The visible text of an HTML page, tags dropped, whitespace folded."""
    page = re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_report_starts_with_parameters_results_and_links(hybridnb_home):
    nb = make_notebook(
        hybridnb_home / "work" / "train.ipynb",
        ["import hybridnb\n"
         "from matplotlib.figure import Figure\n"
         "fig = Figure()\nfig.add_subplot().plot([1, 2])\nfig.savefig('loss.png')\n"
         "hybridnb.record('test_accuracy', 0.98134)\n"
         "hybridnb.record('p99_ms', 12.3456)\n"
         "hybridnb.record('alerts_fired', [])\n"
         "hybridnb.record('samples', {'train': 1437, 'test': 180})\n"
         "print('the notebook itself')"],
        parameters="lr = 0.1  # learning rate\nepochs = 3")
    (hybridnb_home / "work" / "out").mkdir()
    run = run_notebook(nb, hybridnb_home / "work" / "out" / "train.ipynb",
                       parameters={"epochs": 5}, report=True,
                       cwd=hybridnb_home / "work" / "out")
    assert run.ok, run.error
    page = run.report.read_text()
    text = _text(page)
    # The summary comes first, before any cell of the notebook.
    assert text.index("Parameters") < text.index("the notebook itself")
    assert re.search(r"train succeeded in \d+ s", text)
    assert "lr 0.1 default learning rate" in text
    assert "epochs 5 set (default 3)" in text  # set by the run, its default beside it
    assert "test accuracy 98.13 %" in text and "p99 ms 12.35" in text
    assert "alerts fired none" in text and "samples train 1437, test 180" in text
    assert '<a href="train.ipynb">' in page and '<a href="loss.png">' in page
    assert "<th>parameter</th>" in page and 'class="num"' in page


def test_report_of_a_failed_run_says_where(hybridnb_home):
    nb = make_notebook(hybridnb_home / "work" / "bad.ipynb",
                       ["raise ValueError('bad lr')"], parameters="lr = 0.1")
    run = run_notebook(nb, report=True)
    assert not run.ok
    text = _text(run.report.read_text())
    assert f"failed at cell [{run.failed_cell}]: ValueError: bad lr" in text
    assert text.index("failed at cell") < text.index("Parameters")
