"""Namespace hosts: addresses, traffic between them, Dask across them, full teardown."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from hybridnb.testing.netns import (
    NetnsHosts,
    cleanup_stale,
    leftovers,
    skip_reason,
    wait_for_port,
)
from hybridnb.testing.pytest_plugin import netns_hosts  # noqa: F401 - fixture

needs_netns = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

# A one-connection-at-a-time TCP echo server: argv[1] address, argv[2] port.
ECHO_SERVER = textwrap.dedent("""
    import socket, sys
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(conn.recv(1024))
""")
ECHO_CLIENT = textwrap.dedent("""
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        s.sendall(sys.argv[3].encode())
        print(s.recv(1024).decode())
""")


def echo_from_root(address: str, port: int, text: str) -> str:
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(text.encode())
        return s.recv(1024).decode()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_skip_reason_and_arguments_are_checked():
    reason = skip_reason()
    assert reason is None or reason.strip()
    with pytest.raises(ValueError, match="between 1 and 200"):
        NetnsHosts(0)
    with pytest.raises(ValueError, match="prefix"):
        NetnsHosts(2, prefix="far-too-long")


def test_importing_the_package_stays_cheap():
    code = ("import sys, hybridnb.testing as t; "
            "print(any(m.startswith(('hybridnb.testing.', 'pytest', 'distributed')) "
            "for m in sys.modules)); print(t.NetnsHosts.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "hybridnb.testing.netns"]


@pytest.mark.netns
def test_hosts_have_their_own_addresses_and_reach_each_other(netns_hosts):  # noqa: F811
    hosts = netns_hosts(3)
    a, b, c = hosts
    assert len({h.address for h in hosts} | {hosts.root_address}) == 4
    assert all(len(name) <= 15 for name in hosts.names()["links"])
    for host in hosts:
        eth0 = json.loads(host.run(["ip", "-j", "-4", "addr", "show", "eth0"]).stdout)
        assert eth0[0]["addr_info"][0]["local"] == host.address
        assert "UP" in host.run(["ip", "link", "show", "lo"]).stdout

    server = a.popen([sys.executable, "-c", ECHO_SERVER, a.address, "7000"])
    wait_for_port(a.address, 7000)
    for client in (b, c):
        out = client.run([sys.executable, "-c", ECHO_CLIENT, a.address, "7000", client.name])
        assert out.stdout.strip() == client.name, a.log_text()
    assert echo_from_root(a.address, 7000, "root") == "root"  # the root reaches it too
    # Each host has its own loopback: a's server is not on b's 127.0.0.1.
    refused = b.run([sys.executable, "-c", ECHO_CLIENT, "127.0.0.1", "7000", "x"], check=False)
    assert refused.returncode != 0 and "ConnectionRefused" in refused.stderr
    assert server.poll() is None


@needs_netns
@pytest.mark.netns
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_teardown_leaves_nothing_behind_even_when_the_body_raises(error):
    hosts = NetnsHosts(2, prefix="hnbt")
    with pytest.raises(error), hosts:
        a, b = hosts
        ours = a.popen(["sleep", "300"])
        # A process we did not start (daemonized, reparented away from us) must go too.
        b.run("setsid sleep 301 >/dev/null 2>&1 < /dev/null &")
        pids = a.pids() + b.pids()
        assert ours.pid in pids and len(pids) == 2
        made = hosts.names()
        assert set(made["netns"]) <= set(leftovers(hosts.run_id)["netns"])
        raise error
    assert leftovers(hosts.run_id) == {"netns": [], "links": []}
    assert all(gone(pid) for pid in pids)
    assert ours.returncode is not None
    hosts.close()  # idempotent


@needs_netns
@pytest.mark.netns
def test_cleanup_stale_removes_a_crashed_run_and_spares_live_ones(tmp_path):
    crash = textwrap.dedent("""
        import os, sys
        from hybridnb.testing.netns import NetnsHosts
        hosts = NetnsHosts(2, prefix="hnbs", workdir=sys.argv[1]).start()
        proc = hosts[0].popen(["sleep", "300"])
        print(hosts.run_id, proc.pid, flush=True)
        os._exit(0)  # a crash: no teardown at all
    """)
    out = subprocess.run([sys.executable, "-c", crash, str(tmp_path)], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()
    run_id, pid = out[0], int(out[1])
    left = leftovers(run_id)
    assert len(left["netns"]) == 2 and len(left["links"]) == 3
    assert not gone(pid)

    with NetnsHosts(1, prefix="hnbs") as live:
        removed = cleanup_stale("hnbs")
        assert set(left["netns"]) <= set(removed)
        assert leftovers(live.run_id)["netns"] == live.names()["netns"]
    assert leftovers(run_id) == {"netns": [], "links": []}
    assert gone(pid)


@pytest.mark.netns
def test_rate_limit_is_applied_and_cleared(netns_hosts):  # noqa: F811
    a, b = netns_hosts(2)
    a.rate_limit(50)
    assert "tbf" in subprocess.run(["tc", "qdisc", "show", "dev", a.veth],
                                   capture_output=True, text=True, check=True).stdout
    assert "tbf" in a.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout
    a.popen([sys.executable, "-c", ECHO_SERVER, a.address, "7001"])
    wait_for_port(a.address, 7001)
    echoed = b.run([sys.executable, "-c", ECHO_CLIENT, a.address, "7001", "ok"]).stdout
    assert echoed.strip() == "ok"
    a.clear_rate_limit()
    assert "tbf" not in a.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout


def _where(tag: str) -> tuple[str, str]:
    from distributed import get_worker

    return tag, get_worker().address


@pytest.mark.netns
def test_dask_scheduler_and_workers_in_separate_hosts(netns_hosts):  # noqa: F811
    from distributed import Client

    sched, site_x, site_y = netns_hosts(3)
    sched.popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                 "--host", sched.address, "--port", "8786", "--no-dashboard"])
    address = f"tcp://{sched.address}:8786"
    for host, site in ((site_x, "site-x"), (site_y, "site-y")):
        host.popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                    "--host", host.address, "--no-nanny", "--nthreads", "1",
                    "--no-dashboard", "--resources", f"{site}=1", "--name", site])
    wait_for_port(sched.address, 8786, timeout=30)
    # The client lives in the root namespace and reaches the scheduler over the bridge.
    with Client(address, timeout=30) as client:
        try:
            client.wait_for_workers(2, timeout=30)
        except TimeoutError:
            pytest.fail("workers did not join:\n" + site_x.log_text() + site_y.log_text())
        x = client.submit(_where, "x", resources={"site-x": 1}, pure=False)
        y = client.submit(_where, "y", resources={"site-y": 1}, pure=False)
        assert x.result(timeout=30)[1].startswith(f"tcp://{site_x.address}:")
        assert y.result(timeout=30)[1].startswith(f"tcp://{site_y.address}:")
