"""Per-task overhead: 10,000 no-op tasks through a hybridnb cluster handle against a raw
``distributed.Client`` on an identical LocalCluster (target ratio ≤ 1.1).

Also reported: the same tasks pinned to a data classification (resource restrictions),
against a raw client asking for the same resources.
"""

from __future__ import annotations

import os
import sys
import tempfile

from _report import alternate, report, timed

N_TASKS = 10_000


def noop(i):
    return i


def main(repeat: int = 5) -> None:
    os.environ.setdefault("HYBRIDNB_HOME", tempfile.mkdtemp(prefix="hybridnb-bench-"))
    from distributed import Client, LocalCluster

    import hybridnb
    from hybridnb.resource_tags import worker_resources

    config = hybridnb.load_config()
    shape = {"n_workers": 2, "threads_per_worker": 1}
    handle = hybridnb.cluster("local", config=config, **shape)
    raw_cluster = LocalCluster(dashboard_address=":0", processes=True,
                               resources=worker_resources(config.site("local")), **shape)
    raw = Client(raw_cluster, set_as_default=False)
    pins = handle.pin(classification="pii")

    def run(client, **kw):
        def go():
            futs = client.map(noop, range(N_TASKS), pure=False, **kw)
            assert client.gather(futs)[-1] == N_TASKS - 1
            del futs
        return timed(go)

    try:
        raw_samples = alternate({
            "raw distributed.Client": run(raw),
            "hybridnb handle": run(handle.client),
            "raw Client + resources": run(raw, resources=pins["resources"]),
            "hybridnb handle, pinned": run(handle.client, **pins),
        }, repeat, warmup=1)
    finally:
        raw.close()
        raw_cluster.close()
        handle.close()
    med = {k: sorted(v)[len(v) // 2] for k, v in raw_samples.items()}
    figures = {
        "per-task us (raw)": med["raw distributed.Client"] / N_TASKS * 1e6,
        "per-task us (hybridnb)": med["hybridnb handle"] / N_TASKS * 1e6,
        "ratio hybridnb/raw": med["hybridnb handle"] / med["raw distributed.Client"],
        "ratio pinned/raw+resources": med["hybridnb handle, pinned"]
        / med["raw Client + resources"],
    }
    report("cluster_overhead", raw_samples, figures, {"ratio hybridnb/raw": "<= 1.1"})


if __name__ == "__main__":
    sys.exit(main())
