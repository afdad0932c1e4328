"""What workers received, by classification, from their own records (a worker plugin)."""

from __future__ import annotations

import numpy as np

import hybridnb
from hybridnb.data import read_npy
from hybridnb.sites.residency import ResidencyRecorder, read_residency, record_residency
from hybridnb.testing.waiting import wait_until


def _by_site(records):
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(r.site, []).append(r)
    return out


def _records(logs, n):
    """The records of ``n`` workers (each line is flushed as it is written)."""
    wait_until(lambda: len(read_residency(logs)) == n, timeout=30, what=f"{n} records")
    return read_residency(logs)


def _make(n):
    return np.ones(n, dtype=np.float64)


def test_workers_record_pii_tasks_fetches_and_opened_files(hybrid_config, store, tmp_path):
    pii = tmp_path / "onprem-disk"
    pii.mkdir()
    np.save(pii / "x.npy", np.arange(4000, dtype=np.float32).reshape(1000, 4))
    logs = tmp_path / "residency"
    with hybridnb.hybrid_cluster(["onprem", "cloud"], n_workers={"onprem": 2, "cloud": 2},
                                 config=hybrid_config, store=store) as c:
        c.wait_for_workers(4)
        plugin = record_residency(c, logs, watch=[pii])
        assert isinstance(plugin, ResidencyRecorder)
        ds = read_npy(pii / "x.npy", name="patients", site="onprem", classification="pii",
                      chunk_rows=100)
        assert c.compute(ds.x.sum(), data="patients") == float(np.arange(4000).sum())
        # One pii task's output fetched by the other onprem worker: counted for pii there.
        onprem = sorted(w.address for w in c.workers() if w.site == "onprem")
        pins = c.pin(data="patients")["resources"]
        a = c.client.submit(_make, 5000, workers=[onprem[0]], resources=pins, pure=False)
        b = c.client.submit(np.sum, a, workers=[onprem[1]], resources=pins, pure=False)
        assert b.result() == 5000
        # Public work goes anywhere, the cloud included.
        futs = c.client.map(abs, range(-20, 0), pure=False, **c.pin(sites="cloud"))
        assert sum(c.client.gather(futs)) == 210
        del a, b, futs
    sites = _by_site(_records(logs, 4))
    assert sorted(sites) == ["cloud", "onprem"] and len(sites["onprem"]) == 2
    for cloud in sites["cloud"]:
        assert cloud.received("pii") == (0, 0) and cloud.opened == []
    assert sum(r.tasks.get("unrestricted", 0) for r in sites["cloud"]) >= 20
    assert sum(r.tasks.get("pii", 0) for r in sites["onprem"]) >= 10 + 2
    assert any(r.bytes_in.get("pii", 0) >= 5000 * 8 for r in sites["onprem"])
    assert any(p.endswith("x.npy") for r in sites["onprem"] for p in r.opened)


def test_a_worker_reading_pii_without_a_pin_is_caught_by_its_own_record(
        hybrid_config, store, tmp_path):
    """The record is the worker's, not the scheduler's: work that reads pii files but was
    not pinned (here: sent to the cloud on purpose) shows as the cloud opening them."""
    pii = tmp_path / "onprem-disk"
    pii.mkdir()
    np.save(pii / "x.npy", np.ones((200, 4), dtype=np.float32))
    logs = tmp_path / "residency"
    with hybridnb.hybrid_cluster(["onprem", "cloud"], n_workers={"onprem": 1, "cloud": 1},
                                 config=hybrid_config, store=store) as c:
        c.wait_for_workers(2)
        record_residency(c, logs, watch=[pii])
        ds = read_npy(pii / "x.npy", name="patients", site="onprem", classification="pii")
        assert c.compute(ds.x.sum(), sites="cloud") == 800.0
    (cloud,) = _by_site(_records(logs, 2))["cloud"]
    assert cloud.opened and cloud.received("pii") == (0, 0)
    assert cloud.tasks.get("unrestricted", 0) >= 1
