"""sshd in a namespace host: key login, SSHCluster on it, and nothing left afterwards."""

from __future__ import annotations

import asyncio
import sys

import psutil
import pytest

from hybridnb.testing.netns import NetnsHosts, leftovers
from hybridnb.testing.pytest_plugin import netns_hosts, sshd_host  # noqa: F401 - fixtures
from hybridnb.testing.sshd import SSHDaemon, sshd_skip_reason

needs_sshd = pytest.mark.skipif(sshd_skip_reason() is not None,
                                reason=str(sshd_skip_reason()))


def ssh_run(daemon: SSHDaemon, command: str) -> str:
    import asyncssh

    async def go() -> str:
        async with asyncssh.connect(daemon.address, **daemon.connect_options()) as conn:
            return str((await conn.run(command, check=True, timeout=20)).stdout)

    return asyncio.run(go())


def test_sshd_skip_reason_is_none_or_says_why():
    reason = sshd_skip_reason()
    assert reason is None or reason.strip()


@pytest.mark.netns
def test_sshd_accepts_the_client_key_inside_the_namespace(sshd_host):  # noqa: F811
    options = sshd_host.connect_options()
    assert options == {"port": sshd_host.port, "client_keys": [sshd_host.client_key],
                       "known_hosts": None, "username": "root"}
    out = ssh_run(sshd_host, "id -un; ip -br -4 addr show eth0")
    assert out.split()[0] == "root"
    assert f"{sshd_host.address}/" in out  # the session runs in the host's namespace


@pytest.mark.netns
def test_sshcluster_runs_on_the_namespace_host(sshd_host):  # noqa: F811
    from distributed import Client, SSHCluster

    addr = sshd_host.address
    with SSHCluster([addr, addr], connect_options=sshd_host.connect_options(),
                    remote_python=sys.executable,
                    scheduler_options={"host": addr, "port": 0, "dashboard_address": ":0"},
                    worker_options={"host": addr, "nthreads": 1}) as cluster:
        assert cluster.scheduler_address.startswith(f"tcp://{addr}:")
        with Client(cluster, timeout=30) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
            (worker,) = client.scheduler_info()["workers"]
            assert worker.startswith(f"tcp://{addr}:")


@needs_sshd
@pytest.mark.netns
def test_teardown_stops_sshd_and_what_its_sessions_left_running():
    with NetnsHosts(1, prefix="hnbd") as hosts, SSHDaemon(hosts[0]) as daemon:
        # Like a failed SSHCluster start: a remote process outlives its session.
        pid = int(ssh_run(daemon, "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"))
        assert pid in hosts[0].pids()
        sshd_pid = daemon.proc.pid
    assert leftovers(hosts.run_id) == {"netns": [], "links": []}
    for p in (pid, sshd_pid):
        assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
