"""What a real Prometheus, Grafana or Kubernetes needs: pure functions, and a writer.

- :func:`file_sd`: Prometheus file-based service discovery (JSON) for what is running.
- :func:`scrape_config`: a ``prometheus.yml`` that reads those files and the rules.
- :func:`grafana_dashboard`: a dashboard JSON for endpoints and training.
- :func:`service_monitor`, :func:`prometheus_rule`: prometheus-operator objects.
- :func:`write_exports`: all of it into one directory (``hybridnb monitor export``).

>>> from hybridnb.monitor.targets import Target
>>> file_sd([Target("hybridnb-endpoint", "127.0.0.1:8000", url="http://127.0.0.1:8000/metrics",
...                 labels=(("name", "mlp"),))])
[{'targets': ['127.0.0.1:8000'], 'labels': {'job': 'hybridnb-endpoint', 'name': 'mlp'}}]
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..state import StateStore
from .alerts import Rule, default_rules, prometheus_rules, rules_yaml
from .targets import Target, discover

MONITORING = "monitoring.coreos.com"


def file_sd(targets: Iterable[Target]) -> list[dict[str, Any]]:
    """``file_sd_configs`` entries for HTTP targets: endpoints, Dask schedulers and workers,
    training runs that serve their metrics over HTTP (a run known only by its directory
    has nothing for Prometheus to scrape, and is left out). A snapshot: run the export
    again when clusters scale, and Prometheus reloads the file."""
    out = []
    for t in targets:
        if t.url is None:
            continue
        parts = urllib.parse.urlsplit(t.url)
        labels = {"job": t.job, **dict(t.labels)}
        if parts.path not in ("", "/metrics"):
            labels["__metrics_path__"] = parts.path
        out.append({"targets": [parts.netloc], "labels": labels})
    return out


def scrape_config(sd_file: str = "targets.json", rules_file: str = "rules.yml", *,
                  interval: str = "5s") -> dict[str, Any]:
    """A Prometheus configuration: one job reading ``sd_file``, alerting rules in
    ``rules_file`` (paths relative to the config file)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [rules_file],
        "scrape_configs": [{"job_name": "hybridnb",
                            "file_sd_configs": [{"files": [sd_file],
                                                 "refresh_interval": "5s"}]}],
    }


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int
           ) -> dict[str, Any]:
    return {"id": pid, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": legend}
                        for i, (e, legend) in enumerate(exprs)]}


def grafana_dashboard(title: str = "hybridnb") -> dict[str, Any]:
    """A Grafana dashboard (JSON model) for endpoints, training and clusters.

    >>> [p["title"] for p in grafana_dashboard()["panels"]][:2]
    ['Endpoint latency', 'Requests per second']
    """
    dur = "hybridnb_endpoint_request_duration_seconds_bucket"
    req = "hybridnb_endpoint_requests_total"
    q = [(f"histogram_quantile({p}, sum by (le, instance) (rate({dur}[5m])))",
          f"p{int(p * 100)} {{{{instance}}}}") for p in (0.5, 0.95, 0.99)]
    specs = [
        ("Endpoint latency", q, "s"),
        ("Requests per second", [(f"sum by (instance) (rate({req}[1m]))", "{{instance}}")],
         "reqps"),
        ("5xx ratio", [(f'sum by (instance) (rate({req}{{code=~"5.."}}[5m])) / '
                        f"sum by (instance) (rate({req}[5m]))", "{{instance}}")],
         "percentunit"),
        ("Replicas up", [('count by (name) (up{job="hybridnb-endpoint"} == 1)', "{{name}}")],
         "short"),
        ("Queue depth", [("hybridnb_endpoint_queue_depth", "{{instance}}")], "short"),
        ("Training loss", [("hybridnb_train_loss", "{{run}}")], "short"),
        ("Training throughput", [("hybridnb_train_samples_per_second", "{{run}}")], "short"),
        ("Dask workers", [("sum by (instance) (dask_scheduler_workers)", "{{instance}}")],
         "short"),
    ]
    panels = [_panel(i + 1, t, e, u, 12 * (i % 2), 8 * (i // 2))
              for i, (t, e, u) in enumerate(specs)]
    return {"title": title, "uid": "hybridnb", "schemaVersion": 39, "version": 1,
            "editable": True, "time": {"from": "now-1h", "to": "now"}, "refresh": "10s",
            "tags": ["hybridnb"], "panels": panels,
            "templating": {"list": [{"name": "datasource", "type": "datasource",
                                     "query": "prometheus", "label": "Prometheus"}]}}


def _meta(name: str, namespace: str, labels: dict[str, str] | None) -> dict[str, Any]:
    from ..k8s.labels import standard_labels
    from ..k8s.validate import dns_label

    return {"name": dns_label(name), "namespace": namespace,
            "labels": standard_labels(extra=labels)}


def endpoint_selector() -> dict[str, str]:
    """The labels every endpoint Service hybridnb renders carries, whatever its name
    (:func:`hybridnb.serve.render.kubernetes_manifests`): what one ServiceMonitor for all
    endpoints selects.

    >>> endpoint_selector()
    {'app.kubernetes.io/managed-by': 'hybridnb', 'app.kubernetes.io/component': 'endpoint'}
    """
    from ..k8s.labels import COMPONENT_LABEL, ENDPOINT_COMPONENT, standard_labels

    return standard_labels(extra={COMPONENT_LABEL: ENDPOINT_COMPONENT})


def service_monitor(name: str, *, namespace: str = "default",
                    selector: dict[str, str] | None = None, port: str = "http",
                    interval: str = "15s", labels: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """A prometheus-operator ``ServiceMonitor`` scraping ``/metrics`` of matching Services.

    >>> service_monitor("mlp")["spec"]["endpoints"][0]["path"]
    '/metrics'
    """
    from ..k8s.monitoring import service_monitor_manifest

    meta = _meta(name, namespace, labels)
    return service_monitor_manifest(meta["name"], namespace=namespace, selector=selector,
                                    port=port, interval=interval, labels=meta["labels"])


def prometheus_rule(rules: list[Rule] | None = None, *, name: str = "hybridnb",
                    namespace: str = "default", labels: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """A prometheus-operator ``PrometheusRule`` holding ``rules`` (default: the defaults).

    Both objects validate against the operator's CRD schemas that ship with hybridnb
    (:mod:`hybridnb.k8s.crds`).
    """
    spec = prometheus_rules(default_rules() if rules is None else rules, name)
    return {"apiVersion": f"{MONITORING}/v1", "kind": "PrometheusRule",
            "metadata": _meta(name, namespace, labels), "spec": spec}


def write_exports(out_dir: str | Path, *, rules: list[Rule] | None = None,
                  targets: list[Target] | None = None, state: StateStore | None = None,
                  namespace: str = "default") -> list[Path]:
    """Write ``prometheus.yml``, ``targets.json``, ``rules.yml``, ``grafana-dashboard.json``
    and ``kubernetes.yaml`` (ServiceMonitor + PrometheusRule) into ``out_dir``."""
    import yaml

    from ..fileio import atomic_write_json, atomic_write_text
    from ..k8s.validate import assert_valid

    out = Path(out_dir)
    rules = default_rules() if rules is None else rules
    targets = discover(state) if targets is None else targets
    k8s = [service_monitor("hybridnb-endpoints", namespace=namespace,
                           selector=endpoint_selector()),
           prometheus_rule(rules, namespace=namespace)]
    for obj in k8s:  # against prometheus-operator's CRD schemas: nothing invalid is written
        assert_valid(obj)
    return [
        atomic_write_text(out / "prometheus.yml", yaml.safe_dump(scrape_config(),
                                                                 sort_keys=False)),
        atomic_write_json(out / "targets.json", file_sd(targets)),
        atomic_write_text(out / "rules.yml", rules_yaml(rules)),
        atomic_write_json(out / "grafana-dashboard.json", grafana_dashboard()),
        atomic_write_text(out / "kubernetes.yaml", yaml.safe_dump_all(k8s, sort_keys=False)),
    ]


def status(*, state: StateStore | None = None, store_path: str | Path | None = None,
           rules: list[Rule] | None = None, timeout: float = 1.0,
           gap: float = 1.0) -> dict[str, Any]:
    """Scrape every discovered target, evaluate ``rules``: targets and firing alerts.

    Two rounds ``gap`` seconds apart (one when ``gap`` is 0) of a
    :class:`~hybridnb.monitor.collector.Collector`: what a CLI shows. Each endpoint
    target also gets ``requests_per_second`` and ``p99_seconds`` of its inference
    requests between the rounds (``None`` when it answered none; health checks and
    scrapes do not count).
    """
    from .collector import Collector

    collector = Collector(interval=timeout, store_path=store_path, state=state,
                          rules=default_rules() if rules is None else rules, host=False)
    first = end = time.time()
    try:
        collector.collect_once(now=first)
        if gap > 0:
            time.sleep(gap)
            end = time.time()
            collector.collect_once(now=end)
        # rate() over a window that holds both rounds, however long the first one took.
        values = _endpoint_values(collector.store, end, 1.25 * (end - first)) if gap else {}
    finally:
        collector.stop()
    return {"targets": [{**t, **values.get(t["instance"], {})} for t in collector.health()],
            "firing": [{"alert": a.alert, "severity": a.severity, "labels": a.labels,
                        "value": a.value} for a in collector.alerts.firing()]}


# Inference routes of a replica; a router counts every request it forwards.
_INFER = '{route=~"/v2/models/.+/infer|/v1/models/.+"}'


def _endpoint_values(store: Any, at: float, window: float) -> dict[str, dict[str, Any]]:
    """Per endpoint instance: requests/s and p99 seconds over the ``window`` before ``at``."""
    import numpy as np

    from .promql import evaluate

    over = f"{max(window, 0.1) * 1000:.0f}ms"

    def by_instance(expr: str) -> dict[str, float]:
        result = evaluate(expr, store, np.array([at]))
        if not isinstance(result, dict):
            return {}
        return {dict(key).get("instance", ""): float(arr[0]) for key, arr in result.items()
                if not np.isnan(arr[0])}

    out: dict[str, dict[str, Any]] = {}
    for prefix, match in (("hybridnb_endpoint", _INFER), ("hybridnb_router", "")):
        rates = by_instance(f"sum by (instance) (rate({prefix}_requests_total{match}[{over}]))")
        p99 = by_instance(f"histogram_quantile(0.99, sum by (le, instance) (rate("
                          f"{prefix}_request_duration_seconds_bucket{match}[{over}])))")
        for instance, rate in rates.items():
            out[instance] = {"requests_per_second": rate,
                             "p99_seconds": p99.get(instance) if rate > 0 else None}
    return out
