"""Rules: definition errors, the pending → firing → resolved lifecycle, webhooks, promtool."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hybridnb.errors import UsageError
from hybridnb.monitor import AlertManager, Rule, SampleStore, default_rules, load_rules
from hybridnb.monitor.alerts import rules_yaml


def test_unknown_key_and_bad_expression_are_errors_at_definition():
    with pytest.raises(UsageError, match=r"rule 'A': unknown key 'severty' .*'severity'"):
        Rule(name="A", expr="up == 0", severty="critical")
    with pytest.raises(UsageError, match=r"rule 'B': invalid expression 'up =='"):
        Rule(name="B", expr="up ==")
    with pytest.raises(UsageError, match="rule 'C': unknown metric 'hybridnb_endpoint_qeue"):
        Rule(name="C", metric="hybridnb_endpoint_qeue_depth", above=3)
    with pytest.raises(UsageError, match="rule 'D': severity"):
        Rule(name="D", expr="up == 0", severity="page")
    with pytest.raises(UsageError, match="invalid duration"):
        Rule(name="E", expr="up == 0", **{"for": "five"})
    with pytest.raises(UsageError, match=r"unknown key 'rule' in rules.*'rules'"):
        load_rules({"rule": []})


def test_yaml_rules(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text("rules:\n- name: QueueLong\n  metric: hybridnb_endpoint_queue_depth\n"
                    "  above: 10\n  for: 30s\n  severity: critical\n  labels: {team: ml}\n")
    [rule] = load_rules(path)
    assert rule.expr == "hybridnb_endpoint_queue_depth > 10.0" and rule.for_seconds == 30


class Receiver:
    """A loopback webhook receiver that keeps every JSON body it gets."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def test_lifecycle_and_webhook(tmp_path):
    store = SampleStore(tmp_path / "m.db")
    rx = Receiver()
    try:
        rules = [r for r in default_rules() if r.name == "TargetDown"]
        am = AlertManager(rules, store, webhook=rx.url)
        labels = {"job": "hybridnb-endpoint", "instance": "127.0.0.1:1"}
        states = []
        for t, up in ((0, 1), (10, 0), (40, 0), (75, 0), (90, 1), (100, 1)):
            store.append([("up", labels, float(up))], ts=float(t))
            states += [(t, e.state) for e in am.evaluate(float(t))]
        assert states == [(10, "pending"), (75, "firing"), (90, "resolved")]
        assert [b["status"] for b in rx.bodies] == ["firing", "resolved"]
        alert = rx.bodies[0]["alerts"][0]
        assert alert["labels"]["alertname"] == "TargetDown"
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["instance"] == "127.0.0.1:1"
        html = am.history._repr_html_()
        assert "TargetDown" in html and "firing" in html
        assert list(am.history.to_frame()["state"]) == ["pending", "firing", "resolved"]
    finally:
        rx.stop()


def test_failed_webhook_is_logged_not_raised(tmp_path, closed_port, caplog):
    store = SampleStore(tmp_path / "m.db")
    am = AlertManager([Rule(name="Down", expr="up == 0")], store,
                      webhook=f"http://127.0.0.1:{closed_port}/", webhook_timeout=1)
    store.append([("up", {"job": "x"}, 0.0)], ts=5.0)
    assert [e.state for e in am.evaluate(5.0)] == ["firing"]
    assert "alert webhook" in caplog.text
    assert len(am.firing()) == 1


def test_exported_rules_pass_promtool(tmp_path, promtool):
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml(default_rules()))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


PROMTOOL_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="hybridnb-endpoint",instance="a:1"}'
        values: '1 0 0 0'
      - series: 'hybridnb_train_last_step_timestamp_seconds{job="hybridnb-train",run="r"}'
        values: '0x30'
      - series: 'hybridnb_endpoint_requests_total{instance="a:1",code="200",route="r"}'
        values: '0+100x20'
      - series: 'hybridnb_endpoint_requests_total{instance="a:1",code="500",route="r"}'
        values: '0+20x20'
      - series: 'hybridnb_endpoint_request_duration_seconds_bucket{instance="a:1",le="0.1"}'
        values: '0+10x20'
      - series: 'hybridnb_endpoint_request_duration_seconds_bucket{instance="a:1",le="1"}'
        values: '0+100x20'
      - series: 'hybridnb_endpoint_request_duration_seconds_bucket{instance="a:1",le="+Inf"}'
        values: '0+100x20'
      - series: 'dask_worker_memory_bytes{instance="w:1",type="managed"}'
        values: '8e9x20'
    alert_rule_test:
      - eval_time: 1m
        alertname: TargetDown
        exp_alerts: []
      - eval_time: 3m
        alertname: TargetDown
        exp_alerts:
          - exp_labels: {severity: critical, job: hybridnb-endpoint, instance: "a:1"}
            exp_annotations: {summary: "a replica, scheduler or run cannot be scraped"}
      - eval_time: 12m
        alertname: TrainingStalled
        exp_alerts:
          - exp_labels: {severity: warning, job: hybridnb-train, run: r}
            exp_annotations: {summary: "no new training step for 10 minutes"}
      - eval_time: 15m
        alertname: EndpointErrorRatioHigh
        exp_alerts:
          - exp_labels: {severity: critical, instance: "a:1"}
            exp_annotations: {summary: "more than 5% of requests answered 5xx"}
      - eval_time: 15m
        alertname: EndpointLatencyHigh
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:1"}
            exp_annotations: {summary: "p99 latency above 0.5 s"}
      - eval_time: 15m
        alertname: WorkerMemoryHigh
        exp_alerts:
          - exp_labels: {severity: warning, instance: "w:1"}
            exp_annotations: {summary: "a Dask worker holds more memory than the threshold"}
"""


def test_default_rules_pass_promtool_unit_tests(tmp_path, promtool):
    (tmp_path / "rules.yml").write_text(rules_yaml(default_rules()))
    (tmp_path / "tests.yml").write_text(PROMTOOL_TESTS)
    out = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_embedded_evaluation_agrees_with_promtool_scenario(tmp_path):
    # The same error-ratio scenario as the promtool test, evaluated embedded.
    store = SampleStore(tmp_path / "m.db", retention="1d")
    for minute in range(16):
        t = 60.0 * minute
        store.append([("hybridnb_endpoint_requests_total",
                       {"instance": "a:1", "code": "200", "route": "r"}, 100.0 * minute),
                      ("hybridnb_endpoint_requests_total",
                       {"instance": "a:1", "code": "500", "route": "r"}, 20.0 * minute)],
                     ts=t)
    am = AlertManager([r for r in default_rules() if r.name == "EndpointErrorRatioHigh"],
                      store)
    states = [(m, e.state) for m in range(16) for e in am.evaluate(60.0 * m)]
    assert states[0] == (1, "pending") and states[1] == (6, "firing")
    assert am.firing()[0].value == pytest.approx(20 / 120)
