"""``hybridnb monitor``: what runs, with values (requests/s, p99), and alerts or "none"."""

from __future__ import annotations

import threading

import torch

import hybridnb
from hybridnb.cli import main
from hybridnb.serve.model_bundle import bundle
from hybridnb.testing.waiting import wait_until


def test_monitor_with_nothing_running_says_none(hybridnb_home, capsys):
    assert main(["monitor", "--over", "0"]) == 0
    out = capsys.readouterr().out
    assert "targets: none" in out and "alerts firing: none" in out
    assert "┏" not in out  # no empty tables


def test_monitor_shows_requests_per_second_and_p99_of_an_endpoint(hybridnb_home, capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    b = bundle(model, torch.randn(2, 4), hybridnb_home / "mlp", name="mlp",
               labels=["a", "b", "c"])
    stop = threading.Event()
    sent = []
    with hybridnb.deploy(b, replicas=1) as endpoint:
        def traffic():
            x = torch.randn(1, 4).numpy()
            while not stop.is_set():
                endpoint.predict(x)
                sent.append(1)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            # Counted requests before the first scrape (a labelled counter has no series
            # until then); a scrape timeout that a busy machine meets.
            wait_until(lambda: len(sent) >= 3, timeout=60, what="the first requests")
            assert main(["monitor", "--over", "1", "--timeout", "10"]) == 0
        finally:
            stop.set()
            thread.join(timeout=30)
    out = capsys.readouterr().out
    assert "requests/s" in out and "p99" in out
    (row,) = [line for line in out.splitlines() if endpoint.url.split("//")[1] in line]
    cells = [c.strip() for c in row.split("│") if c.strip()]
    rate, p99 = cells[4], cells[5]
    assert float(rate) > 0 and len(sent) > 0
    assert p99.endswith(" ms") and float(p99.split()[0]) > 0
    assert "alerts firing: none" in out
