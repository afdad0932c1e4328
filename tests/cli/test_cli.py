"""The hybridnb command: help, version, doctor, sites, config, ps and gc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hybridnb import __version__
from hybridnb.cli import main
from hybridnb.state import StateStore, Status

COMMAND = [sys.executable, "-m", "hybridnb"]


def run_cli(*args, env=None):
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_help_and_version_as_a_real_process(hybridnb_home):
    result = run_cli("--help")
    assert result.returncode == 0
    for group in ("doctor", "config", "sites", "ps", "gc"):
        assert group in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hybridnb {__version__}"
    exe = Path(sys.executable).parent / "hybridnb"
    if exe.exists():  # the console script installed by pip
        assert subprocess.run([str(exe), "--version"], capture_output=True,
                              text=True).stdout.strip() == f"hybridnb {__version__}"


def test_unknown_command_exits_2_without_traceback(hybridnb_home):
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr and "Traceback" not in result.stderr


def test_doctor_reports_and_exits_0(hybridnb_home, capsys):
    assert main(["doctor", "--json"]) == 0
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(out[: out.rindex("]") + 1])}
    for name in ("python", "torch", "dask", "distributed", "papermill", "jupyterlab",
                 "cpu bf16", "gpus", "promtool", "kubectl", "ssh", "chromium",
                 "kubernetes context", "state store", "config"):
        assert name in checks
    assert checks["torch"]["ok"] and checks["config"]["ok"]
    assert checks["promtool"]["ok"] == bool(shutil.which("promtool"))
    assert main(["doctor"]) == 0
    assert "embedded default can run" in capsys.readouterr().out


def test_doctor_fails_when_config_is_broken(hybridnb_home, capsys):
    (hybridnb_home / "work" / "hybridnb.yaml").write_text("sites: [oops]\n")
    assert main(["doctor"]) == 1
    assert "cannot run: fix config" in capsys.readouterr().err


def test_sites_list_and_show(hybridnb_home, capsys):
    assert main(["sites", "list"]) == 0
    out = capsys.readouterr().out
    assert "local" in out and "private" in out
    assert main(["sites", "list", "--json"]) == 0
    (site,) = json.loads(capsys.readouterr().out)
    assert site["name"] == "local" and site["capacity"]["cpu"] == os.cpu_count()
    assert main(["sites", "show", "local"]) == 0
    assert "cpu:" in capsys.readouterr().out
    assert main(["sites", "show", "nowhere"]) == 2
    assert "unknown site 'nowhere'" in capsys.readouterr().err


def test_config_show_names_sources(hybridnb_home, capsys):
    project = hybridnb_home / "work" / "hybridnb.yaml"
    project.write_text("policies:\n  placement: cheapest\n")
    assert main(["--set", "sites.local.labels.owner=me", "config", "show"]) == 0
    out = capsys.readouterr().out
    assert f"placement: cheapest  # {project}:2" in out
    assert "owner: me  # arguments" in out
    assert "tier: private  # built-in default" in out
    assert main(["config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sources"]["policies.placement"] == f"{project}:2"


def test_ps_and_gc_stop_a_leftover_process(hybridnb_home, capsys):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        store = StateStore()
        rec = store.add("endpoint", "leftover", site="local", pids=[proc.pid],
                        status="running")
        assert main(["ps"]) == 0
        assert rec.id in capsys.readouterr().out
        assert main(["gc", "--dry-run"]) == 0
        assert "would stop" in capsys.readouterr().out
        assert proc.poll() is None
        assert main(["gc"]) == 0
        assert f"stopped: {rec.id}" in capsys.readouterr().out
        assert proc.wait(timeout=10) is not None
        assert store.get(rec.id).status is Status.stopped
        assert main(["ps"]) == 0
        assert "nothing running" in capsys.readouterr().out
        assert main(["ps", "--all", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["status"] == "stopped"
        assert main(["ps", "--kind", "bogus"]) == 2
    finally:
        proc.kill()
        proc.wait()


def test_gc_forgets_records_with_nothing_to_stop(hybridnb_home, capsys):
    rec = StateStore().add("run", "ghost", site="local", status="running")
    assert main(["gc"]) == 0
    assert f"forgotten: {rec.id}" in capsys.readouterr().out
    assert StateStore().get(rec.id).status is Status.lost


@pytest.mark.parametrize("argv", [["sites"], ["config"]])
def test_groups_without_command_show_help(argv, hybridnb_home, capsys):
    code = main(argv)
    out = capsys.readouterr()
    assert code in (0, 2) and "Usage" in (out.out + out.err)



def test_config_show_prints_sizes_for_people(hybridnb_home, capsys):
    from hybridnb.config import load_config
    from hybridnb.config.units import format_bytes

    project = hybridnb_home / "work" / "hybridnb.yaml"
    project.write_text("datasets:\n  scans: {site: local, path: /d, size: 40GiB}\n"
                       "sites:\n  local: {kubernetes: null}\n")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    memory = format_bytes(load_config().site("local").capacity.memory)
    assert f"memory: {memory}  # built-in default" in out and " GiB" in memory
    assert f"size: 40.0 GiB  # {project}:2" in out
    assert not [line for line in out.splitlines() if line.strip() == "budget:"]  # no empty
    assert main(["sites", "show", "local"]) == 0
    assert f"memory: {memory}" in capsys.readouterr().out
    assert main(["config", "show", "--json"]) == 0  # machines still get bytes
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["datasets"]["scans"]["size"] == 40 * 2**30


def test_gc_lists_each_process_once(hybridnb_home, capsys):
    # A record naming a process and its own child (as a cluster's keeper and nanny).
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "subprocess.Popen([sys.executable, '-c', "
                               "'import time; time.sleep(120)'])\ntime.sleep(120)"])
    try:
        import psutil

        from hybridnb.testing.waiting import wait_until

        wait_until(lambda: psutil.Process(parent.pid).children(), timeout=30)
        child = psutil.Process(parent.pid).children()[0].pid
        rec = StateStore().add("cluster", "family", site="local", pids=[parent.pid, child],
                               status="running")
        assert main(["gc"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if rec.id in x)
        pids = line.split("pids [")[1].split("]")[0].split(", ")
        assert sorted(pids) == sorted({str(parent.pid), str(child)}), line
        assert parent.wait(timeout=10) is not None
    finally:
        parent.kill()
        parent.wait()


def test_cluster_up_and_list_show_the_dashboard(hybridnb_home, capsys):
    assert main(["cluster", "up", "local", "--workers", "0", "--name", "dash"]) == 0
    try:
        out = capsys.readouterr().out
        link = out.split("dashboard: ")[1].split()[0]
        assert link.startswith("http://") and link.endswith("/status")
        assert main(["cluster", "list"]) == 0
        assert link in capsys.readouterr().out
    finally:
        assert main(["cluster", "down", "dash"]) == 0


def test_deploy_prints_a_short_summary_and_stops_on_ctrl_c(hybridnb_home):
    import re
    import signal

    import httpx
    import torch

    from hybridnb.serve.model_bundle import bundle
    from hybridnb.testing.waiting import wait_until

    torch.manual_seed(0)
    b = bundle(torch.nn.Sequential(torch.nn.Linear(4, 2)).eval(), torch.randn(2, 4),
               hybridnb_home / "tiny", name="tiny", labels=["a", "b"])
    log = hybridnb_home / "deploy.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([*COMMAND, "deploy", str(b.path), "--replicas", "1"],
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        found = wait_until(lambda: re.search(r"endpoint 'tiny' at (http://[\d.]+:\d+): "
                                             r"1 of 1 replicas healthy", log.read_text()),
                           timeout=120, what="the deploy summary",
                           alive=lambda: proc.poll() is None)
        url = found.group(1)
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        text = log.read_text()
        assert f"POST {url}/v2/models/tiny/infer" in text and "Endpoint(" not in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert StateStore().list("endpoint", active=True) == []
