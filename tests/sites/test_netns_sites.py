"""Sites on several hosts without a cloud: network-namespace hosts joined by veth pairs.

Only loopback and the namespaces' own addresses are contacted; the fixtures tear
everything down, also on failure.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

import pytest

import hybridnb
from hybridnb.cli.worker import worker_command
from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.sites import security as tls
from hybridnb.sites.security import InsecureSiteWarning
from hybridnb.testing.netns import wait_for_port
from hybridnb.testing.netns_dask import scheduler_command, start_dask

from .conftest import listening

pytestmark = pytest.mark.netns

PORT = 8786
ANY = {"0.0.0.0", "::", "*", "[::]"}


def listening_in(host) -> set[tuple[str, int]]:
    """``(address, port)`` of every TCP socket listening in namespace ``host``."""
    out = host.run(["ss", "-Hltn"]).stdout
    found = set()
    for line in out.splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        found.add((addr.strip("[]").split("%")[0], int(port)))
    return found


def refused(address: str, **client_kwargs) -> bool:
    """Whether a Dask client at ``address`` is refused (within seconds)."""
    from distributed import Client

    start = time.monotonic()
    try:
        Client(address, timeout=3, **client_kwargs).close()
    except (OSError, TimeoutError):
        assert time.monotonic() - start < 30
        return True
    return False


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def where():
    from distributed import get_worker

    return get_worker().address


def test_scheduler_site_with_workers_in_two_namespaces(netns_hosts, store, fresh_warnings):
    """A `scheduler` site whose workers run on two other hosts as two sites; residency
    pinning keeps pii on the private host. The sites opt out of TLS: each says so."""
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
    with pytest.warns(InsecureSiteWarning) as seen:
        start_dask(hub, [(priv, "vault"), (edge, "edge1")], config, port=PORT)
        c = hybridnb.hybrid_cluster(["vault", "edge1"], scheduler_site="hub", config=config,
                                    store=store)
    ours = [str(w.message) for w in seen if issubclass(w.category, InsecureSiteWarning)]
    assert sorted(m.split("'")[1] for m in ours) == ["edge1", "hub", "vault"]  # once each
    assert all(address in m for m in ours)
    with c:
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


def ssh_site(sshd_host, **extra):
    return {"tier": "private", "backend": "ssh",
            "ssh": {"hosts": [sshd_host.address], "user": "root",
                    "key": str(sshd_host.client_key), "port": sshd_host.port,
                    "known_hosts": "ignore", "python": sys.executable},
            "capacity": {"cpu": 2, "memory": "2GiB"}, "classifications": ["public", "pii"],
            **extra}


def test_ssh_site_through_sshd_in_a_namespace(sshd_host, store):
    """An `ssh` site: hybridnb's SSH backend drives distributed's SSH processes against
    Debian's sshd running inside a namespace, with a generated key. Its scheduler
    listens on a real interface, so TLS is on although the site is private: a plain
    client, or a TLS client whose certificate the cluster did not issue, is refused. No
    process listens on all interfaces; the dashboard listens on the scheduler's host."""
    from distributed.security import Security

    addr = sshd_host.address
    config = load_config(overrides={"sites": {"rack": ssh_site(sshd_host)}})
    with hybridnb.cluster("rack", n_workers=2, threads_per_worker=1, config=config,
                          store=store) as c:
        c.wait_for_workers(2, timeout=60)
        assert c.scheduler_address.startswith(f"tls://{addr}:")
        assert c.security == "TLS (files)"
        workers = c.workers()
        assert {w.site for w in workers} == {"rack"}
        assert all(w.address.startswith(f"tls://{addr}:") for w in workers)
        assert c.compute(hybridnb_sum(), classification="pii") == 4950
        assert store.get(c.record.id).status.value == "running"

        port = port_of(c.scheduler_address)
        assert refused(f"tcp://{addr}:{port}")
        assert refused(c.scheduler_address, security=Security.temporary())

        dashboard = urlsplit(c.dashboard_link)
        assert dashboard.hostname == addr
        sockets = listening_in(sshd_host.host)
        assert (addr, dashboard.port) in sockets and (addr, port) in sockets
        assert not [s for s in sockets if s[0] in ANY], sockets
    assert store.get(c.record.id).status.value == "stopped"


def test_ssh_site_that_opts_out_of_tls_warns(sshd_host, store, fresh_warnings):
    config = load_config(overrides={"sites": {"rack": ssh_site(sshd_host, tls=False)}})
    with pytest.warns(InsecureSiteWarning, match=rf"site 'rack' .*tls: false.*"
                                                 rf"{sshd_host.address}.*run code as you"):
        c = hybridnb.cluster("rack", n_workers=1, threads_per_worker=1, config=config,
                             store=store)
    with c:
        assert c.scheduler_address.startswith(f"tcp://{sshd_host.address}:")
        assert c.client.submit(sum, [1, 2]).result() == 3
        assert not [s for s in listening_in(sshd_host.host) if s[0] in ANY]


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
    bridge), workers on an ssh site in a namespace. Both sites are private, yet TLS is
    on: their processes listen beyond loopback. The scheduler's dashboard stays on
    loopback here."""
    addr = sshd_host.address
    bridge = sshd_host.host.address.rsplit(".", 1)[0] + ".1"
    config = load_config(overrides={
        "sites": {
            "home": {"tier": "private", "backend": "local", "local": {"host": bridge},
                     "capacity": {"cpu": 1, "memory": "2GiB"},
                     "classifications": ["public", "pii"]},
            "burst": {"tier": "private", "backend": "ssh",
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
        assert refused(f"tcp://{bridge}:{port_of(c.scheduler_address)}")
        dashboard = urlsplit(c.dashboard_link)
        assert dashboard.hostname == "127.0.0.1"
        assert listening(os.getpid(), dashboard.port) == {("127.0.0.1", dashboard.port)}


def test_local_site_on_a_real_interface_uses_tls_and_keeps_its_dashboard_local(
        netns_hosts, store, fresh_warnings):
    """A local site given the bridge's address (so that workers of other hosts can join)
    is reachable from other hosts: TLS by default, and its dashboard is not reachable
    from them. Saying ``tls: false`` works, with a warning."""
    hosts = netns_hosts(1)
    bridge, (peer,) = hosts.root_address, hosts
    body = {"tier": "private", "backend": "local", "local": {"host": bridge},
            "capacity": {"cpu": 1, "memory": "1GiB"}}
    config = load_config(overrides={"sites": {"lab": body}})
    probe = ("import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])),"
             " timeout=3)")
    with hybridnb.cluster("lab", n_workers=1, threads_per_worker=1, config=config,
                          store=store) as c:
        assert c.scheduler_address.startswith(f"tls://{bridge}:")
        port = port_of(c.scheduler_address)
        assert refused(f"tcp://{bridge}:{port}")
        dashboard = urlsplit(c.dashboard_link)
        assert dashboard.hostname == "127.0.0.1"
        assert listening(os.getpid(), dashboard.port) == {("127.0.0.1", dashboard.port)}
        # from another host: the scheduler's port answers, the dashboard's does not
        assert peer.run([sys.executable, "-c", probe, bridge, str(port)],
                        check=False).returncode == 0
        assert peer.run([sys.executable, "-c", probe, bridge, str(dashboard.port)],
                        check=False).returncode != 0
    plain = load_config(overrides={"sites": {"lab": {**body, "tls": False}}})
    with pytest.warns(InsecureSiteWarning, match=rf"site 'lab' .*{bridge}"):
        c = hybridnb.cluster("lab", n_workers=1, threads_per_worker=1, config=plain,
                             store=store)
    with c:
        assert c.scheduler_address.startswith(f"tcp://{bridge}:")
