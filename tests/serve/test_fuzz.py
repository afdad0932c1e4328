"""Fuzzed request bodies: the server answers 4xx (or 200), never 5xx."""

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
