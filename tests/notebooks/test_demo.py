"""``hybridnb demo``: the quickstart notebook headless, a summary, the files it names."""

from __future__ import annotations

import pytest

from hybridnb.cli import main
from hybridnb.cli.demo import summary


def test_summary_labels_each_figure_and_says_why_the_alert_fired():
    records = {"test_accuracy": 0.975, "test_images": 178, "endpoint_accuracy": 0.975,
               "replicas_healthy": 2, "server_p99_ms": 31.2, "server_p99_one_client_ms": 6.1,
               "client_p50_ms": 40.0, "client_p99_ms": 420.0, "requests": 400,
               "concurrency": 8, "latency_alert_ms": 10.0, "alert_value_ms": 24.0,
               "alerts_fired": ["EndpointLatencyHigh"], "precision": "fp32",
               "train_seconds": 9.0}
    lines = summary(records)
    assert lines[0].startswith("test accuracy      97.50 %") and "178 test images" in lines[0]
    assert lines[1].startswith("endpoint accuracy  97.50 %")
    server = next(line for line in lines if line.startswith("server-side p99"))
    assert "31.2 ms under the burst, 6.1 ms from one client" in server
    client = next(line for line in lines if line.startswith("client-side"))
    assert "p50 40.0 ms, p99 420.0 ms" in client and "8 threads" in client
    alert = next(line for line in lines if line.startswith("alert"))
    assert "fired when server-side p99 reached 24.0 ms" in alert
    assert "10 ms threshold (during the burst)" in alert
    assert "fp32" in lines[-1]
    quiet = summary({**records, "alerts_fired": [], "alert_value_ms": None,
                     "server_p99_ms": 4.0})
    assert "did not fire: server-side p99 stayed at or under its 10 ms threshold" in quiet[4]
    busy = summary({**records, "server_p99_one_client_ms": 12.0})
    assert "(already from one client, before the burst)" in busy[4]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_reaches_97_percent_and_writes_report_and_plots(hybridnb_home, capsys):
    out = hybridnb_home / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("test accuracy")[1].split("%")[0])
    endpoint = float(text.split("endpoint accuracy")[1].split("%")[0])
    assert accuracy >= 97.0 and abs(endpoint - accuracy) <= 1.2, text  # ≤ 2 of 178 images
    stages = [line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("  [")]
    assert stages == ["1. Where should it run?", "2. Preprocess with Dask",
                      "3. Train with 2-rank DDP", "4. Deploy, send traffic, watch it",
                      "5. Monitoring", "6. Clean up"], text
    assert "server-side p99" in text and "client-side        p50" in text
    assert "EndpointLatencyHigh" in text and "10 ms threshold" in text
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
