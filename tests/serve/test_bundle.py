"""Bundles: export, metadata, safe loading, validation, atomic writes."""

from __future__ import annotations

import json
import pickle
import re

import pytest
import torch

from hybridnb.errors import UsageError
from hybridnb.serve.model_bundle import BundleError, bundle, load_bundle

from .conftest import make_mlp


def test_round_trip_and_metadata(mlp):
    model, b = mlp
    meta = json.loads((b.path / "hybridnb-model.json").read_text())
    assert meta["name"] == "mlp" and meta["version"] == "1"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["labels"] == ["a", "b", "c"] and meta["metrics"] == {"accuracy": 0.9}
    assert meta["content_hash"].startswith("sha256:")
    assert {p.name for p in b.path.iterdir()} == {
        "model.pt2", "graph.json", "weights.safetensors", "hybridnb-model.json"}
    loaded = load_bundle(b.path)
    for rows in (1, 5, 64):  # the batch dimension is dynamic
        x = torch.randn(rows, 8)
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert "mlp" in repr(loaded) and "<table>" in loaded._repr_html_()


def test_pt2_is_a_real_exported_program(mlp):
    # For tools that trust the file: it is what torch.export.save wrote.
    ep = mlp[1].exported_program()
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), mlp[0](x), atol=1e-6)


def test_loading_never_unpickles(mlp, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_bundle tried to unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.export, "load", refuse)
    assert load_bundle(mlp[1].path).name == "mlp"


def _copy(b, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(b.path, dst)
    return dst


@pytest.mark.parametrize("name", ["hybridnb-model.json", "graph.json", "weights.safetensors",
                                  "model.pt2"])
def test_missing_file_is_named(mlp, tmp_path, name):
    path = _copy(mlp[1], tmp_path)
    (path / name).unlink()
    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        load_bundle(path)


@pytest.mark.parametrize("name", ["graph.json", "weights.safetensors", "model.pt2"])
def test_corrupt_file_is_named(mlp, tmp_path, name):
    path = _copy(mlp[1], tmp_path)
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=re.escape(name) + ".*digest"):
        load_bundle(path)


def test_bad_metadata_json(mlp, tmp_path):
    path = _copy(mlp[1], tmp_path)
    (path / "hybridnb-model.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"hybridnb-model\.json: unreadable JSON"):
        load_bundle(path)


def _rewrite_graph(path, edit):
    """Edit graph.json and re-sign it, as an attacker who controls the bundle could."""
    from hybridnb.fileio import sha256_file
    from hybridnb.serve.model_bundle import _content_hash

    graph = json.loads((path / "graph.json").read_text())
    edit(graph)
    (path / "graph.json").write_text(json.dumps(graph))
    meta = json.loads((path / "hybridnb-model.json").read_text())
    meta["files"]["graph.json"] = sha256_file(path / "graph.json")
    meta["content_hash"] = _content_hash(meta["files"])
    (path / "hybridnb-model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("op", ["builtins.eval", "os.system.default", "aten.add_.Tensor",
                                "aten.__class__.x", "higher_order.cond.default"])
def test_unsafe_operators_are_refused(mlp, tmp_path, op):
    path = _copy(mlp[1], tmp_path)
    _rewrite_graph(path, lambda g: g["nodes"][0].update(op=op))
    with pytest.raises(BundleError, match="operator"):
        load_bundle(path)


def test_unknown_argument_tags_are_refused(mlp, tmp_path):
    path = _copy(mlp[1], tmp_path)
    _rewrite_graph(path, lambda g: g["nodes"][0]["args"].__setitem__(2, {"$dtype": "__class__"}))
    with pytest.raises(BundleError, match="cannot decode"):
        load_bundle(path)


def test_atomic_write_and_overwrite(tmp_path):
    target = tmp_path / "m"
    bundle(make_mlp(1), torch.randn(1, 8), target)
    with pytest.raises(BundleError, match="already exists"):
        bundle(make_mlp(2), torch.randn(1, 8), target)
    first = load_bundle(target).content_hash
    bundle(make_mlp(2), torch.randn(1, 8), target, overwrite=True, version=2)
    assert load_bundle(target).content_hash != first
    assert load_bundle(target).version == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp dirs left


def test_failed_export_leaves_nothing(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return x.sum().item()  # not a batch tensor

    with pytest.raises(UsageError):
        bundle(Bad(), torch.randn(2, 8), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_preprocessing_is_applied(tmp_path):
    model = make_mlp()
    mean, std = [1.0] * 8, [2.0] * 8
    b = bundle(model, torch.randn(2, 8), tmp_path / "p",
               preprocessing={"mean": mean, "std": std})
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(load_bundle(b.path)(x), model((x - 1.0) / 2.0), atol=1e-6)
    with pytest.raises(UsageError, match="zeros"):
        bundle(model, torch.randn(2, 8), tmp_path / "q",
               preprocessing={"mean": mean, "std": [0.0] * 8})


def test_train_mode_model_is_exported_in_eval_and_restored(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Dropout(0.5)).train()
    b = bundle(model, torch.randn(4, 8), tmp_path / "bn")
    assert model.training
    model.eval()
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.allclose(b(x), model(x), atol=1e-5)
