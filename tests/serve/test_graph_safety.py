"""Hostile bundles are refused at load, with a message naming what and where.

Each hostile graph is written as an attacker who controls the bundle directory would:
``graph.json`` edited, every digest and the content hash recomputed (digests detect
corruption, they do not authenticate). Loading must still refuse it, before anything
runs, as safetensors would refuse a malformed file.
"""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest
import safetensors.torch
import torch

from hybridnb.fileio import sha256_file
from hybridnb.serve import graph_policy
from hybridnb.serve.graph import GraphError, SafeGraph
from hybridnb.serve.graph_policy import GraphLimits
from hybridnb.serve.model_bundle import BundleError, _content_hash, bundle, load_bundle

from .conftest import make_mlp


@pytest.fixture(scope="module")
def base(mlp):
    """The mlp bundle's graph spec: input [-1, 8] -> linear, relu, linear_1 -> [-1, 3]."""
    return json.loads((mlp[1].path / "graph.json").read_text())


def _write(src, tmp_path, graph=None, *, graph_bytes=None, weights=None, meta_edit=None,
           name="hostile"):
    """A copy of the bundle ``src`` with its files replaced, then re-signed."""
    path = tmp_path / name
    shutil.copytree(src.path, path)
    if graph is not None:
        graph_bytes = json.dumps(graph).encode()
    if graph_bytes is not None:
        (path / "graph.json").write_bytes(graph_bytes)
    if weights is not None:
        safetensors.torch.save_file(weights, path / "weights.safetensors")
    meta = json.loads((path / "hybridnb-model.json").read_text())
    for f in ("model.pt2", "graph.json", "weights.safetensors"):
        if (path / f).is_file() and os.path.getsize(path / f) < 1 << 30:
            meta["files"][f] = sha256_file(path / f)
    meta["content_hash"] = _content_hash(meta["files"])
    if meta_edit is not None:
        meta_edit(meta)
    (path / "hybridnb-model.json").write_text(json.dumps(meta))
    return path


def _node(name, op, *args, **kwargs):
    return {"name": name, "op": op, "args": list(args), "kwargs": kwargs}


def _ref(name):
    return {"$ref": name}


def _extend(spec, *nodes, output):
    """``spec`` with ``nodes`` appended (indices 3, 4, ...) and ``output`` as its output."""
    graph = copy.deepcopy(spec)
    graph["nodes"] += list(nodes)
    graph["outputs"] = [_ref(output)]
    return graph


def _refused(mlp, tmp_path, graph=None, **kwargs):
    path = _write(mlp[1], tmp_path, graph, **kwargs)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    return str(info.value)


# -- operators ------------------------------------------------------------------------------


def test_a_graph_cannot_read_a_file(mlp, base, tmp_path):
    # Before: the graph folded at load and every answer carried the file's bytes.
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b"KEY")
    graph = _extend(base,
                    _node("leak", "aten.from_file.default", str(secret), False, 3,
                          dtype={"$dtype": "uint8"}),
                    _node("leakf", "aten._to_copy.default", _ref("leak"),
                          dtype={"$dtype": "float32"}),
                    _node("out", "aten.add.Tensor", _ref("linear_1"), _ref("leakf")),
                    output="out")
    message = _refused(mlp, tmp_path, graph)
    assert "graph.json: node 3 ('leak', aten.from_file.default): operator " \
           "'aten.from_file.default' is refused: it is not on hybridnb's operator " \
           "allow-list; a bundle may call only" in message


@pytest.mark.parametrize(("op", "args", "why"), [
    ("aten.empty.memory_format", [[3]], "it reads memory it never wrote"),
    ("aten.as_strided.default", [_ref("linear_1"), [2, 3], [1, 1]],
     "it addresses raw storage"),
    ("aten.rand.default", [[3]], "it draws from the process's random generator"),
    ("aten._local_scalar_dense.default", [_ref("linear_1")],
     "its output size depends on tensor values"),
    ("aten.convolution_backward.default", [], "it is a training (backward"),
    ("aten.atan2.out", [_ref("linear_1"), _ref("linear_1")], "it writes into one of its"),
    ("aten.add_.Tensor", [_ref("linear_1"), _ref("linear_1")], "it is not on hybridnb's"),
    ("aten.definitely_not_an_op.default", [_ref("linear_1")], "it is not on hybridnb's"),
    ("aten.__class__.__init__", [], "it is not on hybridnb's operator allow-list"),
    ("prims.device_put.default", [_ref("linear_1"), "cpu"], "it is not on hybridnb's"),
])
def test_operators_off_the_allow_list_are_refused(mlp, base, tmp_path, op, args, why):
    graph = _extend(base, _node("bad", op, *args), output="linear_1")
    message = _refused(mlp, tmp_path, graph)
    assert f"node 3 ('bad', {op}): operator '{op}' is refused: {why}" in message


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(("node", "expected"), [
    (_node("bad", "aten.gelu.default", _ref("linear_1"), approximate="sigmoid"),
     "argument 'approximate': 'sigmoid' is not an allowed value (one of 'none', 'tanh'); "
     "string arguments may only be known enums"),
    # torch itself would take the string "cpu" (or "cuda") for a device.
    (_node("bad", "aten._to_copy.default", _ref("linear_1"), device="cpu"),
     "argument 'device': a string where the operator expects Optional[Device]"),
    (_node("bad", "aten._to_copy.default", _ref("linear_1"), device={"$device": "meta"}),
     "argument 'device': cannot decode the argument {'$device': 'meta'}: device must be "
     "one of cpu"),
    (_node("bad", "aten.full.default", [3], 1.0, pin_memory=True),
     "argument 'pin_memory': pin_memory must be false"),
    (_node("bad", "aten.dropout.default", _ref("linear_1"), 0.5, True),
     "argument 'train': must be False, got True (a served graph runs in inference mode)"),
    (_node("bad", "aten.relu.default", _ref("linear_1"), _ref("linear_1")),
     "2 positional arguments; the operator takes at most 1"),
    (_node("bad", "aten.relu.default", _ref("linear_1"), inplace=True),
     "no argument 'inplace'; the operator takes self"),
    (_node("bad", "aten.relu.default", _ref("nowhere")),
     "refers to 'nowhere', which is not defined before this node"),
    (_node("bad", "aten.full.default", [[[[3]]]], 1.0),
     "argument 'size': lists nested deeper than 2 levels"),
    (_node("bad", "aten.full.default", [3], 2**70),
     "argument 'fill_value': an integer of 71 bits is out of range"),
    (_node("bad", "operator.mul", [0], 10**7), "argument 0: [0]; Python operators in a "
     "graph work on numbers only"),
])
def test_bad_arguments_are_refused(mlp, base, tmp_path, node, expected):
    graph = _extend(base, node, output="linear_1")
    message = _refused(mlp, tmp_path, graph)
    assert f"node 3 ('bad', {node['op']})" in message and expected in message


# -- sizes ----------------------------------------------------------------------------------


def test_a_huge_constant_is_refused_before_it_is_allocated(mlp, base, tmp_path):
    # Before: constant folding tried to allocate 4 TB at load.
    graph = _extend(base,
                    _node("big", "aten.full.default", [10**6, 10**6], 1.0),
                    _node("total", "aten.sum.default", _ref("big")),
                    _node("out", "aten.add.Tensor", _ref("linear_1"), _ref("total")),
                    output="out")
    message = _refused(mlp, tmp_path, graph)
    assert ("node 3 ('big', aten.full.default): a tensor of 4000000000000 bytes (from "
            "size=[1000000, 1000000])") in message and "may not allocate more" in message


def test_a_size_derived_from_the_request_is_bounded(mlp, base, tmp_path):
    # B rows become a B^2 x B^2 tensor: 64 bytes at load's B=2, 2^36 elements at B=512.
    # Before: it loaded, and a 512-row request asked for 256 GiB.
    graph = _extend(base,
                    _node("rows", "aten.sym_size.int", _ref("input"), 0),
                    _node("sq", "operator.mul", _ref("rows"), _ref("rows")),
                    _node("big", "aten.full.default", [_ref("sq"), _ref("sq")], 0.0),
                    _node("total", "aten.sum.default", _ref("big")),
                    _node("out", "aten.add.Tensor", _ref("linear_1"), _ref("total")),
                    output="out")
    message = _refused(mlp, tmp_path, graph)
    assert ("node 5 ('big', aten.full.default): its result needs up to "
            "1125899906842624 bytes per input row (from size=[{'$ref': 'sq'}, "
            "{'$ref': 'sq'}]); at most 16777216 are allowed") in message


def test_an_outer_product_of_the_batch_is_bounded(mlp, base, tmp_path):
    # No integer in sight: a [B, 1, 8] x [1, B, 8] broadcast is B*B*8 values, and repeat
    # makes each 2^12 wide. Bounded per row over every batch size up to max_batch.
    graph = _extend(base,
                    _node("a", "aten.view.default", _ref("input"), [-1, 1, 8]),
                    _node("b", "aten.view.default", _ref("input"), [1, -1, 8]),
                    _node("ab", "aten.mul.Tensor", _ref("a"), _ref("b")),
                    _node("wide", "aten.repeat.default", _ref("ab"), [1, 1, 4096]),
                    _node("total", "aten.sum.default", _ref("wide")),
                    _node("out", "aten.add.Tensor", _ref("linear_1"), _ref("total")),
                    output="out")
    message = _refused(mlp, tmp_path, graph)
    assert "node 6 ('wide', aten.repeat.default): its result needs up to" in message
    assert "(from repeats=[1, 1, 4096])" in message
    assert "for a bundle you trust: load_bundle(path, limits=GraphLimits(...))" in message
    # Trusted, with calls of at most 64 rows (longer batches run in chunks), it loads.
    trusted = load_bundle(tmp_path / "hostile", limits=GraphLimits(max_batch=64))
    x = torch.randn(100, 8)
    with torch.inference_mode():
        expected = mlp[0](x) + (x[:, None, :] * x[None, :64, :]).sum() * 0  # shape only
        assert trusted(x).shape == expected.shape == (100, 3)


def test_a_size_read_from_tensor_values_is_refused(mlp, base, tmp_path):
    graph = _extend(base,
                    _node("mask", "aten.gt.Scalar", _ref("input"), 0.0),
                    _node("picked", "aten.index.Tensor", _ref("input"), [_ref("mask")]),
                    output="linear_1")
    message = _refused(mlp, tmp_path, graph)
    assert "node 4 ('picked', aten.index.Tensor): " in message


def test_integers_cannot_grow_without_bound(mlp, base, tmp_path):
    # Squaring 2 twelve times is a 4096-bit number; forty times would hang a loader.
    nodes = [_node("n0", "operator.mul", 2, 2)]
    nodes += [_node(f"n{i}", "operator.mul", _ref(f"n{i - 1}"), _ref(f"n{i - 1}"))
              for i in range(1, 12)]
    message = _refused(mlp, tmp_path, _extend(base, *nodes, output="linear_1"))
    assert "node 8 ('n5', operator.mul): computes an integer that is unbounded or " \
           "beyond ±4611686018427387904" in message


def test_too_many_nodes(mlp, base, tmp_path):
    nodes = [_node(f"r{i}", "aten.relu.default", _ref("linear_1")) for i in range(4998)]
    message = _refused(mlp, tmp_path, _extend(base, *nodes, output="linear_1"))
    assert "the graph has 5001 nodes; at most 5000 are allowed" in message


def test_the_output_must_be_the_batch(mlp, base, tmp_path):
    message = _refused(mlp, tmp_path, _extend(base, output="p_0_weight"))
    assert "the output has shape [16, 8]; its first dimension must be the batch" in message


# -- files ----------------------------------------------------------------------------------


def test_deep_json_nesting_is_refused(mlp, base, tmp_path):
    # Before: json.loads raised RecursionError through load_bundle.
    deep = json.dumps(base).replace('"kwargs": {}', '"kwargs": {"x": ' + "[" * 100_000
                                    + "]" * 100_000 + "}", 1).encode()
    assert "graph.json: unreadable JSON (nested too deeply)" in _refused(
        mlp, tmp_path, graph_bytes=deep)


@pytest.mark.parametrize(("target", "content", "expected"), [
    ("graph.json", b"{not json", "graph.json: unreadable JSON"),
    ("graph.json", b'{"format": "hybridnb-graph/1", "inputs": [], "nodes": [' + b"1" * 5000
     + b"]}", "graph.json: unreadable JSON (Exceeds the limit"),
    ("graph.json", b'{"format": "hybridnb-graph/1", "inputs": [{"node": "x", "kind": '
     b'"input"}], "nodes": {"a": 1}, "outputs": []}', "graph.json: 'nodes' must be a list"),
    ("graph.json", b"\xff\xfe{}", "graph.json: unreadable JSON"),
    ("graph.json", b"[]", "graph.json: expected a JSON object"),
])
def test_malformed_graph_files(mlp, tmp_path, target, content, expected):
    assert expected in _refused(mlp, tmp_path, graph_bytes=content)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda m: m["inputs"][0].update(shape="abc"),
     "inputs[0]: shape 'abc'; expected -1 (the batch) and positive sizes"),
    (lambda m: m["inputs"][0].update(shape=[-1, 9]),
     "graph.json: node 0 ('linear', aten.linear.default): the operator refuses its "
     "arguments ("),
    (lambda m: m.update(inputs=[]), "'inputs' must list exactly one tensor"),
    (lambda m: m["outputs"][0].update(datatype="STRING"), "outputs[0]: the name must be"),
    (lambda m: m.update(labels=[1, 2, 3]), "'labels' must be a list of strings"),
    (lambda m: m.update(files=["graph.json"]), "'files' must map file names"),
    (lambda m: m.update(content_hash=7), "content_hash does not match"),
    (lambda m: m["outputs"][0].update(shape=[-1, 4]),
     "the graph's output is [-1, 3], the metadata declares [-1, 4]"),
])
def test_malformed_metadata(mlp, tmp_path, edit, expected):
    message = _refused(mlp, tmp_path, meta_edit=edit)
    assert "hybridnb-model.json" in message or "graph.json" in message
    assert expected in message


def test_digest_mismatch(mlp, tmp_path):
    path = _write(mlp[1], tmp_path)
    (path / "graph.json").write_text((path / "graph.json").read_text() + " ")
    with pytest.raises(BundleError, match=r"graph\.json: contents do not match the digest"):
        load_bundle(path)


def test_files_must_stay_inside_the_bundle(mlp, tmp_path):
    # A digest an attacker can compute does not help: the link itself is refused.
    outside = tmp_path / "outside.json"
    shutil.copy(mlp[1].path / "graph.json", outside)
    path = _write(mlp[1], tmp_path)
    (path / "graph.json").unlink()
    (path / "graph.json").symlink_to(outside)
    with pytest.raises(BundleError, match=r"graph\.json: links to .*outside\.json, outside "
                                          r"the bundle directory"):
        load_bundle(path)
    (path / "graph.json").unlink()
    (path / "graph.json").symlink_to("weights.safetensors")  # inside: followed, then hashed
    with pytest.raises(BundleError, match=r"graph\.json: contents do not match the digest"):
        load_bundle(path)


def test_pipes_devices_and_huge_files_are_refused_without_reading(mlp, tmp_path):
    path = _write(mlp[1], tmp_path)
    (path / "hybridnb-model.json").unlink()
    os.mkfifo(path / "hybridnb-model.json")  # before: read_text() blocked forever
    with pytest.raises(BundleError, match="not a regular file"):
        load_bundle(path)
    (path / "hybridnb-model.json").unlink()
    (path / "hybridnb-model.json").symlink_to("/dev/zero")
    with pytest.raises(BundleError, match="outside the bundle directory"):
        load_bundle(path)

    path = _write(mlp[1], tmp_path, name="big")
    with open(path / "graph.json", "ab") as fh:  # still valid JSON: 17 MiB of spaces
        fh.write(b" " * (17 << 20))
    meta = json.loads((path / "hybridnb-model.json").read_text())
    meta["files"]["graph.json"] = sha256_file(path / "graph.json")
    meta["content_hash"] = _content_hash(meta["files"])
    (path / "hybridnb-model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"graph\.json: 17\d+ bytes, more than the 16777216"):
        load_bundle(path)
    path = _write(mlp[1], tmp_path, name="big-weights")
    os.truncate(path / "weights.safetensors", 5 << 30)  # sparse: no disk used
    with pytest.raises(BundleError, match=r"weights\.safetensors: 5368709120 bytes, more"):
        load_bundle(path)


def test_weights_must_be_what_the_graph_declares(mlp, tmp_path):
    stored = safetensors.torch.load_file(mlp[1].path / "weights.safetensors")
    message = _refused(mlp, tmp_path, weights={**stored, "stolen": torch.zeros(4)})
    assert "weights.safetensors: tensor 'stolen' is not used by the graph" in message
    message = _refused(mlp, tmp_path, weights={**stored, "0.weight": stored["0.weight"].double()},
                       name="dtype")
    assert "tensor '0.weight' is float64[16, 8], the graph expects float32[16, 8]" in message
    del stored["0.bias"]
    message = _refused(mlp, tmp_path, weights=stored, name="missing")
    assert "tensor '0.bias' is missing (the graph uses it)" in message


# -- what still works -----------------------------------------------------------------------


class _Zoo1d(torch.nn.Module):
    """Sequences [B, 4, 16]: the non-core layers the policy lists for 1-d inputs."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.ln = nn.Conv1d(4, 8, 3, padding="same"), nn.LayerNorm(16)
        self.gn, self.ct = nn.GroupNorm(2, 8), nn.ConvTranspose1d(8, 4, 3)
        self.pools = nn.Sequential(nn.MaxPool1d(2), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(4))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        f = torch.nn.functional
        y = self.pools(self.ct(f.silu(self.gn(self.ln(self.c1(x))))))
        y = (torch.softmax(y, -1) + torch.log_softmax(y, -1) + f.gelu(y, approximate="tanh")
             + f.hardswish(y))
        y = y.transpose(1, 2).reshape(y.shape[0], -1)
        z = y @ self.fc.weight.t()
        return self.fc(y) + torch.tanh(z) + f.leaky_relu(z) + f.elu(z)


class _Zoo2d(torch.nn.Module):
    """Images [B, 3, 8, 8]: 2-d and 3-d layers, batch norm, dropout, casts, arange."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c, self.bn = nn.Conv2d(3, 4, 3, padding="same"), nn.BatchNorm2d(4)
        self.ct, self.c3 = nn.ConvTranspose2d(4, 4, 2, stride=2), nn.Conv3d(1, 2, 3, padding=1)
        self.emb, self.drop = nn.Embedding(10, 3), nn.Dropout(0.2)
        self.pool, self.ap = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2)
        self.register_buffer("scale", torch.full((16,), 3, dtype=torch.int8))

    def forward(self, x):
        y = self.pool(self.ct(torch.relu(self.bn(self.c(x)))))
        y = self.ap(self.drop(y)).flatten(1) * self.scale.float()
        v = self.c3(x.unsqueeze(1)).mean(dim=(1, 2, 3, 4)).double().float()
        e = self.emb(torch.arange(3)).sum()
        return torch.cat([y, v[:, None] + e], dim=1).clamp(-5, 5)


def _models():
    from hybridnb.train.models import digits_cnn, mlp

    nn = torch.nn
    return {
        "mlp": (mlp(), [64]), "mlp-2-hidden": (mlp(hidden=[32, 16]), [64]),
        "digits_cnn": (digits_cnn(), [1, 8, 8]), "test-mlp": (make_mlp(), [8]),
        "bn-dropout": (nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)),
                       [8]),
        "conv-pool": (nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1),
                                    nn.Flatten()), [1, 8, 8]),
        "zoo-1d": (_Zoo1d(), [4, 16]), "zoo-2d": (_Zoo2d(), [3, 8, 8]),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_hybridnb_models_load_and_serve_identically(name, tmp_path):
    torch.manual_seed(0)
    model, row = _models()[name]
    b = bundle(model.eval(), torch.randn(2, *row), tmp_path / name)
    for rows in (1, 7, 64):
        x = torch.randn(rows, *row)
        with torch.inference_mode():
            assert torch.allclose(b(x), model(x), rtol=1e-5, atol=1e-6), rows


def test_long_and_empty_batches(mlp, base):
    tensors = safetensors.torch.load_file(mlp[1].path / "weights.safetensors")
    graph = SafeGraph(base, tensors, input_shape=[-1, 8], limits=GraphLimits(max_batch=4))
    x = torch.randn(10, 8)
    with torch.inference_mode():
        assert torch.allclose(graph(x), mlp[0](x), atol=1e-6)  # in chunks of 4 rows
    assert graph(torch.zeros(0, 8)).shape == (0, 3)
    with pytest.raises(GraphError, match=r"the input is float64\[2, 8\]; the graph takes "
                                         r"float32\[-1, 8\]"):
        graph(torch.zeros(2, 8, dtype=torch.float64))


def test_a_model_the_policy_refuses_fails_when_bundled(tmp_path):
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.rand(4)

    with pytest.raises(GraphError, match=r"the model calls aten\.rand\.default, which a "
                                         r"bundle cannot serve: it draws from"):
        bundle(Noisy(), torch.zeros(2, 4), tmp_path / "noisy")
    assert not (tmp_path / "noisy").exists()


def _core_ops() -> set[str]:
    names = set()
    for schema in torch._C._jit_get_all_schemas():
        if schema.name.startswith("aten::"):
            packet = getattr(torch.ops.aten, schema.name[6:])
            op = getattr(packet, schema.overload_name or "default")
            if torch.Tag.core in op.tags:
                names.add(f"aten.{schema.name[6:]}.{schema.overload_name or 'default'}")
    return names


def test_the_policy_covers_the_core_set_and_only_safe_operators():
    excluded = set().union(*graph_policy.EXCLUDED_CORE.values())
    unclassified = _core_ops() - graph_policy.CORE_OPS - excluded
    assert not unclassified, f"new core ATen operators to classify in graph_policy: " \
                             f"{sorted(unclassified)}"
    assert graph_policy.CORE_OPS | excluded == _core_ops()
    for name in graph_policy.ALLOWED:
        _, packet, overload = name.split(".")
        op = getattr(getattr(torch.ops.aten, packet), overload)
        assert not op._schema.is_mutable, name
        if torch.Tag.nondeterministic_seeded in op.tags:  # random only in training mode
            assert any(key[0] == name for key in graph_policy.ARG_VALUES), name
        for arg in op._schema.arguments:
            kind = str(arg.real_type)
            assert "Generator" not in kind and "Storage" not in kind, (name, arg.name)
            if "str" in kind:
                assert (name, arg.name) in graph_policy.STRING_ENUMS, (name, arg.name)
    for names in graph_policy.EXTRA_OPS.values():
        assert not names & _core_ops()
