"""Metric families follow Prometheus conventions; expositions pass promtool."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

from hybridnb.monitor.names import FAMILIES, exposition, host_exposition, host_samples

MODULES = ["hybridnb.monitor", "hybridnb.monitor.names", "hybridnb.monitor.store",
           "hybridnb.monitor.promql", "hybridnb.monitor.collector", "hybridnb.monitor.query",
           "hybridnb.monitor.alerts", "hybridnb.monitor.exports", "hybridnb.monitor.plots",
           "hybridnb.exposition", "hybridnb.monitor.scrape", "hybridnb.monitor.targets"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name, hybridnb_home):
    import matplotlib

    matplotlib.use("Agg")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_import_is_lazy():
    code = ("import sys, hybridnb.monitor as m; m.__all__; print([x for x in "
            "('pandas', 'matplotlib', 'httpx', 'numpy') if x in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_conventions():
    for name, fam in FAMILIES.items():
        assert fam.type in ("counter", "gauge", "histogram")
        assert name.endswith("_total") == (fam.type == "counter"), name
        if fam.source not in ("dask", "scrape"):
            assert name.startswith("hybridnb_"), name
        if fam.unit:
            assert name.removesuffix("_total").endswith(fam.unit), name
        assert "_ms" not in name and fam.help.endswith(".")
        assert "le" not in fam.labels and "instance" not in fam.labels


def test_a_runs_gauges_are_families_with_one_help_text():
    from hybridnb.train.metrics import GAUGES, prometheus_text

    text = prometheus_text([], run="r")
    for name, (_, help_text) in GAUGES.items():
        assert FAMILIES[name].help == help_text and FAMILIES[name].source == "train"
        assert f"# HELP {name} {help_text}" in text


def test_an_endpoints_families_match_the_table():
    from prometheus_client.parser import text_string_to_metric_families

    from hybridnb.serve.metrics import EndpointMetrics

    text = EndpointMetrics().render().decode()
    exposed = {f.name + ("_total" if f.type == "counter" else ""): (f.type, f.documentation)
               for f in text_string_to_metric_families(text)
               if not f.name.endswith("_created")}  # prometheus_client's start times
    table = {n: (f.type, f.help) for n, f in FAMILIES.items() if f.source == "endpoint"}
    assert exposed == table


def test_host_metrics():
    values = dict(host_samples())
    total = values["hybridnb_host_memory_total_bytes"]
    assert total > values["hybridnb_host_memory_used_bytes"] > 0
    assert 0 <= values["hybridnb_host_cpu_utilization_ratio"] <= 1
    assert values["hybridnb_host_gpus"] >= 0


def _promtool_metrics(promtool: str, text: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=60)


def test_host_exposition_promtool_clean(promtool):
    out = _promtool_metrics(promtool, host_exposition())
    assert out.returncode == 0, out.stdout + out.stderr
    labelled = exposition([("up", {"job": 'a"b', "instance": "x:1"}, 1.0)])
    assert _promtool_metrics(promtool, labelled).returncode == 0


def test_endpoint_exposition_promtool_clean(promtool):
    from hybridnb.serve.metrics import EndpointMetrics

    m = EndpointMetrics()
    m.observe("/v2/models/{name}/infer", 200, 0.003)
    m.observe("/v2/models/{name}/infer", 500, 0.2)
    m.batch_size.observe(4)
    m.cache.labels(result="hit").inc()
    out = _promtool_metrics(promtool, m.render())
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_catches_a_bad_name(promtool):
    # The check is real: an abbreviated unit is a lint problem (exit 3).
    bad = b"# HELP x_ms Time.\n# TYPE x_ms gauge\nx_ms 1\n"
    assert _promtool_metrics(promtool, bad).returncode == 3
