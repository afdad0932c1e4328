"""2-rank DDP across two hosts (network namespaces) through the dask launcher."""

from __future__ import annotations

import pytest

import hybridnb
from hybridnb.config import load_config
from hybridnb.testing.netns_dask import start_dask
from hybridnb.train import fit

from .conftest import tiny

pytestmark = pytest.mark.netns

PORT = 8786


# The namespaces are a throw-away network of this test; TLS is tested in tests/sites.
@pytest.mark.filterwarnings("ignore::hybridnb.sites.security.InsecureSiteWarning")
def test_ddp_across_two_namespace_hosts(netns_hosts, store, tmp_path):
    hub, left, right = netns_hosts(3)
    address = f"tcp://{hub.address}:{PORT}"
    config = load_config(overrides={"sites": {
        name: {"tier": "private", "backend": "scheduler", "tls": False,
               "scheduler": {"address": address, "timeout": 10},
               "capacity": {"cpu": 1, "memory": "1GiB"}}
        for name in ("hub", "left", "right")}})
    start_dask(hub, [(left, "left"), (right, "right")], config, port=PORT)
    with hybridnb.hybrid_cluster(["left", "right"], scheduler_site="hub", config=config,
                                 store=store) as c:
        c.wait_for_workers(2, timeout=60)
        result = fit(tiny(max_steps=4), nprocs=2, launcher="dask", cluster=c, site="hub",
                     config=config, run_dir=tmp_path / "run", store=store, bundle=False)
    assert result.result["world_size"] == 2 and result.result["steps"] == 4
    logs = (tmp_path / "run" / "logs" / "rank1.log").read_text()
    assert "rank 1/2 joined" in logs
