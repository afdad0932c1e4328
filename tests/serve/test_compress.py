"""Compression: int8 and pruned bundles are ordinary bundles, served and measured."""

from __future__ import annotations

import json
import pickle

import httpx
import numpy as np
import pytest
import safetensors.torch
import torch

from hybridnb.errors import UsageError
from hybridnb.serve.compress_bundle import compress
from hybridnb.serve.model_bundle import bundle, load_bundle

from .conftest import infer_body

#: int8 weights may flip a few borderline digits; more than this is a bug, not rounding.
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A small MLP trained on the first 1,400 digits (under a second on one core)."""
    (x, y), _ = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return bundle(
        model.eval(),
        torch.zeros(1, 64),
        tmp_path_factory.mktemp("c") / "fp32",
        name="digits",
        labels=[str(i) for i in range(10)],
        metrics={"test_accuracy": 0.9},
    )


def _refuse_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for obj, name in [
        (pickle, "loads"),
        (pickle, "load"),
        (pickle, "Unpickler"),
        (torch, "load"),
        (torch.export, "load"),
    ]:
        monkeypatch.setattr(obj, name, refuse)


def test_int8_bundle_is_smaller_accurate_and_served(trained, digits, tmp_path, serve, monkeypatch):
    _refuse_pickle(monkeypatch)  # neither compressing nor loading unpickles anything
    held_out = digits[1]
    report = compress(
        trained.path,
        tmp_path / "int8",
        quantize="int8",
        eval_data=held_out,
        batch_sizes=(1, 64),
        repeats=3,
    )
    assert report.metric == "accuracy" and report.eval_rows == len(held_out[1])
    assert report.accuracy["before"] > 0.85
    assert abs(report.accuracy["after"] - report.accuracy["before"]) <= TOLERANCE
    assert report.quantized == ["0.weight", "2.weight"] and report.skipped == []
    # int8 weights plus one float scale per output row: well under a third of fp32.
    assert report.size_bytes["weights_after"] < report.size_bytes["weights_before"] / 3
    assert report.size_bytes["after"] < report.size_bytes["before"]
    assert set(report.latency_p50_ms) == {"1", "64"}

    new = load_bundle(tmp_path / "int8")
    assert new.version == "1+int8" and new.labels == trained.labels
    assert new.meta["metrics"] == {"test_accuracy": 0.9}
    assert new.meta["compression"] == json.loads(json.dumps(report.to_dict()))
    stored = safetensors.torch.load_file(new.path / "weights.safetensors")
    assert stored["0.weight"].dtype == torch.int8 and stored["0.weight_scale"].shape == (64, 1)
    x = held_out[0][:5]
    srv = serve(new)
    r = httpx.post(srv.url + "/v2/models/digits/infer", json=infer_body(torch.as_tensor(x)))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [5, 10]
    got = np.asarray(out["data"], dtype=np.float32).reshape(5, 10)
    np.testing.assert_allclose(got, new.predict(x), rtol=1e-5, atol=1e-5)
    # Close to the float model, not equal: the weights really are rounded.
    diff = np.abs(got - trained.predict(x)).max()
    assert 0 < diff < 0.1 * np.abs(trained.predict(x)).max()


def test_int8_dynamic_quantizes_activations(trained, digits, tmp_path):
    report = compress(
        trained,
        tmp_path / "dyn",
        quantize="int8-dynamic",
        eval_data=digits[1],
        batch_sizes=(8,),
        repeats=2,
    )
    assert abs(report.accuracy["after"] - report.accuracy["before"]) <= TOLERANCE
    assert report.agreement > 0.95
    new = load_bundle(tmp_path / "dyn")
    graph = json.loads((new.path / "graph.json").read_text())
    assert "aten._int_mm.default" in {n["op"] for n in graph["nodes"]}
    assert "aten.linear.default" not in {n["op"] for n in graph["nodes"]}
    x = torch.as_tensor(digits[1][0][:16])
    assert torch.allclose(new(x), trained(x), atol=0.1 * float(trained(x).abs().max()))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruning_reaches_the_requested_sparsity(trained, digits, tmp_path, scope):
    report = compress(
        trained,
        tmp_path / "p",
        quantize=None,
        prune=0.6,
        prune_scope=scope,
        eval_data=digits[1],
        batch_sizes=(4,),
        repeats=2,
    )
    stored = safetensors.torch.load_file(tmp_path / "p" / "weights.safetensors")
    zeros = {k: float((stored[k] == 0).float().mean()) for k in ("0.weight", "2.weight")}
    assert report.sparsity == pytest.approx(zeros)
    assert report.total_sparsity == pytest.approx(0.6, abs=1e-3)
    if scope == "layer":
        assert zeros == pytest.approx({"0.weight": 0.6, "2.weight": 0.6}, abs=1e-3)
    assert float((stored["0.bias"] == 0).float().mean()) < 0.1  # biases are left alone
    assert report.accuracy["after"] > 0.5 and report.version_after == "1+pruned60"


def test_pruned_zeros_survive_int8_and_convolutions_are_pruned(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    ).eval()
    src = bundle(model, torch.zeros(1, 1, 8, 8), tmp_path / "cnn")
    report = compress(
        src, tmp_path / "both", quantize="int8", prune=0.5, batch_sizes=(2,), repeats=2
    )
    assert report.quantized == ["3.weight"]  # Linear layers only
    assert set(report.sparsity) == {"0.weight", "3.weight"}
    stored = safetensors.torch.load_file(tmp_path / "both" / "weights.safetensors")
    assert stored["0.weight"].dtype == torch.float32
    assert float((stored["0.weight"] == 0).float().mean()) == pytest.approx(0.5, abs=0.03)
    assert float((stored["3.weight"] == 0).float().mean()) == pytest.approx(0.5, abs=1e-3)
    assert report.metric is None and report.accuracy == {}  # no eval data given
    assert load_bundle(tmp_path / "both")(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_graph_folds_weight_only_steps_at_load():
    from hybridnb.serve.graph import SafeGraph, graph_to_spec

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.full((4,), 2, dtype=torch.int8))

        def forward(self, x):
            return x * self.w.float() + 1

    spec, tensors = graph_to_spec(torch.export.export(Scaled(), (torch.zeros(2, 4),)))
    run = SafeGraph(spec, tensors, input_shape=[-1, 4])
    # The metadata check and the int8 -> float cast of the weight ran at load.
    assert len(spec["nodes"]) == 4 and repr(run) == "SafeGraph(2 operator calls)"
    x = torch.arange(8.0).reshape(2, 4)
    assert torch.equal(run(x), x * 2 + 1)


def test_report_renders(trained, digits, tmp_path):
    report = compress(
        trained, tmp_path / "r", prune=0.3, eval_data="digits", batch_sizes=(2,), repeats=2
    )
    assert report.eval_rows == 360 and "holds out" in report.eval_source
    text = repr(report)
    assert "accuracy" in text and "p50 batch 2" in text and "sparsity 0.300" in text
    assert "<table>" in report._repr_html_()
    assert json.loads(json.dumps(report.to_dict()))["prune"] == 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prune": 1.0}, r"prune=1\.0.*\[0, 1\)"),
        ({"prune": -0.1}, r"prune=-0\.1"),
        ({"prune": True}, r"prune=True"),
        ({"quantize": "int4"}, r"quantize='int4' is not a mode"),
        ({"quantize": None}, "nothing to do"),
        ({"prune_scope": "row", "prune": 0.5}, "prune_scope='row'"),
        ({"repeats": 0}, "repeats=0"),
        ({"batch_sizes": (0,)}, "batch_sizes"),
        (
            {"eval_data": (np.zeros((3, 8)), np.zeros(3, int))},
            r"eval_data: x has shape \[3, 8\].*'input' is FP32\[-1, 64\]",
        ),
        ({"eval_data": (np.zeros((3, 64)), np.zeros(2, int))}, r"eval_data: y has 2 rows"),
        ({"eval_data": (np.zeros((3, 64)), np.array([0, 1, 12]))}, r"labels outside 0\.\.9"),
        ({"eval_data": 42}, "eval_data: expected"),
    ],
)
def test_bad_input_is_named(trained, tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        compress(trained, tmp_path / "out", **{"repeats": 1, **kwargs})
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary directory left


def test_conv_only_bundle_has_nothing_to_quantize(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    src = bundle(model, torch.zeros(1, 1, 8, 8), tmp_path / "conv")
    with pytest.raises(UsageError, match=r"no Linear layer to quantize.*Linear layers only"):
        compress(src, tmp_path / "q", quantize="int8")
    assert compress(src, tmp_path / "p", quantize=None, prune=0.5, repeats=1).sparsity


def test_output_directory_rules(trained, tmp_path):
    with pytest.raises(UsageError, match="is the source bundle"):
        compress(trained, trained.path, repeats=1)
    (tmp_path / "taken").mkdir()
    with pytest.raises(UsageError, match=r"already exists.*overwrite"):
        compress(trained, tmp_path / "taken", repeats=1)
    report = compress(
        trained, tmp_path / "taken", repeats=1, batch_sizes=(1,), overwrite=True, version="2"
    )
    assert load_bundle(report.path).version == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_cli_command(trained, tmp_path, capsys):
    from hybridnb.cli import main

    args = [str(trained.path), "--out", str(tmp_path / "c"), "--quantize", "int8",
            "--eval", "digits", "--batch", "4", "--repeats", "2", "--json"]
    assert main(["compress", *args]) == 0
    assert json.loads(capsys.readouterr().out)["quantized"] == ["0.weight", "2.weight"]
    bad = ["compress", str(trained.path), "--out", str(tmp_path / "d"), "--prune", "1.5"]
    assert main(bad) == 2
    assert "prune" in capsys.readouterr().err
