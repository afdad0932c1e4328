"""The team ledger: quotas per user and per group, GPU-hours, names, isolation of ids."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import update

from hybridnb.config.teams import Teams
from hybridnb.hub.ledger import Ledger, Refused, leases

TEAMS = Teams.model_validate({
    "contact": "#ml",
    "groups": {
        "research": {"members": ["alice", "carol"], "sites": ["local", "gpu"],
                     "per_user": {"clusters": 1, "workers": 4, "gpus": 1,
                                  "gpu_hours_per_day": 2},
                     "total": {"clusters": 2}, "contact": "research-leads"},
        "clinical": {"members": ["bob"], "sites": ["local"], "per_user": {"endpoints": 1}},
    },
    "users": {"carol": {"per_user": {"clusters": 3}}},
})


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


def start(ledger, user, kind="cluster", site="local", name=None, **size):
    return ledger.admit(TEAMS, user, {"kind": kind, "site": site, "name": name,
                                      "size": size, "host": "h", "pid": 1})


def test_per_user_count_names_the_quota_value_and_who_to_ask(ledger):
    first = start(ledger, "alice", name="a1", workers=1)
    with pytest.raises(Refused) as err:
        start(ledger, "alice", name="a2", workers=1)
    assert err.value.quota == "clusters" and err.value.limit == 1
    assert "teams.groups.research.per_user.clusters = 1" in str(err.value)
    assert "a1" in str(err.value) and "research-leads" in str(err.value)
    ledger.release("alice", first["id"])
    assert start(ledger, "alice", name="a2", workers=1)["status"] == "active"


def test_group_total_and_a_users_own_quota(ledger):
    start(ledger, "carol", name="c1")  # carol may run 3 (users.carol), the group 2
    start(ledger, "carol", name="c2")
    with pytest.raises(Refused, match=r"group research may run 2 clusters.*total.clusters"):
        start(ledger, "carol", name="c3")
    with pytest.raises(Refused, match="group research"):
        start(ledger, "alice", name="a1")
    assert start(ledger, "bob", name="b1")["group"] == "clinical"  # another group


def test_sizes_add_up_across_kinds(ledger):
    start(ledger, "alice", kind="run", site="gpu", gpus=1)
    with pytest.raises(Refused, match=r"may use 1 gpus at once .* asks for 1"):
        start(ledger, "alice", kind="endpoint", site="gpu", gpus=1)
    with pytest.raises(Refused, match="may use 4 workers"):
        start(ledger, "alice", name="big", workers=5)


def test_gpu_hours_per_day_count_what_ended_today(ledger):
    lease = start(ledger, "alice", kind="run", site="gpu", gpus=1)
    ledger.release("alice", lease["id"], "succeeded")
    with ledger.engine.begin() as conn:  # it ran 3 hours (a row as the clock would leave it)
        now = time.time()
        conn.execute(update(leases).where(leases.c.id == lease["id"]).values(
            started_at=now - 3 * 3600, ended_at=now))
    with pytest.raises(Refused) as err:
        start(ledger, "alice", kind="run", site="gpu", gpus=1)
    assert err.value.quota == "gpu_hours_per_day" and "3.00" in str(err.value)
    assert start(ledger, "alice", kind="run", site="local")["status"] == "active"  # no GPU


def test_asking_twice_for_one_name_is_one_lease_and_moves_its_holder(ledger):
    a = start(ledger, "alice", name="same")
    b = ledger.admit(TEAMS, "alice", {"kind": "cluster", "site": "local", "name": "same",
                                      "host": "h", "pid": 2})
    assert a["id"] == b["id"] and b["pid"] == 2
    assert len(ledger.leases("alice", active=True)) == 1


def test_sites_outside_the_users_groups_and_users_in_no_group(ledger):
    with pytest.raises(Refused, match="site 'gpu' is not among the sites of your groups"):
        start(ledger, "bob", site="gpu")
    with pytest.raises(Refused, match="in no group"):
        start(ledger, "mallory")
    with pytest.raises(Refused, match="site 'gpu'"):
        start(ledger, "bob", site="local+gpu")  # a hybrid cluster needs every site


def test_a_lease_id_is_no_lease_of_another_user(ledger):
    lease = start(ledger, "alice", name="a1")
    with pytest.raises(KeyError):
        ledger.release("bob", lease["id"])
    assert ledger.leases("alice", active=True)[0]["id"] == lease["id"]
    assert ledger.leases("bob") == []


@pytest.mark.parametrize("request_, message", [
    ({"kind": "vm", "site": "local"}, "kind 'vm'"),
    ({"kind": "cluster"}, "site:"),
    ({"kind": "cluster", "site": "local", "size": {"workers": -1}}, "size.workers"),
    ({"kind": "cluster", "site": "local", "size": {"disks": 1}}, "size.disks"),
])
def test_bad_requests(ledger, request_, message):
    with pytest.raises(ValueError, match=message):
        ledger.admit(TEAMS, "alice", request_)


def test_usage_per_user_group_and_site(ledger):
    start(ledger, "alice", name="a1", workers=2, cpus=4)
    start(ledger, "bob", kind="endpoint", cpus=1)
    ended = start(ledger, "bob", kind="job")
    ledger.release("bob", ended["id"], "succeeded")
    usage = ledger.usage(TEAMS)
    assert usage["users"]["alice"]["clusters"] == 1 and usage["users"]["alice"]["cpus"] == 4
    assert usage["users"]["bob"]["endpoints"] == 1 and usage["users"]["bob"]["jobs"] == 0
    assert usage["users"]["bob"]["starts"] == 2 and usage["users"]["carol"]["starts"] == 0
    assert usage["groups"]["research"]["workers"] == 2
    assert usage["sites"]["local"]["starts"] == 3
    assert json.loads(json.dumps(usage)) == usage


def test_reaper_marks_leases_of_vanished_holders_lost(ledger):
    gone = start(ledger, "alice", name="a1")
    kept = start(ledger, "bob", name="b1")
    n = ledger.reap_stale(time.time() + 1, lambda lease: lease["id"] == kept["id"])
    assert n == 1
    assert ledger.leases("alice")[0]["status"] == "lost" and gone["id"]
    assert ledger.leases("bob", active=True)[0]["id"] == kept["id"]
