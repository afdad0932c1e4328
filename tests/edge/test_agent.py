"""The edge agent on loopback: real processes (agent, replicas), TLS with a pinned
certificate, and every way a rollout can fail."""

from __future__ import annotations

import json
import os
import signal
import threading

import httpx
import numpy as np
import psutil
import pytest

from hybridnb.errors import UsageError
from hybridnb.serve.edge import EdgeClient, RolloutError, Unreachable, manifest_of, push
from hybridnb.serve.edge.client import AgentError
from hybridnb.serve.edge.tls import init_agent_dir
from hybridnb.serve.model_bundle import BundleError
from hybridnb.testing.waiting import wait_until

from .conftest import OPTIONS, LocalClients, infer_body

pytestmark = pytest.mark.slow  # each test starts an agent and one or more replicas

X = [[0.5] * 8, [-1.0] * 8]


def predict(agent, x=X):
    r = httpx.post(agent.front_url + "/v2/models/mlp/infer", json=infer_body(x), timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    return doc["model_version"], np.asarray(doc["outputs"][0]["data"]).reshape(len(x), -1)


def replica_pid(version_id: str) -> int:
    """The pid of the replica serving ``version_id`` (a ``hybridnb.serve.server`` process)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "hybridnb.serve.server" in cmd and version_id in cmd:
            return int(proc.pid)
    raise LookupError(version_id)


def test_a_bundle_is_sent_once_and_serves_what_it_learned(agent_factory, bundles):
    agent = agent_factory()
    client = agent.client()
    assert client.status().ready is False  # nothing serves before the first rollout
    r = httpx.post(agent.front_url + "/v2/models/mlp/infer", json=infer_body(X))
    assert r.status_code == 503
    report = push(bundles["v1"].path, client=client, site="edge")
    assert report.ok and report.bytes_sent == report.bytes_total > 0
    assert [c["name"] for c in report.checks] == ["stage", "ready", "smoke", "watch"]
    assert all(c["ok"] for c in report.checks)
    version, y = predict(agent)
    assert version == "1"
    np.testing.assert_allclose(y, bundles["v1"].predict(X), rtol=1e-5, atol=1e-6)
    again = push(bundles["v1"].path, client=client, site="edge")
    assert again.ok and again.bytes_sent == 0 and again.bytes_skipped == again.bytes_total
    status = client.status()
    assert status.content_hash == bundles["v1"].content_hash and status.ready
    client.close()


def test_the_control_port_is_pinned_and_needs_the_token(agent_factory, tmp_path):
    agent = agent_factory()
    with EdgeClient(agent.url, token="wrong", cert=agent.cert) as bad_token:
        with pytest.raises(AgentError) as info:
            bad_token.status()
        assert info.value.status == 401
    other = init_agent_dir(tmp_path / "impostor")  # another agent's certificate
    with EdgeClient(agent.url, token=agent.token, cert=other.cert) as pinned_elsewhere, \
            pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        pinned_elsewhere.status()
    with pytest.raises(UsageError, match="fingerprint"):
        EdgeClient(agent.url, token=agent.token, cert=agent.cert, fingerprint="sha256:" + "0" * 64)
    with pytest.raises(UsageError, match="in clear"):
        EdgeClient("http://10.0.0.5:8443", token="t")
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
        httpx.get(agent.url.replace("https", "http") + "/edge/v1/status", timeout=5)
    with agent.client() as good:
        assert good.status().site == "edge"


def test_a_blob_corrupted_in_transit_is_refused_before_it_is_kept(agent_factory, bundles):
    agent = agent_factory()
    req, paths = manifest_of(bundles["v1"].path)
    entry = req.files["weights.safetensors"]
    data = bytearray(paths["weights.safetensors"].read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped on the way
    with agent.client() as client:
        with pytest.raises(AgentError, match="hash to") as info:
            client._request("PUT", f"/edge/v1/blobs/{entry.sha256}",
                            params={"offset": 0, "size": entry.size}, content=bytes(data))
        assert info.value.status == 422
        assert client.blob(entry.sha256)["state"] == "absent"
        with pytest.raises(AgentError, match="upload them first"):
            client.rollout(req)  # nothing to roll out: the file is not there
        assert client.status().active is None


def test_a_corrupt_bundle_never_serves(agent_factory, bundles, tmp_path):
    import shutil

    agent = agent_factory()
    client = agent.client()
    push(bundles["v1"].path, client=client, site="edge")
    # Corrupt at the source: refused here, before a byte crosses the link...
    bad = tmp_path / "bad"
    shutil.copytree(bundles["v2"].path, bad)
    weights = bad / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-10] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="do not match the digest"):
        push(bad, client=client, site="edge")
    # ... and, sent anyway, refused by the agent (each time) before anything stages it.
    with pytest.raises(RolloutError) as info:
        push(bad, client=client, site="edge", verify=False, check=True)
    assert info.value.report.state == "refused" and info.value.report.corrupt_refused == 3
    assert "corrupt 3 times" in info.value.report.reason
    # Corrupt at rest on the edge disk, between upload and rollout: found when staging.
    req, paths = manifest_of(bundles["v2"].path)
    for name, entry in req.files.items():
        client.upload(entry, paths[name], 0)
    stored = agent_state(agent) / "blobs" / "sha256" / req.files["weights.safetensors"].sha256
    os.chmod(stored, 0o644)
    with open(stored, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x00\x00\x00")
    status = client.rollout(req)
    status = wait_until(lambda: (s := client.rollout_status(status.id)).state.final and s,
                        timeout=60, what="the rollout's end")
    assert status.state.value == "refused" and "corrupt on the edge disk" in status.reason
    assert not stored.exists()  # deleted, so the next push sends it again
    assert predict(agent)[0] == "1"  # the old version never stopped
    report = push(bundles["v2"].path, client=client, site="edge")
    assert report.ok and report.bytes_sent == req.files["weights.safetensors"].size
    assert predict(agent)[0] == "2"
    client.close()


def agent_state(agent):
    return agent.log.parent


def test_a_version_failing_its_health_check_is_rolled_back(agent_factory, bundles, tmp_path):
    agent = agent_factory()
    client = agent.client()
    push(bundles["v1"].path, client=client, site="edge")
    clients = LocalClients(agent.front_url, tmp_path)
    try:
        wait_until(lambda: clients.progress() > 20, timeout=30, what="traffic")
        report = push(bundles["nan"].path, client=client, site="edge", check=False)
    finally:
        counts = clients.stop()
    assert report.state == "rolled_back", report
    checks = {c["name"]: c for c in report.checks}
    assert checks["ready"]["ok"] and not checks["smoke"]["ok"]
    assert "non-finite" in checks["smoke"]["detail"]
    assert counts["failed"] == 0, counts["errors"]
    assert set(counts["versions"]) == {"1"}  # the broken version never answered anyone
    assert predict(agent)[0] == "1"
    assert 'hybridnb_edge_rollouts_total{result="rolled_back"} 1.0' in client.metrics()
    assert len(client.status().versions) == 1  # nor did it replace the kept one
    client.close()


def test_a_replica_dying_after_the_switch_is_rolled_back_by_the_agent(agent_factory, bundles,
                                                                      tmp_path):
    options = json.loads(json.dumps(OPTIONS))
    options["rollout"]["watch_s"] = 20
    agent = agent_factory(options=options)
    client = agent.client()
    push(bundles["v1"].path, client=client, site="edge")
    clients = LocalClients(agent.front_url, tmp_path)
    result: dict = {}

    def roll_out() -> None:
        with agent.client() as own:
            result["report"] = push(bundles["v2"].path, client=own, site="edge", check=False)

    pusher = threading.Thread(target=roll_out)
    try:
        pusher.start()
        status = wait_until(lambda: (s := client.status().rollout) is not None
                            and s.state.value == "watching" and s, timeout=120,
                            what="the switch")
        before = clients.progress()
        wait_until(lambda: clients.progress() > before + 20, timeout=30, what="traffic to v2")
        os.kill(replica_pid(status.version_id), signal.SIGKILL)  # the new version crashes
        pusher.join(120)
    finally:
        counts = clients.stop()
    report = result["report"]
    assert report.state == "rolled_back" and "after the switch" in report.reason, report
    assert counts["failed"] == 0, counts["errors"]  # requests in flight went to v1 again
    assert counts["versions"].get("2", 0) > 0  # v2 did serve, until it died
    assert counts["last_version"] == "1" and predict(agent)[0] == "1"
    assert client.status().active_version == "1"
    client.close()


def test_a_restarted_agent_serves_its_active_version_without_the_centre(agent_factory,
                                                                          bundles, tmp_path):
    state = tmp_path / "restart"
    agent = agent_factory(state_dir=state)
    with agent.client() as client:
        push(bundles["v2"].path, client=client, site="edge")
    assert agent.stop() == 0
    again = agent_factory(state_dir=state)
    with again.client() as client:
        wait_until(lambda: client.status().ready, timeout=120, what="the restored version")
    assert predict(again)[0] == "2"
