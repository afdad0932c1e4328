"""The ``scheduler`` backend against a real scheduler, workers started by ``hybridnb worker``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

import hybridnb
from hybridnb.cli.worker import worker_command
from hybridnb.config import load_config
from hybridnb.errors import OperationError, UsageError
from hybridnb.testing import stop_processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scheduler_cloud(hybridnb_home):
    """A dask scheduler on loopback, one worker for each of two sites sharing it."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    sites = {
        name: {"tier": tier, "backend": "scheduler", "tls": False,
               "scheduler": {"address": address, "timeout": 5},
               "capacity": {"cpu": 1, "memory": "2GiB"}, "classifications": classes}
        for name, tier, classes in (("hub", "private", ["public", "pii"]),
                                    ("edge1", "edge", ["public"]))}
    config = load_config(overrides={"sites": sites, "datasets": {
        "scans": {"site": "hub", "path": "/d", "classification": "pii"}}})
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for site in ("hub", "edge1"):
            cmd = worker_command(address, site, config, nthreads=1, host="127.0.0.1",
                                 name=f"w-{site}")
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        yield config
    finally:
        stop_processes(*procs)


def where():
    from distributed import get_worker

    return get_worker().address


def test_connect_to_scheduler_and_pin_by_site_tags(scheduler_cloud, store):
    config = scheduler_cloud
    with hybridnb.hybrid_cluster(["hub", "edge1"], config=config, store=store) as c:
        c.wait_for_workers(2, timeout=60)
        sites = {w.address: w.site for w in c.workers()}
        assert sorted(sites.values()) == ["edge1", "hub"]
        futs = c.client.map(lambda i: where(), range(10), pure=False, **c.pin(data="scans"))
        assert {sites[a] for a in c.client.gather(futs)} == {"hub"}
        with pytest.raises(UsageError, match="only connected"):
            c.scale(4)
    # closing a connection leaves the scheduler running
    with hybridnb.cluster("hub", config=config, store=store) as again:
        assert len(again.workers()) == 2
    with pytest.raises(UsageError, match="set where its workers are started"):
        hybridnb.cluster("hub", n_workers=2, config=config, store=store)


def test_unreachable_scheduler_times_out_with_address(hybridnb_home, store):
    port = free_port()  # nothing listens there
    config = load_config(overrides={"sites": {"gone": {
        "backend": "scheduler", "scheduler": {"address": f"tcp://127.0.0.1:{port}",
                                              "timeout": 2},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    start = time.monotonic()
    with pytest.raises(OperationError) as info:
        hybridnb.cluster("gone", config=config, store=store)
    assert time.monotonic() - start < 30
    assert f"127.0.0.1:{port}" in str(info.value) and "gone" in str(info.value)
    (rec,) = store.list()
    assert rec.status.value == "failed" and rec.error


def test_tls_site_refuses_a_plain_address(hybridnb_home, store):
    config = load_config(overrides={"sites": {"cloud": {
        "tier": "public", "backend": "scheduler",
        "scheduler": {"address": "tcp://127.0.0.1:1"},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    with pytest.raises(UsageError, match="requires TLS but its scheduler address is tcp://"):
        hybridnb.cluster("cloud", config=config, store=store)
    config = load_config(overrides={"sites": {"cloud": {
        "tier": "public", "backend": "scheduler",
        "scheduler": {"address": "tls://127.0.0.1:1"},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    with pytest.raises(UsageError, match="lacks tls_ca_file, tls_cert, tls_key"):
        hybridnb.cluster("cloud", config=config, store=store)
    assert store.list() == []  # refused before anything started


def test_different_schedulers_cannot_form_one_hybrid(hybridnb_home, store):
    config = load_config(overrides={"sites": {
        n: {"backend": "scheduler", "scheduler": {"address": f"tcp://127.0.0.1:{p}"},
            "capacity": {"cpu": 1, "memory": "1GiB"}} for n, p in (("a", 1), ("b", 2))}})
    with pytest.raises(UsageError, match="different schedulers"):
        hybridnb.hybrid_cluster(["a", "b"], config=config, store=store)
