"""``hybridnb edge`` and ``deploy --render edge`` for a site with an agent."""

from __future__ import annotations

import json
import shlex
import signal
import stat
import subprocess
import sys

import httpx
import pytest
import yaml

from hybridnb.cli import main
from hybridnb.config.models import EdgeOptions
from hybridnb.processes import free_port
from hybridnb.testing.waiting import wait_until


def write_config(directory, **agent) -> None:
    site = {"tier": "edge", "capacity": {"cpu": 1, "memory": "1GiB"},
            "edge": {"agent": agent, "link": {"bandwidth_mbps": 20},
                     "rollout": {"watch_s": 1, "keep_versions": 3},
                     "buffer": {"max_bytes": "8MiB", "sample_interval_s": 1}}}
    (directory / "hybridnb.yaml").write_text(yaml.safe_dump({"sites": {"shop": site}}))


def test_init_makes_an_identity_once_and_never_prints_the_token(hybridnb_home, capsys):
    state = hybridnb_home / "agent"
    assert main(["edge", "init", "--state-dir", str(state), "--host", "10.0.3.7"]) == 0
    first = capsys.readouterr().out
    token = (state / "token").read_text().strip()
    assert "sha256:" in first and token not in first
    assert stat.S_IMODE((state / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "tls" / "agent.key").stat().st_mode) == 0o600
    assert main(["edge", "init", "--state-dir", str(state)]) == 0  # kept: the pin holds
    assert capsys.readouterr().out.split("fingerprint: ")[1][:71] == \
        first.split("fingerprint: ")[1][:71]


def test_bad_input_exits_2(hybridnb_home, capsys, bundles):
    assert main(["edge", "push", str(bundles["v1"].path), "--site", "nowhere"]) == 2
    assert "unknown site 'nowhere'" in capsys.readouterr().err
    assert main(["edge", "push", str(bundles["v1"].path), "--site", "local"]) == 2
    assert "has no edge agent" in capsys.readouterr().err
    assert main(["edge", "status"]) == 0
    assert "no edge site has an agent" in capsys.readouterr().out


@pytest.mark.slow
def test_push_and_status_against_a_running_agent(hybridnb_home, agent_factory, bundles,
                                                 capsys):
    agent = agent_factory()
    write_config(hybridnb_home / "work", address=agent.control[0], port=agent.control[1],
                 cert=str(agent.cert), fingerprint=agent.fingerprint,
                 token_file=str(agent.log.parent / "token"))
    assert main(["edge", "status", "--json"]) == 0
    (shop,) = json.loads(capsys.readouterr().out)
    assert shop["state"] == "down" and shop["version"] is None  # reachable, nothing serves
    assert main(["edge", "push", str(bundles["v1"].path), "--site", "shop"]) == 0
    assert "active" in capsys.readouterr().out
    assert main(["edge", "push", str(bundles["nan"].path), "--site", "shop", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["state"] == "rolled_back"
    assert "rolled_back" in captured.err and "Traceback" not in captured.err
    assert main(["edge", "status"]) == 0
    out = capsys.readouterr().out
    assert "shop" in out and "up" in out
    agent.stop()
    assert main(["edge", "status", "--json", "--timeout", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "unreachable"


@pytest.mark.slow
def test_the_rendered_agent_unit_starts_an_agent_that_serves(hybridnb_home, bundles, capsys,
                                                           tmp_path):
    write_config(hybridnb_home / "work", address="10.0.3.7", cert="/etc/hybridnb/shop.pem")
    out = hybridnb_home / "render"
    assert main(["deploy", str(bundles["v1"].path), "--render", "edge", "--site", "shop",
                 "--out", str(out)]) == 0
    notes = capsys.readouterr().out
    assert "hybridnb edge init" in notes and "10.0.3.7" in notes
    unit = (out / "hybridnb-edge-agent.service").read_text()
    options = EdgeOptions.model_validate_json((out / "edge-options.json").read_text())
    assert options.rollout.keep_versions == 3 and options.buffer.max_bytes == 8 << 20
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[:3] == ["hybridnb", "edge", "agent"]
    assert argv[argv.index("--control") + 1] == "10.0.3.7:8443"
    # Run that very command here, on this machine's loopback and a temporary directory.
    (tmp_path / "options.json").write_text((out / "edge-options.json").read_text())
    front = free_port()
    swap = {"--state-dir": str(tmp_path / "state"), "--control": f"127.0.0.1:{free_port()}",
            "--front": f"127.0.0.1:{front}", "--options-file": str(tmp_path / "options.json")}
    for flag, value in swap.items():
        argv[argv.index(flag) + 1] = value
    log = tmp_path / "agent.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hybridnb", *argv[1:]], stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{front}/v2/health/ready").status_code
                   == 200, timeout=180, what="the first version serving",
                   alive=lambda: proc.poll() is None, ignore=(httpx.HTTPError,))
        wait_until(lambda: ": active" in log.read_text(), timeout=60,  # the daemon's log
                   what="the rollout's outcome in the log")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
