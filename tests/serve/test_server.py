"""The endpoint server in-process on uvicorn: protocols, limits, backpressure, auth."""

from __future__ import annotations

import concurrent.futures as cf
import re
import shutil
import subprocess
import time

import httpx
import numpy as np
import pytest
import torch

from .conftest import gated, infer_body

INFER = "/v2/models/mlp/infer"


def expected(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_round_trip(mlp, serve, binary):
    import tritonclient.http as triton

    model, _ = mlp
    srv = serve()
    client = triton.InferenceServerClient(url=f"127.0.0.1:{srv.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("mlp")
        meta = client.get_model_metadata("mlp")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
        assert meta["outputs"][0]["name"] == "output"
        x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("mlp", [inp], outputs=[
            triton.InferRequestedOutput("output", binary_data=binary)], request_id="r1")
        assert result.get_response()["id"] == "r1"
        np.testing.assert_allclose(result.as_numpy("output"), expected(model, x), atol=1e-5)
    finally:
        client.close()


def test_kserve_v1_round_trip(mlp, serve):
    model, _ = mlp
    srv = serve()
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    with httpx.Client(base_url=srv.url) as c:
        r = c.post("/v1/models/mlp:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["predictions"]), expected(model, x),
                                   atol=1e-5)
        assert c.get("/v1/models/mlp").json() == {"name": "mlp", "ready": True}
        assert c.post("/v1/models/other:predict", json={"instances": x.tolist()}
                      ).status_code == 404


def test_metadata_and_health(serve):
    srv = serve()
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2").json()["name"] == "hybridnb"
        meta = c.get("/v2/models/mlp").json()
        assert meta["versions"] == ["1"] and meta["parameters"]["labels"] == ["a", "b", "c"]
        assert c.get("/v2/models/mlp/versions/1").status_code == 200
        r = c.get("/v2/models/nope")
        assert r.status_code == 404 and "mlp" in r.json()["error"]
        assert c.get("/v2/models/mlp/versions/7").status_code == 404


def test_metrics_pass_promtool(serve):
    srv = serve()
    with httpx.Client(base_url=srv.url) as c:
        c.post(INFER, json=infer_body(torch.zeros(2, 8)))
        c.post(INFER, json={"bad": 1})
        text = c.get("/metrics").text
    for name in ("hybridnb_endpoint_requests_total", "hybridnb_endpoint_batch_size_bucket",
                 "hybridnb_endpoint_request_duration_seconds_bucket",
                 "hybridnb_endpoint_queue_depth", "hybridnb_endpoint_in_flight"):
        assert name in text
    assert re.search(r'hybridnb_endpoint_requests_total\{code="400",route="/v2/models/\{name\}'
                     r'/infer"\} 1\.0', text)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [0] * 8}]},
     422, "unknown input 'x'"),
    ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP64", "data": [0] * 8}]},
     422, "datatype 'FP64'"),
    ({"inputs": [{"name": "input", "shape": [1, 7], "datatype": "FP32", "data": [0] * 7}]},
     422, "shape [1, 7]"),
    ({"inputs": [{"name": "input", "shape": [2, 8], "datatype": "FP32", "data": [0] * 8}]},
     422, "8 values"),
    ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ["a"] * 8}]},
     422, "only numbers"),
    ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [1e39] * 8}]},
     422, "infinity"),
    ({"inputs": []}, 400, "one tensor"),
    ({"inputs": [{"name": "input", "shape": "1x8", "datatype": "FP32", "data": []}]},
     400, "list of integers"),
    ({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0] * 8}],
      "outputs": [{"name": "nope"}]}, 422, "unknown output"),
])
def test_schema_errors_are_4xx_with_a_message(serve, body, status, words):
    srv = serve()
    r = httpx.post(srv.url + INFER, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_not_json_is_400(serve):
    r = httpx.post(serve().url + INFER, content=b"{nope")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def _batches(text: str) -> tuple[float, float, float]:
    """Model calls, rows in them, and calls of more than 4 rows, from ``/metrics``."""
    def value(name: str) -> float:
        return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))

    count = value("hybridnb_endpoint_batch_size_count")
    return (count, value("hybridnb_endpoint_batch_size_sum"),
            count - value('hybridnb_endpoint_batch_size_bucket{le="4.0"}'))


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_request_over_max_batch_size_is_split(mlp, serve, binary):
    # More rows than max_batch_size: run as batches of at most 4 rows, answered in order.
    import tritonclient.http as triton

    model, _ = mlp
    srv = serve(max_batch_size=4)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{srv.port}")
    try:
        x = np.random.default_rng(2).standard_normal((10, 8)).astype(np.float32)
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("mlp", [inp], outputs=[
            triton.InferRequestedOutput("output", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("output"), expected(model, x), atol=1e-5)
    finally:
        client.close()
    assert _batches(httpx.get(srv.url + "/metrics").text) == (3.0, 10.0, 0.0)  # 4 + 4 + 2


@pytest.mark.parametrize("batching", [True, False])
def test_kserve_v1_request_over_max_batch_size_is_split(mlp, serve, batching):
    model, _ = mlp
    srv = serve(max_batch_size=4, batching=batching)
    x = np.random.default_rng(3).standard_normal((9, 8)).astype(np.float32)
    r = httpx.post(srv.url + "/v1/models/mlp:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), expected(model, x),
                               atol=1e-5)
    assert _batches(httpx.get(srv.url + "/metrics").text) == (3.0, 9.0, 0.0)  # 4 + 4 + 1
    # The body limit still bounds a request: that one is refused whole.
    small = serve(max_batch_size=4, max_body_bytes=2000)
    big = np.zeros((100, 8), np.float32).tolist()
    r = httpx.post(small.url + "/v1/models/mlp:predict", json={"instances": big})
    assert r.status_code == 413 and "limit is 2000" in r.json()["error"]


def test_body_limit_is_413(serve):
    srv = serve(max_body_bytes=1000)
    r = httpx.post(srv.url + INFER, json=infer_body(torch.zeros(60, 8)))
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b" " * 100

    r = httpx.post(srv.url + INFER, content=chunks())
    assert r.status_code == 413


def test_auth(serve, mlp):
    srv = serve(token="s3cret")
    with httpx.Client(base_url=srv.url) as c:
        body = infer_body(torch.zeros(1, 8))
        assert c.post(INFER, json=body).status_code == 401
        r = c.post(INFER, json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/v2/models/mlp").status_code == 401
        assert c.post("/v1/models/mlp:predict", json={"instances": [[0] * 8]}
                      ).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post(INFER, json=body, headers=ok).status_code == 200
        assert c.get("/v2/models/mlp", headers=ok).status_code == 200
        # Health and metrics stay open for probes and scrapers.
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mlp/ready",
                     "/metrics"):
            assert c.get(path).status_code == 200, path


def test_metrics_auth_asks_for_the_token(serve):
    srv = serve(token="s3cret", metrics_auth=True)
    with httpx.Client(base_url=srv.url) as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and "hybridnb_endpoint_requests_total" in r.text
        assert c.get("/v2/health/ready").status_code == 200  # probes stay open
    # Without a token there is nothing to ask for: loopback servers stay open.
    assert httpx.get(serve(metrics_auth=True).url + "/metrics").status_code == 200


def test_backpressure_is_deterministic(mlp, serve):
    model, b = mlp
    with gated(b) as (blocked, gate):
        srv = serve(blocked, max_in_flight=1, max_queue=1, max_latency_ms=0)
        xs = [np.full((1, 8), i, np.float32) for i in range(2)]
        with cf.ThreadPoolExecutor(2) as pool, httpx.Client(base_url=srv.url) as c:
            first = pool.submit(httpx.post, srv.url + INFER, json=infer_body(xs[0]), timeout=30)
            assert gate.entered.wait(10)  # the first request holds the model
            second = pool.submit(httpx.post, srv.url + INFER, json=infer_body(xs[1]),
                                 timeout=30)
            deadline = time.monotonic() + 10
            while "hybridnb_endpoint_queue_depth 1.0" not in c.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            for _ in range(3):  # full: refused at once, with a hint when to come back
                start = time.monotonic()
                r = c.post(INFER, json=infer_body(xs[0]))
                assert r.status_code == 503 and r.headers["retry-after"] == "1"
                assert time.monotonic() - start < 2
            gate.event.set()
            for fut, x in ((first, xs[0]), (second, xs[1])):
                r = fut.result(30)
                assert r.status_code == 200
                got = np.array(r.json()["outputs"][0]["data"]).reshape(1, 3)
                np.testing.assert_allclose(got, expected(model, x), atol=1e-5)
            assert "hybridnb_endpoint_rejected_total 3.0" in c.get("/metrics").text


def test_gauges_without_batching_follow_the_requests(mlp, serve):
    # Batching off reads the gauges at scrape time: they must still show the request
    # in the model and the one waiting for it, and fall back to zero afterwards.
    _, b = mlp
    with gated(b) as (blocked, gate):
        srv = serve(blocked, batching=False, inline_max_ms=0, max_in_flight=1, max_queue=2)
        xs = [np.full((1, 8), i, np.float32) for i in range(2)]
        with cf.ThreadPoolExecutor(2) as pool, httpx.Client(base_url=srv.url) as c:
            futs = [pool.submit(httpx.post, srv.url + INFER, json=infer_body(x), timeout=30)
                    for x in xs]
            deadline = time.monotonic() + 10
            while not {"hybridnb_endpoint_in_flight 1.0",
                       "hybridnb_endpoint_queue_depth 1.0"} <= set(
                           c.get("/metrics").text.splitlines()):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            gate.event.set()
            assert [f.result(30).status_code for f in futs] == [200, 200]
            lines = set(c.get("/metrics").text.splitlines())
        assert {"hybridnb_endpoint_in_flight 0.0", "hybridnb_endpoint_queue_depth 0.0",
                "hybridnb_endpoint_batch_size_count 2.0"} <= lines


def test_timeout_is_504_and_frees_the_slot(mlp, serve):
    _, b = mlp
    with gated(b) as (blocked, gate):
        srv = serve(blocked, max_in_flight=1, max_queue=0, request_timeout_s=0.3,
                    max_latency_ms=0)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.post(INFER, json=infer_body(torch.zeros(1, 8)))
            assert r.status_code == 504 and "0.3" in r.json()["error"]
            # The slot is free again: the next one is admitted (and times out), not 503.
            assert c.post(INFER, json=infer_body(torch.zeros(1, 8))).status_code == 504
            gate.event.set()
            deadline = time.monotonic() + 10
            while (r := c.post(INFER, json=infer_body(torch.zeros(1, 8)))).status_code != 200:
                assert r.status_code == 504 and time.monotonic() < deadline


def test_dynamic_batching_gathers_and_splits(mlp, serve):
    model, b = mlp
    with gated(b) as (blocked, gate):
        srv = serve(blocked, max_batch_size=16, max_latency_ms=50)
        xs = [np.random.default_rng(i).standard_normal((i + 1, 8)).astype(np.float32)
              for i in range(4)]
        with cf.ThreadPoolExecutor(5) as pool:
            warm = pool.submit(httpx.post, srv.url + INFER, json=infer_body(xs[0]), timeout=30)
            assert gate.entered.wait(10)
            futs = [pool.submit(httpx.post, srv.url + INFER, json=infer_body(x), timeout=30)
                    for x in xs]
            deadline = time.monotonic() + 10
            while "hybridnb_endpoint_queue_depth 4.0" not in httpx.get(srv.url + "/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            gate.event.set()
            assert warm.result(30).status_code == 200
            for fut, x in zip(futs, xs, strict=True):
                r = fut.result(30)
                got = np.array(r.json()["outputs"][0]["data"]).reshape(x.shape[0], 3)
                np.testing.assert_allclose(got, expected(model, x), atol=1e-5)
        assert gate.calls == 2  # the four queued requests ran as one batch of 10 rows
        text = httpx.get(srv.url + "/metrics").text
        assert "hybridnb_endpoint_batch_size_sum 11.0" in text


def test_refuses_open_non_loopback():
    from hybridnb.errors import UsageError
    from hybridnb.serve.auth import resolve_token

    with pytest.raises(UsageError, match="without a token"):
        resolve_token(None, "0.0.0.0", env={})
    assert resolve_token(None, "0.0.0.0", env={"HYBRIDNB_ENDPOINT_TOKEN": "t"}) == "t"
    assert resolve_token(None, "::1", env={}) is None
