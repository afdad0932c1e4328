"""Metrics rendering and plots, and the PyTorchJob manifest: pure functions."""

from __future__ import annotations

import matplotlib

from hybridnb.train import TrainSpec, plot_run, prometheus_text, pytorchjob
from hybridnb.train.metrics import GAUGES, dedupe, read_metrics

matplotlib.use("Agg")

ROWS = [
    {"kind": "step", "step": 1, "loss": 2.3, "lr": 0.01, "step_seconds": 0.1,
     "samples_per_second": 320.0, "attempt": 0},
    {"kind": "step", "step": 2, "loss": 9.9, "lr": 0.01, "step_seconds": 0.1,
     "samples_per_second": 320.0, "attempt": 0},
    {"kind": "step", "step": 2, "loss": 2.1, "lr": 0.01, "step_seconds": 0.2,
     "samples_per_second": 160.0, "attempt": 1},  # a restart replayed step 2
    {"kind": "epoch", "step": 2, "epoch": 1, "val_accuracy": 0.75, "val_loss": 1.0},
    {"kind": "final", "step": 2, "test_accuracy": 0.8, "test_loss": 0.9},
]


def test_dedupe_keeps_the_replayed_step():
    rows = dedupe(ROWS)
    assert [r["kind"] for r in rows] == ["step", "step", "epoch", "final"]
    assert rows[1]["loss"] == 2.1


def test_prometheus_gauges():
    text = prometheus_text(ROWS, run="digits")
    assert 'hybridnb_train_loss{run="digits"} 2.1' in text
    assert 'hybridnb_train_accuracy{run="digits"} 0.8' in text
    assert 'hybridnb_train_samples_per_second{run="digits"} 160.0' in text
    assert 'hybridnb_train_step_seconds{run="digits"} 0.2' in text
    assert 'hybridnb_train_learning_rate{run="digits"} 0.01' in text
    for name in GAUGES:
        assert f"# TYPE {name} gauge" in text


def test_read_metrics_ignores_a_partial_last_line(tmp_path):
    import json

    lines = "".join(json.dumps(r) + "\n" for r in ROWS[:2])
    (tmp_path / "metrics.jsonl").write_text(lines + '{"kind": "st')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_plot_run_on_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_run(ROWS, ax=ax) is fig
    assert "test accuracy 80.0 %" in ax.get_title()
    assert len(fig.axes) == 2  # loss and the accuracy twin


def test_pytorchjob_manifest():
    spec = TrainSpec(name="digits_cnn", max_restarts=3)
    job, cm = pytorchjob(spec, nprocs=4, image="ghcr.io/x/hybridnb:1", gpus=1,
                         run_claim="runs")
    assert job["metadata"]["name"] == "digits-cnn"
    policy = job["spec"]["elasticPolicy"]
    assert policy == {"rdzvBackend": "c10d", "minReplicas": 4, "maxReplicas": 4,
                      "maxRestarts": 3}
    assert job["spec"]["nprocPerNode"] == "1"
    worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4 and worker["restartPolicy"] == "ExitCode"
    container = worker["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert container["command"][:5] == ["python", "-m", "torch.distributed.run", "--module",
                                        "hybridnb.train.loop"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert TrainSpec.model_validate_json(cm["data"]["spec.json"]) == spec
    assert job["metadata"]["labels"]["hybridnb.io/spec-hash"] == spec.hash()


def test_manifests_validate_where_the_validator_exists():
    from hybridnb.k8s import validate

    job, cm = pytorchjob(TrainSpec(name="digits"), nprocs=2, image="img", run_claim="runs")
    assert validate.validate_manifest(cm) == []
    assert validate.validate_manifest(job) == []  # against the PyTorchJob CRD's schema
    # The pod template inside the job is a core PodTemplateSpec: check it as a Pod.
    template = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "digits-worker-0",
                                                           **template["metadata"]},
           "spec": template["spec"]}
    assert validate.validate_manifest(pod) == []
