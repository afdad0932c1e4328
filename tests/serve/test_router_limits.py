"""The router's own limits and what it retries: body cap, admission, timeouts, 503s.

The router is the real app on uvicorn (in a thread, as a deployment runs it) in front of
real replicas: processes where a test pauses one (SIGSTOP: slow, not dead), or servers
in threads whose model is gated where a test needs a replica to be full. No health loop
runs here, so every health verdict seen is the router's own.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hybridnb.serve.app import create_app
from hybridnb.serve.process import ServerProcess, start_server
from hybridnb.serve.router import ReplicaPool
from hybridnb.serve.router_app import create_router_app
from hybridnb.serve.server import ServerThread
from hybridnb.serve.settings import ServeSettings
from hybridnb.testing.waiting import wait_until

from .conftest import gated, infer_body

INFER = "/v2/models/mlp/infer"
X = infer_body(np.ones((1, 8), np.float32))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(url: str, name: str, **labels: str) -> float:
    return samples(httpx.get(url + "/metrics").text).get(
        (name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def replicas(mlp, tmp_path_factory) -> Iterator[list[ServerProcess]]:
    with pytest.MonkeyPatch.context() as env:  # their logs go to a state home of their own
        env.setenv("HYBRIDNB_HOME", str(tmp_path_factory.mktemp("state")))
        with cf.ThreadPoolExecutor(2) as pool:
            procs = list(pool.map(lambda _: start_server(
                mlp[1].path, settings=ServeSettings(batching=False), record=False), range(2)))
        yield procs
        for proc in procs:
            proc.stop(grace=10)


@contextmanager
def router(*urls: str, **options) -> Iterator[tuple[ServerThread, ReplicaPool]]:
    pool = ReplicaPool()
    for url in urls:
        pool.add(url)
    with ServerThread(create_router_app(pool, **options)) as srv:
        yield srv, pool


@contextmanager
def paused(proc: ServerProcess) -> Iterator[None]:
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)  # never leave it stopped


def test_body_over_the_limit_is_413_at_the_router(replicas):
    a, _ = replicas
    before = sample(a.url, "hybridnb_endpoint_requests_total", code="413",
                    route="/v2/models/{name}/infer")
    with router(a.url, settings=ServeSettings(max_body_bytes=1000)) as (srv, _):
        big = infer_body(np.zeros((60, 8), np.float32))  # the replica would take it
        r = httpx.post(srv.url + INFER, json=big)
        assert r.status_code == 413 and "limit is 1000" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b" " * 100

        r = httpx.post(srv.url + INFER, content=chunks())
        assert r.status_code == 413 and "over the limit of 1000" in r.json()["error"]
        assert httpx.post(srv.url + INFER, json=X).status_code == 200
        assert sample(srv.url, "hybridnb_router_requests_total", code="413", replica="none",
                      version="none") == 2
    # Refused at the router: the replica never saw either body.
    assert sample(a.url, "hybridnb_endpoint_requests_total", code="413",
                  route="/v2/models/{name}/infer") == before


def test_timeout_is_504_for_that_request_only(replicas):
    a, b = replicas
    with router(a.url, b.url, timeout_s=1.0) as (srv, pool), httpx.Client(
            base_url=srv.url, timeout=30) as c:
        fast, slow = pool.replicas
        served = sample(a.url, "hybridnb_endpoint_requests_total", code="200",
                        route="/v2/models/{name}/infer")
        with paused(b):
            assert c.post(INFER, json=X).status_code == 200  # round robin: a first
            r = c.post(INFER, json=X)  # then b, which cannot answer
            assert r.status_code == 504 and "not sent again" in r.json()["error"]
            # Slow is not dead: still in rotation, and nothing was sent elsewhere.
            assert slow.healthy and fast.healthy
            assert sample(srv.url, "hybridnb_router_retries_total") == 0
            assert sample(a.url, "hybridnb_endpoint_requests_total", code="200",
                          route="/v2/models/{name}/infer") == served + 1
        assert [c.post(INFER, json=X).status_code for _ in range(2)] == [200, 200]
        assert sample(srv.url, "hybridnb_router_requests_total", code="504",
                      replica=str(slow.index), version="stable") == 1


def test_router_admission_refuses_at_once(replicas):
    a, _ = replicas
    limits = ServeSettings(max_in_flight=1, max_queue=1)  # the router holds 2 per replica
    with router(a.url, settings=limits) as (srv, _), cf.ThreadPoolExecutor(2) as pool:
        with paused(a):
            held = [pool.submit(httpx.post, srv.url + INFER, json=X, timeout=30)
                    for _ in range(2)]
            wait_until(lambda: sample(srv.url, "hybridnb_router_in_flight") == 2,
                       what="two requests held at the router")
            # Full: refused by the router itself, without waiting for the replica.
            r = httpx.post(srv.url + INFER, json=X, timeout=10)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "capacity" in r.json()["error"]
        assert [f.result(30).status_code for f in held] == [200, 200]
        assert sample(srv.url, "hybridnb_router_rejected_total") == 1
        assert httpx.post(srv.url + INFER, json=X).status_code == 200  # slots freed


def test_a_replicas_503_is_retried_on_another(mlp):
    # A full replica refuses unprocessed (503): the router sends the request to the
    # other one. When no other is left, the replica's 503 reaches the client as it was.
    _, b = mlp
    full = ServeSettings(max_in_flight=1, max_queue=0, max_latency_ms=0)
    with gated(b) as (blocked, gate), \
            ServerThread(create_app(blocked, full)) as a, \
            ServerThread(create_app(b)) as other, cf.ThreadPoolExecutor(1) as pool, \
            router(a.url, other.url) as (srv, _):
        first = pool.submit(httpx.post, srv.url + INFER, json=X, timeout=30)  # to a
        assert gate.entered.wait(10)  # a is full now
        assert httpx.post(srv.url + INFER, json=X).status_code == 200  # to other
        r = httpx.post(srv.url + INFER, json=X)  # to a, refused, then other
        assert r.status_code == 200
        assert sample(srv.url, "hybridnb_router_retries_total") == 1
        assert sample(a.url, "hybridnb_endpoint_rejected_total") == 1
        with router(a.url) as (alone, _):
            r = httpx.post(alone.url + INFER, json=X)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "capacity" in r.json()["error"]
        gate.event.set()
        assert first.result(30).status_code == 200


def test_metrics_auth_at_the_router(replicas):
    a, _ = replicas
    settings = ServeSettings(metrics_auth=True)
    with router(a.url, settings=settings, token="tok") as (srv, _):
        assert httpx.get(srv.url + "/metrics").status_code == 401
        r = httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer tok"})
        assert r.status_code == 200 and "hybridnb_router_requests_total" in r.text
        assert httpx.get(srv.url + "/v2/health/ready").status_code == 200
    with router(a.url, token="tok") as (srv, _):  # the default keeps scrapes open
        assert httpx.get(srv.url + "/metrics").status_code == 200
