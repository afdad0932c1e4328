"""A bundle's preprocessing: applied to raw inputs, validated as hostile data, old forms load."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridnb.data.preprocessing import FORMAT, Preprocessing
from hybridnb.errors import UsageError
from hybridnb.serve.model_bundle import BundleError, bundle, load_bundle

from .conftest import make_mlp

COLUMNS = [f"f{i}" for i in range(8)]
NAN = float("nan")


def table_preprocessing() -> dict:
    """fill → clip → scale over eight columns, as training from a prepared table writes."""
    return {"format": FORMAT, "kind": "table", "columns": COLUMNS,
            "steps": [{"op": "fill", "value": [0.5, None, 1.0, 2.0, None, 0.0, 0.0, 3.0],
                       "step": "fill_missing", "fit_on": {"split": "train", "rows": 90}},
                      {"op": "clip", "lower": [-1.0, None, 0.0, -5, None, None, None, None],
                       "upper": [1.0, 10.0, None, 5, None, None, None, None]},
                      {"op": "scale", "shift": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                       "scale": [1.0, 2.0, 4.0, 8.0, 0.5, 0.25, 10.0, 100.0]}],
            "not_applied": [], "dataset": {"name": "t", "pipeline": "p", "key": "k"}}


def expected(x: np.ndarray) -> np.ndarray:
    """What :func:`table_preprocessing` does, written out with NumPy."""
    p = table_preprocessing()["steps"]
    fill = np.array([NAN if v is None else v for v in p[0]["value"]])
    lo = np.array([-np.inf if v is None else v for v in p[1]["lower"]])
    hi = np.array([np.inf if v is None else v for v in p[1]["upper"]])
    x = np.where(np.isnan(x), fill, x)
    x = np.clip(x, lo, hi)
    return (x - np.array(p[2]["shift"])) / np.array(p[2]["scale"])


@pytest.fixture(scope="module")
def table_bundle(tmp_path_factory):
    model = make_mlp()
    b = bundle(model, torch.zeros(2, 8), tmp_path_factory.mktemp("pre") / "t",
               preprocessing=table_preprocessing())
    return model, b


def test_raw_rows_are_filled_clipped_and_scaled_in_the_call_path(table_bundle):
    model, b = table_bundle
    raw = np.random.default_rng(0).normal(0, 20, (16, 8))
    raw[::3, 0] = NAN
    raw[1::4, 4] = NAN  # no fill for f4: NaN stays NaN, as in the pipeline
    raw[:, 4] = np.where(np.isnan(raw[:, 4]), 1.0, raw[:, 4])
    with torch.no_grad():
        want = model(torch.from_numpy(expected(raw)).float()).numpy()
    got = load_bundle(b.path).predict(raw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # __call__ (what the endpoint's batcher runs) agrees with predict
    np.testing.assert_allclose(b(torch.from_numpy(raw).float()).numpy(), got, rtol=1e-6)
    # a DataFrame is taken by column name, whatever its column order
    frame = pd.DataFrame(raw, columns=COLUMNS)[COLUMNS[::-1]]
    np.testing.assert_allclose(b.predict(frame), got, rtol=1e-6)
    with pytest.raises(UsageError, match=r"lack column\(s\) 'f3'"):
        b.predict(frame.drop(columns=["f3"]))
    # Its tensors, first made under the endpoint's inference_mode, still serve autograd.
    x = torch.randn(2, 8, requires_grad=True)
    b.preprocessing.apply(x).sum().backward()
    assert x.grad is not None
    meta = json.loads((b.path / "hybridnb-model.json").read_text())
    assert meta["preprocessing"] == table_preprocessing()  # written as given, nulls kept
    assert b.preprocessing.describe() == "fill → clip → scale (fit on train, 90 rows)"
    assert "fill → clip → scale" in b._repr_html_()


def _with_meta(b, tmp_path, preprocessing):
    """A copy of bundle ``b`` whose metadata carries ``preprocessing`` (as a file might)."""
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(b.path, path)
    meta = json.loads((path / "hybridnb-model.json").read_text())
    meta["preprocessing"] = preprocessing
    (path / "hybridnb-model.json").write_text(json.dumps(meta))
    return path


def test_bundles_written_before_keep_loading(mlp, tmp_path):
    model, b = mlp
    # What bundle() wrote before: the statistics as given, other keys and all.
    path = _with_meta(b, tmp_path, {"mean": [1.0] * 8, "std": 2.0, "source": "digits"})
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(load_bundle(path)(x), model((x - 1.0) / 2.0), atol=1e-6)
    for empty in ({}, None, {"note": "no statistics"}):
        path = _with_meta(b, tmp_path / str(empty), empty)
        assert load_bundle(path).preprocessing is None


HOSTILE = [
    ({"format": FORMAT, "steps": [{"op": "exec", "code": "import os"}]},
     r"steps\[0\]\.op: unknown operation 'exec'"),
    ({"format": FORMAT, "steps": [{"op": "scale", "shift": "__import__('os')", "scale": 1}]},
     r"steps\[0\]\.shift: expected numbers, got str"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": ["1.5"] * 8}]},
     r"steps\[0\]\.value: expected numbers, got str '1\.5'"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": True}]}, r"got bool"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": NAN}]}, r"nan is not a finite"),
    ({"format": FORMAT, "steps": [{"op": "scale", "shift": 0, "scale": math.inf}]},
     r"inf is not a finite"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": 10**400}]}, r"not a finite"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": [[1.0], [1.0, 2.0]]}]},
     r"rectangular"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": [[[[[[[[[1.0]]]]]]]]]}]},
     r"more than 8 nested lists"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": [0.0] * 7}]},
     r"steps\[0\]\.value: shape \[7\] does not fit an input row of shape \[8\]"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": [0.0] * (1 << 20)}]},
     r"shape \[1048576\] does not fit"),
    ({"format": FORMAT, "columns": COLUMNS[:7], "steps": []}, r"7 columns for an input row"),
    ({"format": FORMAT, "columns": ["a"] * 8, "steps": []}, r"named twice"),
    ({"format": FORMAT, "columns": [1] * 8, "steps": []}, r"columns\[0\]: expected a string"),
    ({"format": FORMAT, "steps": [], "hook": "x"}, r"unknown key 'hook'"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": 0, "then": "rm -rf"}]},
     r"unknown key 'then' for 'fill'"),
    ({"format": "hybridnb-preprocessing/9", "steps": []}, r"format: .*expected"),
    ({"steps": [{"op": "fill", "value": 0}]}, r"format: None, expected"),
    ({"format": FORMAT, "steps": [{"op": "scale", "shift": 0, "scale": [1, 0] * 4}]},
     r"steps\[0\]\.scale contains zeros"),
    ({"format": FORMAT, "steps": [{"op": "scale", "shift": None, "scale": 1}]},
     r"null is not allowed"),
    ({"format": FORMAT, "steps": [{"op": "clip", "lower": 2, "upper": 1}]},
     r"lower bound is above its upper bound"),
    ({"format": FORMAT, "steps": [{"op": "clip", "lower": 0}]}, r"'clip' needs 'upper'"),
    ({"format": FORMAT, "steps": {"op": "fill"}}, r"steps: expected a list"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": 0}] * 65}, r"at most 64"),
    ({"format": FORMAT, "steps": ["fill"]}, r"steps\[0\]: expected an object"),
    ({"format": FORMAT, "kind": "pickle", "steps": []}, r"kind: 'pickle'"),
    ({"format": FORMAT, "steps": [{"op": "fill", "value": 0,
                                   "fit_on": {"split": "train", "rows": -1}}]},
     r"fit_on\.rows: expected a count"),
    ({"mean": [0.0] * 3, "std": 1.0}, r"preprocessing\.mean: shape \[3\] does not fit"),
    ({"mean": 0.0, "std": [0.0] * 8}, r"preprocessing\.std contains zeros"),
    # Found by the fuzz test: float32 endpoints would divide by 0 (an overflow in float64).
    ({"mean": 0.0, "std": 2.2250738585072014e-308}, r"preprocessing\.std has values below"),
    (["mean", "std"], r"expected a JSON object, got list"),
    ("(x - 1) / 2", r"expected a JSON object, got str"),
]


@pytest.mark.parametrize(("preprocessing", "message"), HOSTILE,
                         ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_preprocessing_is_refused_on_load_and_write(preprocessing, message, mlp,
                                                            tmp_path):
    model, b = mlp
    path = _with_meta(b, tmp_path, preprocessing)
    with pytest.raises(BundleError, match=message) as err:
        load_bundle(path)
    assert str(err.value).startswith(f"{path / 'hybridnb-model.json'}: preprocessing")
    with pytest.raises(UsageError, match=message):
        bundle(model, torch.zeros(2, 8), tmp_path / "new", preprocessing=preprocessing)
    assert not (tmp_path / "new").exists()


def test_preprocessing_needs_a_floating_point_input(tmp_path):
    class Embed(torch.nn.Module):
        def forward(self, x):
            return x.float() * 2

    with pytest.raises(UsageError, match="needs a floating-point input; the input is int64"):
        bundle(Embed(), torch.zeros(2, 3, dtype=torch.int64), tmp_path / "i",
               preprocessing={"mean": 1.0, "std": 2.0})


# -- fuzzing ------------------------------------------------------------------------------

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
_json = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=9), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=40)
_param = st.one_of(_leaf, st.lists(st.one_of(st.floats(-1e6, 1e6), st.none()),
                                   min_size=0, max_size=9), _json)
_step = st.fixed_dictionaries(
    {"op": st.sampled_from(["fill", "clip", "scale", "exec"])},
    optional={"value": _param, "lower": _param, "upper": _param, "shift": _param,
              "scale": _param, "step": _json, "fit_on": _json})
_document = st.one_of(
    _json,
    st.fixed_dictionaries({"format": st.just(FORMAT), "steps": st.lists(_step, max_size=4)},
                          optional={"columns": _json, "kind": _json, "not_applied": _json,
                                    "dataset": _json}),
    st.fixed_dictionaries({"mean": _param, "std": _param}))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document)
def test_fuzzed_preprocessing_is_refused_cleanly_or_applies(document):
    try:
        pre = Preprocessing.parse(document, shape=[8])
    except UsageError as exc:
        assert str(exc).startswith("preprocessing")
        return
    if pre is None:
        return
    x = np.random.default_rng(0).normal(0, 10, (3, 8))
    out = pre.apply(x)
    assert out.shape == (3, 8)
    again = Preprocessing.parse(json.loads(json.dumps(pre.to_json())), shape=[8])
    np.testing.assert_array_equal(again.apply(x), out)  # the written form reads back
    t = pre.apply(torch.from_numpy(x).float())
    assert t.dtype == torch.float32 and t.shape == (3, 8)
