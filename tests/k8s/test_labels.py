"""One label vocabulary across every renderer: ``hybridnb.io/`` for hybridnb's own keys,
Kubernetes' recommended ``app.kubernetes.io/`` ones beside them, and selectors that match
what the other renderers label."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from hybridnb.config import check_file, load_config
from hybridnb.hub.render import service_manifests
from hybridnb.k8s.dask import dask_autoscaler_manifest, dask_cluster_manifest
from hybridnb.k8s.labels import PREFIX, label_key, standard_labels
from hybridnb.monitor.exports import write_exports
from hybridnb.notebooks.k8s import notebook_job
from hybridnb.serve.render import kubernetes_manifests
from hybridnb.sites.kubernetes import kube_site
from hybridnb.train import TrainSpec
from hybridnb.train.k8s import pytorchjob

#: Label keys of other tools that hybridnb's objects carry (the Dask operator's, the
#: ingress controller's, JupyterHub's): theirs to name.
FOREIGN = ("dask.org/", "nginx.ingress.kubernetes.io/", "hub.jupyter.org/")
ALLOWED = (PREFIX, "app.kubernetes.io/", *FOREIGN)
ROOT = Path(__file__).resolve().parents[2]


def _label_keys(obj: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """Every label and annotation key of objects in ``obj`` (nested pod templates
    included), and of their selectors; not an alert rule's labels, which are Prometheus'.
    """
    if isinstance(obj, dict):
        for key, value in obj.items():
            if ((key in ("labels", "annotations") and where.endswith(".metadata"))
                    or key == "matchLabels") and isinstance(value, dict):
                yield from ((k, f"{where}.{key}") for k in value)
            elif key == "selector" and isinstance(value, dict) and all(
                    isinstance(v, str) for v in value.values()):  # a Service's selector
                yield from ((k, f"{where}.selector") for k in value)
            else:
                yield from _label_keys(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _label_keys(item, f"{where}[{i}]")


def _everything(tmp_path, hybridnb_home) -> dict[str, list[dict[str, Any]]]:
    site = load_config(overrides={"sites": {"gke": {
        "backend": "kubernetes", "tier": "public",
        "capacity": {"cpu": 8, "memory": "32GiB"}}}}).site("gke")
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                              "nbformat_minor": 5}))
    job, config_map = pytorchjob(TrainSpec(name="digits"), nprocs=2, image="img:1",
                                 run_claim="runs")
    exports = write_exports(tmp_path / "exports", targets=[])
    kube_yaml = next(p for p in exports if p.name == "kubernetes.yaml")
    return {
        "dask": [dask_cluster_manifest(kube_site(site), "demo", n_workers=1),
                 dask_autoscaler_manifest("demo", 0, 2, site=kube_site(site))],
        "endpoint": kubernetes_manifests("digits", image="img:1", metrics_token=True),
        "notebook job": notebook_job(nb, {}, image="img:1").manifests(),
        "training": [job, config_map],
        "monitoring exports": list(yaml.safe_load_all(kube_yaml.read_text())),
    }


def test_every_label_key_is_ours_or_kubernetes_recommended(tmp_path, hybridnb_home):
    wrong = [f"{what}: {key} at {where}"
             for what, objs in _everything(tmp_path, hybridnb_home).items()
             for obj in objs for key, where in _label_keys(obj)
             if not key.startswith(ALLOWED)]
    assert not wrong, "label keys outside hybridnb.io/ and app.kubernetes.io/:\n" + \
        "\n".join(wrong)


def test_the_names_the_glossary_gives(tmp_path, hybridnb_home):
    objs = _everything(tmp_path, hybridnb_home)
    job = objs["notebook job"][0]
    assert job["metadata"]["labels"][label_key("job")] == job["metadata"]["name"]
    training = objs["training"][0]["metadata"]["labels"]
    assert training[label_key("run")] == "digits" and label_key("spec-hash") in training
    for obj in [*objs["dask"], *objs["endpoint"], *objs["notebook job"], *objs["training"]]:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "hybridnb", obj["kind"]


def test_the_exported_service_monitor_selects_rendered_endpoints(tmp_path, hybridnb_home):
    """One ServiceMonitor for all endpoints: its selector must match the Service that
    rendering an endpoint produces, whatever the endpoint's name."""
    objs = _everything(tmp_path, hybridnb_home)
    monitor = next(o for o in objs["monitoring exports"] if o["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    for name in ("digits", "wine-v2"):
        service = next(o for o in kubernetes_manifests(name, image="img:1")
                       if o["kind"] == "Service")
        labels = service["metadata"]["labels"]
        assert selector.items() <= labels.items(), (selector, labels)
    assert selector == standard_labels(extra={"app.kubernetes.io/component": "endpoint"})


def test_the_hub_service_uses_the_same_vocabulary(hybridnb_home):
    team = ROOT / "environments" / "hub" / "hybridnb.yaml"
    objs = service_manifests(check_file(team), team.read_text())
    wrong = [f"{obj['kind']}: {key} at {where}" for obj in objs
             for key, where in _label_keys(obj) if not key.startswith(ALLOWED)]
    assert objs and not wrong, wrong
