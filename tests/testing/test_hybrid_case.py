"""The hybrid case's hosts on their own: limited links, counted bytes, a valid config, and
a clean-up check that names what was left behind."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import psutil
import pytest

import hybridnb
from hybridnb.notebooks.runner import run_notebook
from hybridnb.testing.hybrid_case import ROLES, HybridCase, running_from
from hybridnb.testing.netns import leftovers, wait_for_port
from hybridnb.testing.sshd import sshd_skip_reason
from hybridnb.testing.waiting import running_children, wait_until

pytestmark = pytest.mark.netns

# Counts what arrives on port 9009 until argv[2] bytes did (a probe's connection is empty).
SINK = """
import socket, sys
srv, n = socket.create_server((sys.argv[1], 9009)), 0
while n < int(sys.argv[2]):
    conn, _ = srv.accept()
    while (b := conn.recv(65536)):
        n += len(b)
print(n)
"""
SEND = """
import socket, sys
with socket.create_connection((sys.argv[1], 9009)) as s:
    s.sendall(b"x" * int(sys.argv[2]))
"""


@pytest.fixture
def case(hybridnb_home, tmp_path):
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with HybridCase(tmp_path / "case") as made:
        yield made


def test_hosts_links_and_config(case):
    assert [h.address.rsplit(".", 1)[1] for h in case.hosts.values()] == ["11", "12", "13"]
    rates = {role: subprocess.run(["tc", "qdisc", "show", "dev", h.veth], check=True,
                                  capture_output=True, text=True).stdout
             for role, h in case.hosts.items()}
    assert "tbf" in rates["edge"] and "rate 20Mbit" in rates["edge"]
    assert all("rate 1Gbit" in rates[r] for r in ("onprem", "cloud"))
    # A megabyte from the cloud to the edge: out of one link, into the other.
    sink = case.edge.popen([sys.executable, "-c", SINK, case.edge.address, str(10**6)],
                           stdout=subprocess.PIPE)
    wait_for_port(case.edge.address, 9009)
    with case.phase("send"):
        case.cloud.run([sys.executable, "-c", SEND, case.edge.address, str(10**6)])
        out, _ = sink.communicate(timeout=60)
    assert int(out) == 10**6
    sent = case.phases[-1].bytes
    assert sent["cloud"]["out"] >= 10**6 and sent["edge"]["in"] >= 10**6
    assert sent["onprem"]["in"] < 10**5  # a bridge forwards to the destination only
    config = case.config()
    assert sorted(config.sites) == sorted(ROLES)
    assert config.site("onprem").tls and config.site("cloud").tls  # beyond loopback
    assert config.site("cloud").scheduler.address == case.scheduler_address
    p = hybridnb.plan("train", cpu=2, data=["patients"], config=config)
    assert p.chosen.site == "onprem"
    assert {r.site: r.kinds[0].value for r in p.rejected} == {"cloud": "residency",
                                                              "edge": "tier"}
    assert case.agent is not None and case.agent.alive()
    assert (case.records / "scans.npy").is_file()


def test_close_names_a_process_left_in_a_host_or_outside(hybridnb_home, tmp_path):
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path / "case"
    case = HybridCase(workdir, grace=1.0).start()
    # One of the case's own outside the hosts (it names the case's directory).
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                              str(workdir)])
    try:
        case.cloud.popen(["sleep", "300"])  # a stray process nobody stops
        assert case.edge.pids()  # the agent
        found = case.close()
    finally:
        case.close()
        stray.kill()
        stray.wait()
    assert sorted(found["left_running"]) == ["cloud", "outside"]
    assert "sleep 300" in found["left_running"]["cloud"][0]
    assert found["left_running"]["outside"] == [
        f"{stray.pid} {sys.executable} -c import time; time.sleep(300) {workdir}"]
    assert found["netns_left"] == [] == found["links_left"]
    assert leftovers(case.net.run_id) == {"netns": [], "links": []}
    assert not (workdir / "keys").exists()  # key material removed
    assert running_from(workdir) == []  # the reaper stopped too
    assert case.close() == found  # idempotent


def _owned(workdir) -> list[str]:
    return [" ".join(p.cmdline()) for p in running_from(workdir)]


def test_a_killed_owner_leaves_nothing_behind(hybridnb_home, tmp_path):
    """The process that made the case is killed (as papermill kills a kernel that does
    not exit in time): the case's reaper stops what ran in the hosts and removes them."""
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path / "case"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from hybridnb.testing.hybrid_case import HybridCase\n"
         "case = HybridCase(sys.argv[1]).start()\n"
         "print(case.net.run_id, flush=True)\n"
         "time.sleep(600)\n", str(workdir)], stdout=subprocess.PIPE, text=True)
    try:
        run_id = owner.stdout.readline().strip()
        assert run_id.startswith("hcase") and leftovers(run_id)["netns"]
        assert len(_owned(workdir)) >= 3  # the owner, sshd, the agent, the reaper
    finally:
        owner.kill()
        owner.communicate()
    wait_until(lambda: leftovers(run_id) == {"netns": [], "links": []}, timeout=60,
               what="the hosts removed")
    wait_until(lambda: _owned(workdir) == [], timeout=30, what="no process of the case left")
    assert not (workdir / "keys").exists()
    assert "exited without closing" in (workdir / "logs" / "reaper.log").read_text()


def test_a_notebook_whose_cell_fails_leaves_nothing_behind(hybridnb_home, tmp_path):
    """A notebook makes the case and a later cell fails (papermill then stops the
    kernel): every process of every host stops and every host goes all the same."""
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path / "case"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(f"workdir = {str(workdir)!r}", metadata={
            "tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import hybridnb\n"
            "from hybridnb.testing.hybrid_case import HybridCase\n"
            "case = HybridCase(workdir).start()\n"
            "hybridnb.record('run_id', case.net.run_id)\n"
            "hybridnb.record('pids', {r: h.pids() for r, h in case.hosts.items()})"),
        nbformat.v4.new_code_cell("raise RuntimeError('a cell fails')"),
    ]
    path = tmp_path / "fails.ipynb"
    nbformat.write(nb, path)
    run = run_notebook(path, tmp_path / "out.ipynb", {}, timeout=120)
    assert not run.ok and run.failed_cell is not None and "a cell fails" in run.error
    run_id, pids = run.records["run_id"], run.records["pids"]
    assert pids["onprem"] and pids["edge"]  # sshd, the agent: they ran
    wait_until(lambda: leftovers(run_id) == {"netns": [], "links": []}, timeout=60,
               what="the hosts removed")
    wait_until(lambda: _owned(workdir) == [], timeout=30, what="no process of the case left")
    assert not [p for ps in pids.values() for p in ps if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not (workdir / "keys").exists()
    assert running_children("ipykernel") == []
