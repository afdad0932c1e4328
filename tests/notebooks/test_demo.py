"""``hybridnb demo``: the quickstart notebook headless, a summary, the files it names."""

from __future__ import annotations

import pytest

from hybridnb.cli import main
from hybridnb.cli.demo import summary


def test_summary_lines():
    lines = summary({"test_accuracy": 0.975, "p50_ms": 4.2, "p99_ms": 20.0,
                     "alerts_fired": [], "precision": "fp32", "train_seconds": 9.0})
    assert lines[0].endswith("97.50 %") and "p99 20.0 ms" in lines[1]
    assert "none" in lines[3] and "fp32" in lines[4]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_reaches_97_percent_and_writes_report_and_plots(hybridnb_home, capsys):
    out = hybridnb_home / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("test accuracy")[1].split("%")[0])
    assert accuracy >= 97.0, text
    assert "EndpointLatencyHigh" in text and "p99" in text
    for name in ("00_quickstart.ipynb", "00_quickstart.html", "dashboard.png", "training.png"):
        assert (out / name).is_file() and str(out / name) in text
    from hybridnb.state import StateStore

    assert [r for r in StateStore().list(active=True) if r.kind.value != "notebook"] == []


def test_failing_demo_names_the_cell(hybridnb_home, capsys):
    out = hybridnb_home / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "0"]) == 3
    err = capsys.readouterr().err
    assert "failed at cell" in err and "epochs" in err
    assert (out / "00_quickstart.ipynb").is_file()
