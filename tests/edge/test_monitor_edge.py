"""Edge sites from the centre: ingestion counted exactly once, up/down/unreachable, and
the alert rule (evaluated embedded and by promtool)."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from hybridnb.monitor import Collector, SampleStore, default_rules, rules_yaml
from hybridnb.monitor.edge import EDGE_JOB, EdgeIngest, EdgeState
from hybridnb.serve.edge import push
from hybridnb.testing.waiting import wait_until

from .conftest import infer_body

INFER = "/v2/models/mlp/infer"


def agent_counter(text: str) -> float:
    """The agent's own count of answered requests (its ``/metrics``)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hybridnb_endpoint_requests_total{"))


def forwarded_counter(store: SampleStore, site: str) -> float:
    """The centre's latest forwarded value of the edge endpoint's request counter."""
    return sum(float(values[-1]) for _, labels, _, values in
               store.select("hybridnb_endpoint_requests_total") if labels["site"] == site)


@pytest.mark.slow
def test_what_the_edge_buffered_is_counted_once_even_when_sent_twice(agent_factory, bundles,
                                                                    tmp_path):
    agent = agent_factory()
    client = agent.client()
    push(bundles["v1"].path, client=client, site="edge")
    with httpx.Client(base_url=agent.front_url) as local:
        answers = [local.post(INFER, json=infer_body([[0.1] * 8])).status_code
                   for _ in range(30)]
    assert answers == [200] * 30
    counted = agent_counter(client.metrics())
    assert counted == 30
    # A snapshot of the counters after the last request is in the buffer.
    wait_until(lambda: any(kind == "metrics" and sum(v for n, _, v in body["s"] if n ==
                                                     "hybridnb_endpoint_requests_total") == 30
                           for _, _, kind, body in client.records(0).records),
               timeout=20, what="a snapshot after the requests")
    store = SampleStore(tmp_path / "central.db", retention="1d")
    ingest = EdgeIngest("edge", client, store)
    page = ingest.pull()
    new = ingest.commit(page)
    assert new == len(page.records) > 30
    assert ingest.commit(page) == 0  # the same page again (its ack was lost): nothing new
    restarted = EdgeIngest("edge", agent.client(), store)  # a centre that restarted
    stale = restarted.client.records(0)  # the agent still holds them all (no ack yet)
    assert restarted.commit(stale) == len(stale.records) - len(page.records)
    assert ingest.request_count() == 30
    assert forwarded_counter(store, "edge") == 30
    status = restarted.check()  # pull what is left, store it, acknowledge
    assert status.state is EdgeState.up and status.version == "1"
    assert restarted.request_count() == 30 and forwarded_counter(store, "edge") == counted
    assert len(client.records(0).records) <= 2  # acknowledged: deleted (a new snapshot or so)
    log = restarted.request_log()
    assert list(log.columns) == ["time", "route", "code", "seconds", "version"]
    assert set(log["code"]) == {200} and len(log) == 30
    assert set(log["route"]) == {"/v2/models/{name}/infer"}  # the template: bounded
    restarted.close()
    ingest.close()


@pytest.mark.slow
def test_up_down_and_unreachable_are_distinct_and_the_rule_fires(agent_factory, bundles,
                                                                tmp_path):
    agent = agent_factory()
    rules = [r for r in default_rules(edge_unreachable_minutes=0)
             if r.name in ("EdgeSiteUnreachable", "TargetDown")]
    collector = Collector(interval=0.5, store_path=tmp_path / "m.db", discover=False,
                          host=False, rules=rules)
    source = EdgeIngest("edge", agent.client(timeout=1.0), collector.store, interval=0.2)
    collector.add_source(source)
    try:
        collector.collect_once()
        (health,) = collector.health()
        assert health["state"] == "down" and not health["up"]  # reachable, nothing serves
        with agent.client() as client:
            push(bundles["v1"].path, client=client, site="edge")
        wait_until(lambda: collector.collect_once() and collector.health()[0]["state"] == "up",
                   timeout=20, what="the site up")
        assert collector.alerts.firing() == []
        contact = collector.health()[0]["last_contact"]
        assert agent.stop() == 0  # from the centre, a dead agent and a dead link look alike
        wait_until(lambda: collector.collect_once() and
                   collector.health()[0]["state"] == "unreachable", timeout=20,
                   what="the site unreachable")
        health = collector.health()[0]
        assert health["last_contact"] == contact and health["since_contact_seconds"] > 0
        firing = collector.alerts.firing()
        assert [a.alert for a in firing] == ["EdgeSiteUnreachable"]  # not TargetDown
        assert firing[0].labels["site"] == "edge" and firing[0].labels["job"] == EDGE_JOB
        assert "unreachable" in collector._repr_html_()
        assert source.status() is not None and "unreachable" in repr(source.status())
    finally:
        collector.stop()


PROMTOOL_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="hybridnb-edge",instance="10.0.3.7:8443",site="shop"}'
        values: '1 1 0 0 0 0 0 0 0 0'
      - series: 'up{job="hybridnb-endpoint",instance="a:1"}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: EdgeSiteUnreachable
        exp_alerts: []
      - eval_time: 8m
        alertname: EdgeSiteUnreachable
        exp_alerts:
          - exp_labels: {severity: warning, job: hybridnb-edge, instance: "10.0.3.7:8443",
                         site: shop}
            exp_annotations:
              summary: "an edge site cannot be reached from the centre: it serves locally \\
                and buffers its metrics until the link returns"
      - eval_time: 8m
        alertname: TargetDown
        exp_alerts: []
"""


def test_the_shipped_rule_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus'; CI installs it)")
    (tmp_path / "rules.yml").write_text(rules_yaml(default_rules()))
    (tmp_path / "tests.yml").write_text(PROMTOOL_TESTS)
    out = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_exports_ship_the_edge_rule(tmp_path, hybridnb_home):
    from hybridnb.monitor import write_exports

    write_exports(tmp_path / "out", targets=[])
    text = (tmp_path / "out" / "rules.yml").read_text()
    assert "EdgeSiteUnreachable" in text and 'up{job!="hybridnb-edge"} == 0' in text
