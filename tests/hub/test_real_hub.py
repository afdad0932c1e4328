"""The team's hub, for real: a JupyterHub with hybridnb's service, two groups, three users.

The tests run in this order and share the hub (starting one takes ~30 s): what they
start, they stop.
"""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from hybridnb.testing.hub import as_json

from .conftest import hub_env

pytestmark = pytest.mark.slow


def _ledger_rows(hub) -> int:
    db = hub.base / "service-home" / "hub" / "ledger.db"
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM hybridnb_leases").fetchone()[0])


def _start(hub, user, **body):
    return hub.user_api(user, "POST", "clusters", json={"site": "local", "workers": 1,
                                                         "threads": 1, **body})


def test_each_user_sees_the_team_sites_and_only_bob_may_plan_on_pii(real_hub):
    hub = real_hub
    alice = hub.user_api("alice", "GET", "sites")
    bob = hub.user_api("bob", "GET", "sites")
    assert alice.status_code == 200 and bob.status_code == 200, (alice.text, bob.text)
    assert sorted(s["name"] for s in alice.json()["sites"]) == ["local", "shared-dask"]
    assert [s["name"] for s in bob.json()["sites"]] == ["local"]
    job = {"kind": "notebook", "cpu": 1, "data": ["patients"]}
    refused = hub.user_api("alice", "POST", "plan", json=job)
    planned = hub.user_api("bob", "POST", "plan", json=job)
    assert refused.status_code == 422, refused.text
    assert "pii" in refused.json()["error"], refused.json()
    assert planned.status_code == 200, planned.text
    assert planned.json()["chosen"] == "local"
    # Each server got its group's profile from the rendered group_overrides.
    model = hub.api("GET", "/users/alice").json()
    assert "research" in model["groups"]


def test_bob_neither_sees_nor_touches_alices_cluster(real_hub):
    hub = real_hub
    started = _start(hub, "alice", name="alice-one")
    assert started.status_code == 201, started.text
    cid = started.json()["id"]
    try:
        listed = hub.user_api("alice", "GET", "clusters").json()["clusters"]
        assert [c["id"] for c in listed] == [cid]
        assert cid not in [c["id"] for c in hub.user_api("bob", "GET", "clusters")
                           .json()["clusters"]]
        # bob's own server knows nothing of it...
        assert hub.user_api("bob", "PATCH", f"clusters/{cid}",
                            json={"workers": 2}).status_code == 404
        assert hub.user_api("bob", "DELETE", f"clusters/{cid}").status_code == 404
        dash = httpx.get(f"{hub.url}/user/bob/hybridnb/dashboard/{cid}/status",
                         headers={"Authorization": f"token {hub.tokens['bob']}"},
                         timeout=30)
        assert dash.status_code == 404, dash.text
        # ...and the hub lets him nowhere near alice's server.
        for method, path in (("GET", "clusters"), ("DELETE", f"clusters/{cid}"),
                             ("GET", f"dashboard/{cid}/status")):
            r = hub.user_api("alice", method, path, token=hub.tokens["bob"])
            assert r.status_code in (403, 404), (method, path, r.status_code)
        # alice's own dashboard works through her server's proxy.
        mine = httpx.get(f"{hub.url}/user/alice/hybridnb/dashboard/{cid}/status",
                         headers={"Authorization": f"token {hub.tokens['alice']}"},
                         timeout=60)
        assert mine.status_code == 200, mine.text[:500]
        assert hub.user_api("alice", "GET", "clusters").json()["clusters"][0]["status"] \
            == "running"
    finally:
        assert hub.user_api("alice", "DELETE", f"clusters/{cid}").status_code == 202


def test_second_cluster_beyond_the_quota_is_refused_until_the_first_stops(real_hub):
    hub = real_hub
    first = _start(hub, "alice", name="alice-first")
    assert first.status_code == 201, first.text
    bobs = _start(hub, "bob", name="bob-first")
    assert bobs.status_code == 201, bobs.text
    try:
        second = _start(hub, "alice", name="alice-second")
        assert second.status_code == 409, second.text
        message = second.json()["error"]
        assert "clusters" in message and "= 1" in message, message
        assert "#ml-platform" in message and "alice-first" in message, message
        assert "alice-second" not in [c["name"] for c in hub.user_api(
            "alice", "GET", "clusters").json()["clusters"]]
        usage = hub.service("GET", "api/usage", hub.tokens["carol"])
        assert usage.status_code == 200, usage.text
        users = usage.json()["usage"]["users"]
        assert users["alice"]["clusters"] == 1 and users["bob"]["clusters"] == 1, users
        assert usage.json()["usage"]["groups"]["clinical"]["clusters"] == 1
        page = hub.service("GET", "", hub.tokens["carol"])
        assert page.status_code == 200 and "<td>alice</td>" in page.text \
            and "<td>bob</td>" in page.text, page.text[:300]
        assert hub.service("GET", "api/usage", hub.tokens["alice"]).status_code == 403
        assert hub.service("GET", "", hub.tokens["alice"]).status_code == 403
        assert hub.user_api("alice", "DELETE", f"clusters/{first.json()['id']}"
                            ).status_code == 202
        again = _start(hub, "alice", name="alice-second")
        assert again.status_code == 201, again.text
        assert hub.user_api("alice", "DELETE", f"clusters/{again.json()['id']}"
                            ).status_code == 202
    finally:
        hub.user_api("bob", "DELETE", f"clusters/{bobs.json()['id']}")
        hub.user_api("alice", "DELETE", f"clusters/{first.json()['id']}")
    active = hub.service("GET", "api/leases?active=1", hub.tokens["alice"]).json()["leases"]
    assert active == [], active


def test_forged_expired_and_unscoped_tokens_are_refused_and_nothing_is_recorded(real_hub):
    hub = real_hub
    before = _ledger_rows(hub)
    body = {"kind": "cluster", "site": "local", "name": "sneaky", "size": {"workers": 1}}
    forged = hub.service("POST", "api/leases", "f" * 32, json=body)
    assert forged.status_code == 401, forged.text
    r = hub.api("POST", "/users/alice/tokens", json={"expires_in": 1, "note": "short"})
    expired = r.json()["token"]
    time.sleep(2.5)
    late = hub.service("POST", "api/leases", expired, json=body)
    assert late.status_code == 401, late.text
    r = hub.api("POST", "/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]})
    unscoped = hub.service("POST", "api/leases", r.json()["token"], json=body)
    assert unscoped.status_code == 403, unscoped.text
    assert hub.service("POST", "api/leases", "", json=body).status_code == 401
    assert _ledger_rows(hub) == before


def test_a_stopped_service_leaves_running_work_alone_and_refuses_new_starts(real_hub):
    from distributed import Client

    hub = real_hub
    started = _start(hub, "alice", name="alice-outage")
    assert started.status_code == 201, started.text
    cid, address = started.json()["id"], started.json()["scheduler_address"]
    hub.stop("service")
    try:
        with Client(address, timeout=30) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        listed = hub.user_api("alice", "GET", "clusters").json()["clusters"]
        assert [(c["id"], c["status"]) for c in listed] == [(cid, "running")]
        refused = _start(hub, "bob", name="bob-outage")
        assert refused.status_code >= 500, refused.text
        assert "unreachable" in refused.json()["error"], refused.json()
        with Client(address, timeout=30) as client:  # still working after the refusal
            assert client.submit(sum, [4, 5]).result(timeout=30) == 9
    finally:
        hub.start_service()
    assert hub.user_api("alice", "DELETE", f"clusters/{cid}").status_code == 202
    # The stop reached the ledger once the service was back.
    assert hub.service("GET", "api/leases?active=1", hub.tokens["alice"]).json()["leases"] \
        == []


def test_gateway_backend_through_the_hub(real_hub, monkeypatch):
    import hybridnb
    from hybridnb.sites.gateway import QuotaCapWarning

    hub = real_hub
    hub_env(monkeypatch, hub, "alice")
    with hybridnb.cluster("shared-dask", n_workers=1) as c:
        assert c.backend == "gateway"
        assert c.client.submit(lambda x: x + 1, 41).result(timeout=120) == 42
        leases = as_json(hub.service("GET", "api/leases?active=1", hub.tokens["alice"]))
        assert [(lease["kind"], lease["site"]) for lease in leases["leases"]] == [
            ("cluster", "shared-dask")]
        with pytest.warns(QuotaCapWarning, match="capped at 2"):
            c.scale(5)
        c.wait_for_workers(2, timeout=180)
        time.sleep(2)
        assert len(c.workers()) == 2
        assert c.dashboard_link and "/services/dask-gateway/clusters/" in c.dashboard_link
    assert hub.service("GET", "api/leases?active=1", hub.tokens["alice"]).json()["leases"] \
        == []
