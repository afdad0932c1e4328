"""Endpoint server subprocesses: start, record, drain on SIGTERM, list and stop."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from hybridnb.errors import OperationError
from hybridnb.serve.process import start_server
from hybridnb.serve.settings import ServeSettings
from hybridnb.state import Kind, StateStore, Status

from .conftest import infer_body

INFER = "/v2/models/mlp/infer"


def test_start_record_and_stop(mlp, hybridnb_home):
    model, b = mlp
    store = StateStore()
    with start_server(b.path, name="mlp", store=store, token="tok") as srv:
        rec = store.list(Kind.endpoint)[0]
        assert rec.status is Status.running and rec.address == srv.url
        assert rec.pids[0].pid == srv.pid and rec.spec["auth"] is True
        assert srv.url.startswith("http://127.0.0.1:")
        x = np.ones((2, 8), np.float32)
        assert httpx.post(srv.url + INFER, json=infer_body(x)).status_code == 401
        r = httpx.post(srv.url + INFER, json=infer_body(x), headers=srv.headers)
        with torch.no_grad():
            np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"]).reshape(2, 3),
                                       model(torch.as_tensor(x)).numpy(), atol=1e-5)
    assert not srv.alive() and srv.proc.returncode == 0
    assert store.get(rec.id).status is Status.stopped


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(mlp, hybridnb_home):
    # A long batching window holds requests in the queue, so they are surely in flight
    # when SIGTERM arrives.
    settings = ServeSettings(max_latency_ms=1500, max_batch_size=64)
    srv = start_server(mlp[1].path, settings=settings, record=False)
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(httpx.post, srv.url + INFER,
                                json=infer_body(np.full((1, 8), i, np.float32)), timeout=30)
                    for i in range(4)]
            deadline = time.monotonic() + 10
            while "hybridnb_endpoint_queue_depth 4.0" not in httpx.get(srv.url + "/metrics").text:
                assert time.monotonic() < deadline, "requests never queued"
                time.sleep(0.02)
            srv.terminate()
            codes = [f.result(30).status_code for f in futs]
        assert codes == [200] * 4
        assert srv.proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):  # and it no longer listens
            httpx.get(srv.url + "/v2/health/live", timeout=2)
    finally:
        srv.stop(grace=5)


def test_bad_bundle_fails_with_the_log(tmp_path, hybridnb_home):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OperationError, match=r"hybridnb-model\.json"):
        start_server(tmp_path / "empty", record=False, timeout=30)


def test_endpoints_list_and_stop(mlp, hybridnb_home):
    from hybridnb.cli.serve import endpoints_app

    app = typer.Typer()
    app.add_typer(endpoints_app, name="endpoints")
    runner = CliRunner()
    srv = start_server(mlp[1].path, name="mlp")
    try:
        out = runner.invoke(app, ["endpoints", "list"])
        assert out.exit_code == 0 and "mlp" in out.output and "running" in out.output
        out = runner.invoke(app, ["endpoints", "stop", "mlp", "--grace", "10"])
        assert out.exit_code == 0, out.output
        assert srv.proc.wait(10) is not None
        assert "no endpoints" in runner.invoke(app, ["endpoints", "list"]).output
        out = runner.invoke(app, ["endpoints", "stop", "mlp"])
        assert out.exit_code != 0 and "no running endpoint" in str(out.exception)
    finally:
        srv.stop(grace=5)


OWNER = """
import sys
from hybridnb.serve.process import start_server
srv = start_server(sys.argv[1], record=False)
print(srv.pid, flush=True)
sys.stdin.read()  # until SIGKILL
"""


def test_a_replica_exits_when_its_owner_is_killed(mlp, hybridnb_home):
    """An owned server (``record=False``: a deployment's replica) drains and exits when the
    process that started it dies, even by SIGKILL (``hybridnb deploy`` killed, a kernel
    that crashed), instead of serving on as an orphan nobody stops."""
    import os
    import signal
    import subprocess
    import sys

    from hybridnb.testing.waiting import wait_until

    with subprocess.Popen([sys.executable, "-c", OWNER, str(mlp[1].path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as owner:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{pid}/stat") as f:  # a zombie until its new parent reaps it
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"

        assert not gone()
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        wait_until(gone, timeout=60, what=f"the orphaned replica (pid {pid}) to exit")
