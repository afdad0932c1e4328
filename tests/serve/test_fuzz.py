"""Fuzzing: the server answers request bodies with 4xx (or 200), never 5xx; the bundle
loader answers hostile graph and metadata files with ``GraphError``/``BundleError``, never
another exception."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                    st.integers(min_value=-(10**40), max_value=10**40), st.booleans())
junk = st.recursive(
    st.one_of(st.none(), numbers, st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=20)
shapes = st.one_of(st.lists(st.integers(-2, 10**12), max_size=4), junk)
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "x", ""]),
     "shape": shapes,
     "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "fp32"]),
     "data": st.one_of(st.lists(numbers, max_size=40),
                                 st.lists(st.lists(numbers, max_size=9), max_size=5), junk)},
    optional={"parameters": junk})
bodies = st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=2)},
                          optional={"outputs": junk, "id": junk, "parameters": junk}),
    st.fixed_dictionaries({"instances": st.one_of(st.lists(st.lists(numbers, max_size=9),
                                                           max_size=4), junk)}),
    junk)


def _dumps(body) -> bytes:
    # json (not orjson) on purpose: it writes NaN, Infinity and huge integers, as a sloppy
    # client might.
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def server(mlp):
    from hybridnb.serve.app import create_app
    from hybridnb.serve.server import ServerThread
    from hybridnb.serve.settings import ServeSettings

    with ServerThread(create_app(mlp[1], ServeSettings(max_latency_ms=0))) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, route=st.sampled_from(["/v2/models/mlp/infer", "/v1/models/mlp:predict"]))
def test_structured_junk_never_5xx(server, body, route):
    r = server.post(route, content=_dumps(body))
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 200:
        assert r.json()["error"]


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.binary(max_size=200),
       header=st.one_of(st.none(), st.text("0123456789x-+", min_size=1, max_size=4),
                        st.integers(-5, 300).map(str)))
def test_raw_bytes_never_5xx(server, raw, header):
    headers = {} if header is None else {"Inference-Header-Content-Length": header}
    r = server.post("/v2/models/mlp/infer", content=raw, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)


# -- graph files: whatever a bundle's graph.json holds, loading refuses it cleanly ----------

import copy  # noqa: E402

import safetensors.torch  # noqa: E402
import torch  # noqa: E402

from hybridnb.fileio import sha256_file  # noqa: E402
from hybridnb.serve import graph_policy  # noqa: E402
from hybridnb.serve.graph import GraphError, SafeGraph  # noqa: E402
from hybridnb.serve.model_bundle import BundleError, _content_hash, load_bundle  # noqa: E402

_NAMES = ["input", "linear", "relu", "linear_1", "p_0_weight", "p_2_bias", "nowhere", ""]
_OPS = (sorted(graph_policy.ALLOWED)[::7] + list(graph_policy.PY_OPS)
        + sorted(set().union(*graph_policy.EXCLUDED_CORE.values()))
        + ["aten.linear.default", "aten.relu.default", "aten.full.default", "aten.view.default",
           "aten.expand.default", "aten.from_file.default", "aten.add_.Tensor", "builtins.eval",
           "aten.__class__.__init__", "prims.device_put.default", "aten.linear", ""])
tags = st.one_of(
    st.builds(lambda n: {"$ref": n}, st.sampled_from(_NAMES)),
    st.builds(lambda d: {"$dtype": d}, st.sampled_from(["float32", "int8", "qint8", "__class__"])),
    st.builds(lambda d: {"$device": d}, st.sampled_from(["cpu", "meta", "cuda:0", "lazy"])),
    st.builds(lambda f: {"$float": f}, st.sampled_from(["inf", "nan", "1e400", "os"])),
    st.builds(lambda m: {"$memory_format": m}, st.sampled_from(["channels_last", "x"])),
    st.builds(lambda v: {"$layout": v}, st.sampled_from(["strided", "sparse_coo"])))
args = st.recursive(
    st.one_of(st.none(), numbers, st.text(max_size=8), tags,
              st.sampled_from([10**6, 2**40, 2**70, -1, 0, "same", "tanh", "cpu"])),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=12)
edits = st.one_of(
    st.tuples(st.just("op"), st.integers(0, 8), st.sampled_from(_OPS)),
    st.tuples(st.just("arg"), st.integers(0, 8), st.tuples(st.integers(0, 4), args)),
    st.tuples(st.just("kwarg"), st.integers(0, 8),
              st.tuples(st.sampled_from(["dtype", "device", "size", "approximate", "train",
                                         "inplace", "pin_memory", "x"]), args)),
    st.tuples(st.just("insert"), st.integers(0, 8),
              st.tuples(st.sampled_from(_OPS), st.lists(args, max_size=4))),
    st.tuples(st.just("delete"), st.integers(0, 8), st.none()),
    st.tuples(st.just("input"), st.integers(0, 5),
              st.tuples(st.sampled_from(["node", "kind", "key", "shape", "dtype"]), args)),
    st.tuples(st.just("top"), st.integers(0, 0),
              st.tuples(st.sampled_from(["format", "inputs", "nodes", "outputs"]), args)))


def _mutate(spec, edit):
    """Apply one edit; an edit that no longer fits the (already mutated) spec is skipped."""
    try:
        _edit(spec, *edit)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, ZeroDivisionError):
        pass


def _edit(spec, kind, i, value):
    nodes = spec["nodes"]
    node = nodes[i % len(nodes)] if nodes else None
    if kind == "op" and node:
        node["op"] = value
    elif kind == "arg" and node:
        j, arg = value
        node["args"][j % (len(node["args"]) + 1):] = [arg]
    elif kind == "kwarg" and node:
        node["kwargs"][value[0]] = value[1]
    elif kind == "insert":
        nodes.insert(i % (len(nodes) + 1), {"name": f"fuzz{i}", "op": value[0],
                                            "args": value[1], "kwargs": {}})
    elif kind == "delete" and node:
        nodes.remove(node)
    elif kind == "input":
        spec["inputs"][i % len(spec["inputs"])][value[0]] = value[1]
    elif kind == "top":
        spec[value[0]] = value[1]


@pytest.fixture(scope="module")
def real_graph(mlp):
    spec = json.loads((mlp[1].path / "graph.json").read_text())
    return spec, safetensors.torch.load_file(mlp[1].path / "weights.safetensors")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.lists(edits, min_size=1, max_size=4))
def test_mutated_graphs_are_loaded_or_refused_cleanly(real_graph, changes):
    spec = copy.deepcopy(real_graph[0])
    for edit in changes:
        _mutate(spec, edit)
    try:
        graph = SafeGraph(spec, real_graph[1], input_shape=[-1, 8])
    except GraphError as exc:
        assert str(exc)
        return
    try:  # what loads has bounded sizes; a kernel may still refuse a dtype when it runs
        out = graph(torch.zeros(3, 8))
    except RuntimeError:
        return
    assert out.shape[0] == 3


@pytest.fixture(scope="module")
def bundle_copy(mlp, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(mlp[1].path, path)
    return path


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=st.one_of(junk.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300),
                         st.builds(lambda v: json.dumps({"format": "hybridnb-graph/1",
                                                         "inputs": v, "nodes": v,
                                                         "outputs": v}).encode(), args)),
       target=st.sampled_from(["graph.json", "hybridnb-model.json"]))
def test_random_bundle_files_never_crash_the_loader(bundle_copy, mlp, content, target):
    for name in ("graph.json", "hybridnb-model.json"):
        (bundle_copy / name).write_bytes((mlp[1].path / name).read_bytes())
    (bundle_copy / target).write_bytes(content)
    if target == "graph.json":  # signed, as an attacker would
        meta = json.loads((bundle_copy / "hybridnb-model.json").read_text())
        meta["files"]["graph.json"] = sha256_file(bundle_copy / "graph.json")
        meta["content_hash"] = _content_hash(meta["files"])
        (bundle_copy / "hybridnb-model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_copy)
    assert target in str(info.value)
