"""A model trained on a prepared table serves raw rows: its bundle carries the transform.

scikit-learn's wine table (bundled, no download) has features on scales from 0.1 to
1,680: a model trained on standardised rows is near chance on raw ones, so an endpoint
that forgot the pipeline's statistics cannot pass.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

from hybridnb.data import Pipeline, read_parquet
from hybridnb.serve.app import create_app
from hybridnb.serve.compress_bundle import compress
from hybridnb.serve.model_bundle import load_bundle
from hybridnb.serve.server import ServerThread
from hybridnb.train import fit

from .conftest import tiny

SPLIT = {"split": {"train": 0.7, "validation": 0.1, "test": 0.2, "seed": 0}}


def _frame(result, split):
    files = sorted((result.path / split).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


@pytest.fixture
def wine(tmp_path, hybridnb_home):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.rename(columns={"target": "label"})
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    src = tmp_path / "wine"
    src.mkdir()
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(src / "part0.parquet")
    frame.iloc[half:].to_parquet(src / "part1.parquet")
    ds = read_parquet(sorted(src.glob("*.parquet")), target="label", name="wine")
    cache = tmp_path / "cache"
    # The split alone gives the same rows per split, untransformed: the raw test rows.
    raw = Pipeline([SPLIT], name="wine-raw").run(ds, out=tmp_path / "raw", cache_dir=cache,
                                                 progress=False)
    prepared = Pipeline([SPLIT, {"clip_outliers": {"sigma": 4}}, {"standard_scale": {}}],
                        name="wine").run(ds, out=tmp_path / "prepared", cache_dir=cache,
                                         progress=False)
    return raw, prepared


@pytest.mark.slow
def test_the_endpoint_answers_raw_rows_as_well_as_training_scored_them(wine, tmp_path, store):
    raw, prepared = wine
    test = _frame(raw, "test")
    features = [c for c in test.columns if c != "label"]
    assert len(test) == prepared.counts["test"]
    spec = tiny(name="wine", model={"factory": "mlp",
                                    "kwargs": {"in_features": 13, "hidden": [32],
                                               "num_classes": 3}},
                data={"path": str(prepared.path)}, epochs=10, max_steps=None, batch_size=8,
                log_every=50, optimizer={"name": "adam", "lr": 0.01})
    result = fit(spec, nprocs=1, run_dir=tmp_path / "run", store=store)
    trained = result.accuracy
    assert trained >= 0.85  # a real model: the comparison below means something

    b = load_bundle(result.bundle)
    pre = b.meta["preprocessing"]
    assert pre["columns"] == features and [s["op"] for s in pre["steps"]] == ["clip", "scale"]
    assert {s["fit_on"]["split"] for s in pre["steps"]} == {"train"}
    rows = test[features].to_numpy(dtype=np.float32)  # raw: proline is in the hundreds
    assert rows.max() > 100
    labels = test["label"].to_numpy()

    # In process: Bundle.predict on the raw rows, as an array and as a shuffled DataFrame.
    direct = b.predict(rows).argmax(axis=1)
    assert abs(float(np.mean(direct == labels)) - trained) <= 0.03
    shuffled = test[features[::-1]]
    assert (b.predict(shuffled).argmax(axis=1) == direct).all()

    # Over HTTP on loopback (uvicorn): the Open Inference Protocol and KServe v1 agree.
    with ServerThread(create_app(b)) as srv, httpx.Client(base_url=srv.url) as client:
        body = {"inputs": [{"name": b.input.name, "shape": list(rows.shape),
                            "datatype": "FP32", "data": rows.flatten().tolist()}]}
        r = client.post(f"/v2/models/{b.name}/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        v2 = np.asarray(out["data"]).reshape(out["shape"]).argmax(axis=1)
        r = client.post(f"/v1/models/{b.name}:predict", json={"instances": rows.tolist()})
        assert r.status_code == 200, r.text
        v1 = np.asarray(r.json()["predictions"]).argmax(axis=1)
    assert (v2 == direct).all() and (v1 == direct).all()
    served = float(np.mean(v2 == labels))
    assert abs(served - trained) <= 0.03, (served, trained)

    # hybridnb compress --eval PREPARED scores the bundle on the same test rows: the
    # shards hold transformed rows, which it turns back into raw ones for the bundle.
    report = compress(b, tmp_path / "small", quantize=None, prune=0.2,
                      eval_data=str(prepared.path), batch_sizes=(2,), repeats=2)
    assert report.eval_rows == len(test)
    assert report.accuracy["before"] == pytest.approx(served, abs=1e-9)
