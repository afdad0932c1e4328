"""Clusters on the embedded default: lifecycle, records, pinning, faults, TLS."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time

import pytest

import hybridnb
from hybridnb.errors import OperationError, UsageError
from hybridnb.state import Status


def inc(x):
    return x + 1


def test_local_cluster_lifecycle_and_record(store):
    with hybridnb.cluster("local", n_workers=2, threads_per_worker=1, store=store) as c:
        assert c.client.submit(inc, 1).result() == 2
        workers = c.workers()
        assert len(workers) == 2 and {w.site for w in workers} == {"local"}
        assert all(w.resources["data-pii"] >= 1 for w in workers)
        rec = store.get(c.record.id)
        assert rec.status is Status.running and rec.kind.value == "cluster"
        assert rec.address == c.scheduler_address and len(rec.pids) == 2
        assert os.getpid() not in [p.pid for p in rec.pids]  # gc never kills the kernel
        text = repr(c)
        assert "2 workers" in text and "on local" in text
        html = c._repr_html_()
        assert "<table>" in html and "local" in html and "dashboard" in html
        assert c.dashboard_link and c.dashboard_link.startswith("http")
        c.scale(3)
        c.wait_for_workers(3, timeout=60)
    assert c.closed and "closed" in repr(c)
    assert store.get(c.record.id).status is Status.stopped
    with pytest.raises(OperationError, match="closed"):
        c.client  # noqa: B018


def test_adapt_and_bad_adapt(store):
    with hybridnb.cluster("local", n_workers=0, adapt=(0, 2), processes=False,
                          store=store) as c:
        assert c.client.submit(inc, 41).result() == 42
        with pytest.raises(UsageError, match="maximum"):
            c.adapt(3, 1)
    with pytest.raises(UsageError, match="adapt="):
        hybridnb.cluster("local", n_workers=1, adapt="lots", processes=False, store=store)
    assert store.list(active=True) == []


@pytest.mark.asyncio
async def test_async_context_manager(store):
    async with await hybridnb.sites.acluster("local", n_workers=1, processes=False,
                                             store=store) as c:
        fut = c.client.submit(inc, 1)
        assert await asyncio.to_thread(fut.result) == 2
    assert c.closed


def test_never_closed_warns(store):
    c = hybridnb.cluster("local", n_workers=1, processes=False, store=store)
    rec_id = c.record.id
    with pytest.warns(ResourceWarning, match="never closed"):
        c.__del__()
    del c
    gc.collect()
    assert store.get(rec_id).status is Status.stopped


def test_unknown_site_is_a_usage_error(hybridnb_home):
    with pytest.raises(UsageError, match=r"unknown site 'locl' \(did you mean 'local'\?\)"):
        hybridnb.cluster("locl")


def test_residency_pinning_on_a_hybrid_cluster(hybrid_config, store):
    import dask.array as da

    with hybridnb.hybrid_cluster(["onprem", "cloud"], n_workers={"onprem": 1, "cloud": 2},
                                 config=hybrid_config, store=store) as c:
        c.wait_for_workers(3)
        by_site = {w.address: w.site for w in c.workers()}
        assert sorted(by_site.values()) == ["cloud", "cloud", "onprem"]
        assert c.record.site == "onprem+cloud"

        def where():
            from distributed import get_worker

            return get_worker().address

        # pii work lands only on onprem, however many tasks and whatever the load
        futs = c.client.map(lambda i: (i, where()), range(40), pure=False,
                            **c.pin(data="patients"))
        assert {by_site[a] for _, a in c.client.gather(futs)} == {"onprem"}
        # a dask collection, computed pinned
        x = da.arange(1000, chunks=100)
        assert c.compute((x * 2).sum(), data="patients") == 999000
        # public data may go anywhere; pin to a site explicitly
        futs = c.client.map(lambda i: where(), range(20), pure=False, **c.pin(sites="cloud"))
        assert {by_site[a] for a in c.client.gather(futs)} == {"cloud"}
        # pii AND internal: still only onprem
        assert c.pin(classification=["pii", "internal"])["resources"] == {
            "data-internal": 1, "data-pii": 1}


def test_no_allowed_worker_is_an_error_not_a_hang(hybrid_config, store):
    with hybridnb.hybrid_cluster(["cloud"], n_workers=1, scheduler_site="cloud",
                                 config=hybrid_config, store=store) as c:
        start = time.monotonic()
        with pytest.raises(UsageError) as info:
            c.pin(data="patients")
        assert time.monotonic() - start < 10
        message = str(info.value)
        assert "pii" in message and "workers are on cloud" in message
        assert "sites allowed: local, onprem" in message
        with pytest.raises(UsageError, match=r"no worker .* runs on site"):
            c.pin(sites="onprem")


def slow_square(i):
    time.sleep(0.02)
    return i * i


@pytest.mark.slow
def test_worker_killed_mid_graph_result_is_unchanged(store):
    import dask

    tasks = [dask.delayed(slow_square)(i) for i in range(300)]
    total = dask.delayed(sum)(tasks)
    expected = sum(i * i for i in range(300))
    with hybridnb.cluster("local", n_workers=3, threads_per_worker=1, store=store) as c:
        c.wait_for_workers(3)
        fut = c.client.compute(total)
        # wait until the graph is under way, then SIGKILL one worker process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            processing = c.client.processing()
            if sum(len(v) for v in processing.values()) >= 3:
                break
            time.sleep(0.05)
        pids = c.client.run(os.getpid)
        victim_pid = sorted(pids.items())[0][1]
        os.kill(victim_pid, signal.SIGKILL)
        assert fut.result(timeout=120) == expected
        # the nanny brings the worker back: three workers again
        deadline = time.monotonic() + 60
        while len(c.workers()) != 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(c.workers()) == 3
        assert victim_pid not in c.client.run(os.getpid).values()


def test_tls_local_cluster_refuses_plain_clients(hybridnb_home, store):
    from distributed import Client

    config = hybridnb.load_config(overrides={"sites.local.tls": True})
    with hybridnb.cluster("local", n_workers=1, processes=False, config=config,
                          store=store) as c:
        assert c.scheduler_address.startswith("tls://")
        assert c.client.submit(inc, 1).result() == 2
        plain = c.scheduler_address.replace("tls://", "tcp://")
        with pytest.raises((OSError, TimeoutError)):
            Client(plain, timeout=3)
        # no key material in what users and logs see
        for text in (repr(c), c._repr_html_(), str(store.get(c.record.id).model_dump())):
            assert "BEGIN" not in text and "PRIVATE KEY" not in text
        assert c.security == "TLS (files)"
        key = hybridnb_home / "state" / "tls" / c.name / "tls.key"
        assert key.exists() and (key.stat().st_mode & 0o077) == 0
    assert not key.parent.exists()  # certificates go with the cluster
