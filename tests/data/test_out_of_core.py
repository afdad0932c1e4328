"""A dataset three times larger than the workers' memory streams through without a
worker being killed (real LocalCluster processes with small memory limits)."""

from __future__ import annotations

import pytest

import hybridnb
from hybridnb.data import Pipeline, read_parquet, verify, write_synthetic_parquet

LIMIT = 400e6                 # per worker
WORKERS = 1                   # one small worker keeps the test short on 2 cores
COLS = 15                     # + label: 128 bytes a row in memory
ROWS = 9_400_000              # 1.2 GB in memory: ≥ 3 × (1 × 400 MB)
PARTITIONS = 260              # ~4.6 MB each: a worker's limit holds its imports plus a few


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~90 s on a quiet 2-core machine; far more on a loaded one
def test_three_times_memory_streams_through(tmp_path, store, cache, monkeypatch):
    # Arrow's own allocator keeps freed memory, which counts against the small limit;
    # the worker processes inherit this and use the system allocator instead.
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    # Imports alone take ~50% of 400 MB of unmanaged memory. A lone worker that pauses on
    # it has nobody to hand work to and stalls for good (seen here), so it does not
    # pause: spilling keeps managed memory down, and the nanny still kills at 95%,
    # which is what this test would catch.
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE", "False")
    assert ROWS * (COLS + 1) * 8 >= 3 * WORKERS * LIMIT
    with hybridnb.cluster("local", n_workers=WORKERS, threads_per_worker=1,
                          memory_limit=LIMIT, processes=True, store=store) as c:
        before = {w.address for w in c.workers()}
        src = write_synthetic_parquet(tmp_path / "src", ROWS, COLS, seed=0,
                                      partitions=PARTITIONS, missing=0.001, client=c.client)
        ds = read_parquet(src, target="label", classification="internal")
        result = Pipeline([{"drop_missing": {}}, {"split": {}}, {"standard_scale": {}}],
                          name="big").run(ds, cluster=c, out=tmp_path / "out",
                                          cache_dir=cache, progress=False)
        after = {w.address for w in c.workers()}
    assert after == before  # no worker was killed and restarted
    assert 0 < result.summary.steps[0].dropped < ROWS * 0.05
    assert sum(result.counts.values()) == result.summary.steps[0].rows_out
    assert len(result.manifest["shards"]) == 3 * PARTITIONS
    assert verify(tmp_path / "out") == []
