"""Sites on several hosts without a cloud: network-namespace hosts joined by veth pairs.

Only loopback and the namespaces' own addresses are contacted; the fixtures tear
everything down, also on failure.
"""

from __future__ import annotations

import sys
import time

import pytest

import hybridnb
from hybridnb.cli.worker import worker_command
from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.sites import security as tls
from hybridnb.testing.netns import wait_for_port
from hybridnb.testing.netns_dask import scheduler_command, start_dask

pytestmark = pytest.mark.netns

PORT = 8786


def where():
    from distributed import get_worker

    return get_worker().address


def test_scheduler_site_with_workers_in_two_namespaces(netns_hosts, store):
    """A `scheduler` site whose workers run on two other hosts as two sites; residency
    pinning keeps pii on the private host."""
    hub, priv, edge = netns_hosts(3)
    address = f"tcp://{hub.address}:{PORT}"
    sites = {"hub": ("private", ["public"]), "vault": ("private", ["public", "pii"]),
             "edge1": ("edge", ["public"])}
    config = load_config(overrides={
        "sites": {name: {"tier": tier, "backend": "scheduler", "tls": False,
                         "scheduler": {"address": address, "timeout": 10},
                         "capacity": {"cpu": 1, "memory": "1GiB"}, "classifications": cls}
                  for name, (tier, cls) in sites.items()},
        "datasets": {"records": {"site": "vault", "path": "/d", "classification": "pii"}}})
    start_dask(hub, [(priv, "vault"), (edge, "edge1")], config, port=PORT)
    with hybridnb.hybrid_cluster(["vault", "edge1"], scheduler_site="hub", config=config,
                                 store=store) as c:
        c.wait_for_workers(2, timeout=60)
        sites_by_addr = {w.address: w.site for w in c.workers()}
        assert sorted(sites_by_addr.values()) == ["edge1", "vault"]
        assert {a.split("//")[1].split(":")[0] for a in sites_by_addr} == {
            priv.address, edge.address}
        futs = c.client.map(lambda i: where(), range(20), pure=False, **c.pin(data="records"))
        assert {sites_by_addr[a] for a in c.client.gather(futs)} == {"vault"}
        futs = c.client.map(lambda i: where(), range(20), pure=False, **c.pin(sites="edge1"))
        assert {sites_by_addr[a] for a in c.client.gather(futs)} == {"edge1"}


def test_tls_scheduler_across_hosts_refuses_plain_clients(netns_hosts, store, tmp_path):
    hub, worker_host = netns_hosts(2)
    sec = tls.temporary(tmp_path / "certs")  # files: every namespace shares the disk
    cert, key = sec.tls_scheduler_cert, sec.tls_scheduler_key
    address = f"tls://{hub.address}:{PORT}"
    config = load_config(overrides={"sites": {"secure": {
        "tier": "public", "backend": "scheduler",
        "scheduler": {"address": address, "tls_ca_file": cert, "tls_cert": cert,
                      "tls_key": key, "timeout": 10},
        "capacity": {"cpu": 1, "memory": "1GiB"}, "classifications": ["public"]}}})
    assert config.site("secure").tls
    hub.popen(scheduler_command(hub.address, PORT, "--protocol", "tls", "--tls-ca-file", cert,
                                "--tls-cert", cert, "--tls-key", key))
    wait_for_port(hub.address, PORT)
    worker_host.popen(worker_command(address, "secure", config, nthreads=1,
                                     host=worker_host.address))
    with hybridnb.cluster("secure", config=config, store=store) as c:
        c.wait_for_workers(1, timeout=60)
        assert c.client.submit(sum, [1, 2]).result() == 3
        assert c.security == "TLS (files)"
        assert "BEGIN" not in repr(c) + c._repr_html_()
    from distributed import Client

    start = time.monotonic()
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://{hub.address}:{PORT}", timeout=3)
    assert time.monotonic() - start < 30
    plain = load_config(overrides={"sites": {"secure": {
        "tier": "public", "backend": "scheduler", "scheduler": {"address": f"tcp://{hub.address}:{PORT}"},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    with pytest.raises(UsageError, match="requires TLS"):
        hybridnb.cluster("secure", config=plain, store=store)


def test_ssh_site_through_sshd_in_a_namespace(sshd_host, store):
    """An `ssh` site: hybridnb's SSH backend drives distributed's SSH processes against
    Debian's sshd running inside a namespace, with a generated key."""
    addr = sshd_host.address
    config = load_config(overrides={"sites": {"rack": {
        "tier": "private", "backend": "ssh", "tls": False,
        "ssh": {"hosts": [addr], "user": "root", "key": str(sshd_host.client_key),
                "port": sshd_host.port, "known_hosts": "ignore", "python": sys.executable},
        "capacity": {"cpu": 2, "memory": "2GiB"}, "classifications": ["public", "pii"]}}})
    with hybridnb.cluster("rack", n_workers=2, threads_per_worker=1, config=config,
                          store=store) as c:
        c.wait_for_workers(2, timeout=60)
        assert c.scheduler_address.startswith(f"tcp://{addr}:")
        workers = c.workers()
        assert {w.site for w in workers} == {"rack"}
        assert all(w.address.startswith(f"tcp://{addr}:") for w in workers)
        assert c.compute(hybridnb_sum(), classification="pii") == 4950
        assert store.get(c.record.id).status.value == "running"
    assert store.get(c.record.id).status.value == "stopped"


def hybridnb_sum():
    import dask

    return dask.delayed(sum)(list(range(100)))


def test_ssh_remote_python_that_hangs_fails_within_start_timeout(sshd_host, store, tmp_path):
    """A remote interpreter that never starts (here: a "python" that only sleeps) fails
    after ``ssh.start_timeout`` with what was being started where — no notebook hang."""
    hang = tmp_path / "python"
    hang.write_text("#!/bin/sh\nexec sleep 20\n")
    hang.chmod(0o755)
    config = load_config(overrides={"sites": {"rack": {
        "tier": "private", "backend": "ssh", "tls": False,
        "ssh": {"hosts": [sshd_host.address], "user": "root",
                "key": str(sshd_host.client_key), "port": sshd_host.port,
                "known_hosts": "ignore", "python": str(hang), "start_timeout": 3},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    start = time.monotonic()
    with pytest.raises(hybridnb.OperationError) as info:
        hybridnb.cluster("rack", n_workers=1, config=config, store=store)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "scheduler" in message and sshd_host.address in message
    assert "start_timeout" in message and str(hang) in message


def test_ssh_host_that_refuses_is_a_clear_error(netns_hosts, store):
    (host,) = netns_hosts(1)  # no sshd listens there
    config = load_config(overrides={"sites": {"rack": {
        "backend": "ssh", "tls": False,
        "ssh": {"hosts": [host.address], "user": "root", "known_hosts": "ignore"},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    start = time.monotonic()
    with pytest.raises(hybridnb.OperationError) as info:
        hybridnb.cluster("rack", n_workers=1, config=config, store=store)
    assert time.monotonic() - start < 60
    assert "rack" in str(info.value) and host.address in str(info.value)


def test_hybrid_cluster_local_scheduler_with_ssh_workers_over_tls(sshd_host, netns_hosts,
                                                                  store):
    """hybridnb starts everything: the scheduler and a worker here (listening on the
    bridge), workers on an ssh site in a namespace; TLS because the ssh site is public."""
    addr = sshd_host.address
    bridge = sshd_host.host.address.rsplit(".", 1)[0] + ".1"
    config = load_config(overrides={
        "sites": {
            "home": {"tier": "private", "backend": "local", "local": {"host": bridge},
                     "capacity": {"cpu": 1, "memory": "2GiB"},
                     "classifications": ["public", "pii"]},
            "burst": {"tier": "public", "backend": "ssh",
                      "ssh": {"hosts": [addr], "user": "root",
                              "key": str(sshd_host.client_key), "port": sshd_host.port,
                              "known_hosts": "ignore", "python": sys.executable},
                      "capacity": {"cpu": 2, "memory": "2GiB"}, "classifications": ["public"]}},
        "datasets": {"records": {"site": "home", "path": "/d", "classification": "pii"}}})
    with hybridnb.hybrid_cluster(["home", "burst"], n_workers={"home": 1, "burst": 2},
                                 config=config, store=store) as c:
        c.wait_for_workers(3, timeout=90)
        assert c.scheduler_address.startswith(f"tls://{bridge}:")
        by_site = {w.address: w.site for w in c.workers()}
        assert sorted(by_site.values()) == ["burst", "burst", "home"]
        assert all(a.startswith(f"tls://{addr}:") for a, s in by_site.items() if s == "burst")
        futs = c.client.map(lambda i: where(), range(20), pure=False, **c.pin(data="records"))
        assert {by_site[a] for a in c.client.gather(futs)} == {"home"}
        assert "BEGIN" not in repr(c)
