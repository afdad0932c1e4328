"""Interpreters exit with long-lived objects still open, and displays never wait on the
network.

Each exit case runs a short script in a fresh interpreter and leaves one object open at
the end, as a script or a notebook kernel does: a connection to a cluster kept by
``hybridnb cluster up``, a cluster, an endpoint, a training run, a metrics collector.
The interpreter must exit (within a deadline generous enough for a loaded machine: a
hang fails, nothing else is timed) with status 0 and no traceback, and what the object
started must be stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import hybridnb
from hybridnb.cli import main
from hybridnb.errors import OperationError
from hybridnb.state import StateStore, Status

EXIT_DEADLINE_S = 60


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; fail the test if it does not exit in time.

    The script runs in its own process group, so on a hang whatever it started (worker
    processes, replicas) is killed with it.
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the interpreter did not exit within {EXIT_DEADLINE_S} s (it hangs "
                    f"at exit); stdout:\n{out}\nstderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_clean_exit(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.split() == [expected], proc.stdout


def records(kind: str) -> list[Any]:
    return StateStore().list(kind)


@pytest.fixture
def kept_cluster(hybridnb_home, capsys):
    """A local cluster kept running by ``hybridnb cluster up``; stopped at the end."""
    name = "kept-for-exit"
    assert main(["cluster", "up", "local", "--workers", "1", "--threads", "1",
                 "--name", name]) == 0
    capsys.readouterr()
    try:
        yield name
    finally:
        main(["cluster", "down", name])


def test_connect_as_cluster_up_prints_it_exits(kept_cluster):
    proc = run_script(f"""
        import hybridnb
        c = hybridnb.connect({kept_cluster!r})
        print(c.client.submit(sum, [1, 2]).result())
    """)
    assert_clean_exit(proc, "3")
    # a connection closes at exit; the cluster it connected to keeps running
    with hybridnb.connect(kept_cluster) as again:
        assert again.client.submit(sum, [2, 3]).result() == 5


def test_cluster_left_open_exits_and_stops_its_workers(hybridnb_home):
    proc = run_script("""
        import hybridnb
        c = hybridnb.cluster("local", n_workers=1, threads_per_worker=1)
        print(c.client.submit(sum, [1, 2]).result())
    """)
    assert_clean_exit(proc, "3")
    (rec,) = records("cluster")
    assert rec.status is Status.stopped and rec.pids
    assert not [p for p in rec.pids if p.alive()]


@pytest.mark.slow
def test_endpoint_left_open_exits_and_stops_its_replicas(hybridnb_home, tmp_path):
    proc = run_script(f"""
        import torch, hybridnb
        from hybridnb.serve.model_bundle import bundle
        b = bundle(torch.nn.Linear(2, 1), torch.zeros(1, 2), {str(tmp_path / "m")!r},
                   name="lin")
        ep = hybridnb.deploy(b.path, replicas=1)
        print(ep.predict([[1.0, 2.0]]).shape[0])
    """)
    assert_clean_exit(proc, "1")
    (rec,) = records("endpoint")
    assert rec.status is Status.stopped and rec.pids
    assert not [p for p in rec.pids if p.alive()]


@pytest.mark.slow
def test_training_run_exits(hybridnb_home, tmp_path):
    spec = {"name": "tiny", "model": "digits_cnn", "data": "digits", "epochs": 1,
            "max_steps": 2, "batch_size": 16, "seed": 7}
    proc = run_script(f"""
        import hybridnb.train
        r = hybridnb.train.fit({spec!r}, nprocs=1, run_dir={str(tmp_path / "run")!r},
                               bundle=False)
        print(r.result["steps"])
    """)
    assert_clean_exit(proc, "2")
    (rec,) = records("run")
    assert rec.status is Status.succeeded


def test_collector_left_running_exits(hybridnb_home, tmp_path):
    proc = run_script(f"""
        import time
        from hybridnb.monitor.collector import Collector
        c = Collector(interval=0.1, store_path={str(tmp_path / "m.db")!r}).start()
        while c.rounds < 2:
            time.sleep(0.05)
        print(c.running)
    """)
    assert_clean_exit(proc, "True")
    assert (tmp_path / "m.db").exists()


def call_with_deadline(fn: Any, deadline: float = 60.0) -> Any:
    """``fn()`` in a thread; fail the test if it has not returned after ``deadline`` s."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"{fn} did not return within {deadline:g} s: it waits on the scheduler")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_display_never_waits_and_scheduler_calls_time_out(kept_cluster):
    """With the scheduler frozen (SIGSTOP: its port accepts, nothing answers), ``repr``
    and ``_repr_html_`` answer from stored fields and ``workers()`` fails within the
    handle's timeout instead of waiting forever."""
    import psutil

    with hybridnb.connect(kept_cluster, timeout=3) as c:
        assert len(c.workers()) == 1
        # Freeze the process that listens on the scheduler's port (the keeper's, for a
        # local cluster), found from its socket rather than assumed.
        port = int(c.scheduler_address.rsplit(":", 1)[1])
        (keeper,) = {conn.pid for conn in psutil.net_connections("tcp")
                     if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port}
        os.kill(keeper, signal.SIGSTOP)
        try:
            assert kept_cluster in call_with_deadline(lambda: repr(c))
            assert kept_cluster in call_with_deadline(c._repr_html_)
            with pytest.raises(OperationError, match="did not answer within 3 s"):
                call_with_deadline(c.workers)
        finally:
            os.kill(keeper, signal.SIGCONT)
