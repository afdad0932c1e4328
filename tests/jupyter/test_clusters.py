"""Clusters through the REST routes: the keeper's, a kernel's, and their dashboards."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import psutil
import pytest

from .conftest import call


async def wait_cluster(jp_fetch, cluster_id, predicate, what, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        _, body = await call(jp_fetch, "GET", "clusters")
        found = next((c for c in body["clusters"] if c["id"] == cluster_id), None)
        if found is not None and predicate(found):
            return found
        assert time.monotonic() < deadline, f"{what}: {found}"
        await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_start_scale_adapt_stop(jp_fetch, jp_base_url, hybridnb_user):
    status, cluster = await call(jp_fetch, "POST", "clusters",
                                 body={"site": "local", "name": "side", "workers": 1,
                                       "threads": 1})
    assert status == 201, cluster
    assert cluster["status"] == "running" and cluster["started_from"] == "sidebar"
    assert cluster["controllable"] and cluster["dashboard"] == (
        f"{jp_base_url}hybridnb/dashboard/{cluster['id']}/status")
    from hybridnb.state import StateStore

    rec = StateStore().get(cluster["id"])
    keeper = [p.pid for p in rec.pids if "hybridnb.sites.keeper" in " ".join(
        psutil.Process(p.pid).cmdline())]
    assert keeper and keeper[0] != __import__("os").getpid()  # not the server's process
    await wait_cluster(jp_fetch, cluster["id"], lambda c: c["workers"] == 1, "one worker")

    status, body = await call(jp_fetch, "PATCH", "clusters", cluster["id"], body={"workers": 2})
    assert status == 202 and body["desired"]["workers"] == 2
    found = await wait_cluster(jp_fetch, cluster["id"], lambda c: c["workers"] == 2,
                               "scaled to two")
    assert found["threads"] == 2 and found["memory_bytes"] > 0
    assert found["applied"]["generation"] == body["desired"]["generation"]

    status, body = await call(jp_fetch, "PATCH", "clusters", cluster["id"],
                              body={"adapt": {"minimum": 1, "maximum": 1}})
    assert status == 202
    await wait_cluster(jp_fetch, cluster["id"], lambda c: (c["applied"] or {}).get("adapt")
                       == {"minimum": 1, "maximum": 1} and c["workers"] == 1, "adapting to one")

    status, body = await call(jp_fetch, "DELETE", "clusters", cluster["id"])
    assert status == 202 and body["status"] in ("stopped", "stopping"), body
    assert not psutil.pid_exists(keeper[0]) or psutil.Process(keeper[0]).status() == "zombie"
    _, listed = await call(jp_fetch, "GET", "clusters")
    assert listed["clusters"] == []
    _, listed = await call(jp_fetch, "GET", "clusters", params={"all": "1"})
    assert listed["clusters"][0]["status"] == "stopped"


@pytest.mark.parametrize("body, field", [
    ({"site": "mars"}, "site"), ({"site": "local", "workers": -1}, "workers"),
    ({"site": "local", "name": "../../etc"}, "name"), ({"sites": "local"}, "sites"),
    ({"site": "local", "adapt": {"minimum": 3, "maximum": 1}}, "adapt"),
])
async def test_bad_cluster_start(jp_fetch, hybridnb_user, body, field):
    status, answer = await call(jp_fetch, "POST", "clusters", body=body)
    assert status == 400 and answer["field"] == field, answer
    _, listed = await call(jp_fetch, "GET", "clusters", params={"all": "1"})
    assert listed["clusters"] == []  # nothing started


@pytest.fixture
def kernel_cluster(hybridnb_user):
    """A cluster started by another process, as a notebook kernel would start one."""
    code = ("import sys, hybridnb\n"
            "c = hybridnb.cluster('local', n_workers=1, threads_per_worker=1, "
            "processes=False, name='from-kernel')\n"
            "print('READY', c.record.id, flush=True)\n"
            "sys.stdin.read()\n"
            "c.close()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        yield line.split()[1]
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()


@pytest.mark.slow
async def test_cluster_of_a_kernel_is_listed_and_its_dashboard_proxied(
        jp_fetch, jp_serverapp, jp_http_port, jp_base_url, kernel_cluster):
    found = await wait_cluster(jp_fetch, kernel_cluster, lambda c: c["workers"] == 1,
                               "the kernel's cluster with its worker")
    assert found["name"] == "from-kernel" and found["started_from"] == "python"
    assert not found["controllable"]
    status, body = await call(jp_fetch, "PATCH", "clusters", kernel_cluster, body={"workers": 3})
    assert status == 409 and "kernel or script" in body["error"]

    resp = await jp_fetch("hybridnb", "dashboard", kernel_cluster, "status")
    assert resp.code == 200 and b"Dask" in resp.body
    await _bokeh_session_opens(resp.body.decode(), jp_serverapp, jp_http_port, jp_base_url,
                               kernel_cluster)
    resp = await jp_fetch("hybridnb", "dashboard", kernel_cluster, "json", "identity.json")
    assert b'"workers"' in resp.body
    # Nothing in the URL chooses the host: this stays on the recorded dashboard.
    status, _ = await call(jp_fetch, "GET", "dashboard", kernel_cluster, "@127.0.0.1:1",
                           "status")
    assert status == 404


async def _bokeh_session_opens(page, serverapp, port, base_url, cluster_id):
    """The page's Bokeh session over a WebSocket through the proxy: the server ACKs it."""
    import re

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    token = re.search(r'"token":"([^"]+)"', page).group(1)
    url = f"ws://127.0.0.1:{port}{base_url}hybridnb/dashboard/{cluster_id}/status/ws"
    request = HTTPRequest(url, headers={
        "Authorization": f"token {serverapp.identity_provider.token}"})
    ws = await websocket_connect(request, subprotocols=["bokeh", token])
    try:
        first = await asyncio.wait_for(ws.read_message(), 30)
        assert first is not None and '"msgtype":"ACK"' in first.replace(" ", ""), first
    finally:
        ws.close()


async def test_dashboard_refused_for_what_the_store_does_not_hold(jp_fetch, hybridnb_user):
    from hybridnb.state import Kind, StateStore, Status

    store = StateStore()
    stopped = store.add(Kind.cluster, "old", "local", status=Status.running,
                        spec={"dashboard": "http://127.0.0.1:1/status"})
    store.update(stopped.id, status=Status.stopped)
    run = store.add(Kind.run, "r", "local", status=Status.running,
                    spec={"dashboard": "http://127.0.0.1:1/status"})
    for target in ("no-such-cluster", stopped.id, run.id):
        status, body = await call(jp_fetch, "GET", "dashboard", target, "status")
        assert status == 404, (target, body)
