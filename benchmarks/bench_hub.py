"""The time a start spends asking the team's hub service (target ≤ 20 ms p95 on loopback).

A real JupyterHub on 127.0.0.1 (hybridnb.testing.hub: configurable-http-proxy, the
dummy authenticator, sqlite) with the hybridnb service; this process acts as alice's
server (her JupyterHub token). Side by side, alternating after warm-up:

- ``admit`` — what :func:`hybridnb.team.admit` adds to a start: one keep-alive request
  to the service, which checks the token with the hub (cached, as JupyterHub's HubAuth
  does) and runs the quota check and the insert in one SQLite transaction;
- ``release`` — what a stop adds;
- ``hub token check (peer)`` — one ``GET /hub/api/user`` with the same token: what any
  hub-authenticated service pays when its cache misses (the hub's own floor);
- ``outside a hub`` — the embedded default (no token): no configuration read, no I/O.
"""

from __future__ import annotations

import http.client
import os
import statistics
import tempfile
import time
from pathlib import Path

from _report import alternate, report


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def main(repeat: int = 200) -> None:
    from hybridnb import team
    from hybridnb.config import load_config
    from hybridnb.testing.hub import running_hub

    with tempfile.TemporaryDirectory() as tmp, \
            running_hub(Path(tmp), servers=(), gateway=False) as hub:
        os.environ.update(hub.user_env("alice"))
        config = load_config()
        token = hub.tokens["alice"]
        held: list[team.Lease] = []

        def admit() -> float:
            start = time.perf_counter()
            lease = team.admit("run", "local", {"cpus": 1}, config=config)
            took = time.perf_counter() - start
            held.append(lease)
            return took

        def release() -> float:
            lease = held.pop() if held else team.admit("run", "local", {"cpus": 1},
                                                       config=config)
            start = time.perf_counter()
            lease.release("stopped")
            return time.perf_counter() - start

        hub_conn = http.client.HTTPConnection("127.0.0.1", hub.ports["proxy"], timeout=10)

        def hub_check() -> float:
            start = time.perf_counter()
            hub_conn.request("GET", "/hub/api/user", headers={"Authorization": f"token {token}"})
            response = hub_conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            return time.perf_counter() - start

        def outside() -> float:
            start = time.perf_counter()
            team.admit("run", "local", {"cpus": 1}, environ={}).release()
            return time.perf_counter() - start

        raw = alternate({"admit": admit, "release": release,
                         "hub token check (peer)": hub_check,
                         "outside a hub": outside}, repeat, warmup=5)
        for lease in held:
            lease.release()
    ms = {k: [v * 1000 for v in values] for k, values in raw.items()}
    figures = {
        "admit p95 ms": p95(ms["admit"]),
        "admit median ms": statistics.median(ms["admit"]),
        "release p95 ms": p95(ms["release"]),
        "admit+release p95 ms": p95([a + r for a, r in zip(ms["admit"], ms["release"],
                                                           strict=True)]),
        "hub token check p95 ms (peer)": p95(ms["hub token check (peer)"]),
        "admit / hub check (median)": statistics.median(ms["admit"])
        / max(statistics.median(ms["hub token check (peer)"]), 1e-9),
        "outside a hub p95 us": p95(ms["outside a hub"]) * 1000,
    }
    report("hub", ms, figures, {"admit p95 ms": "<= 20"}, unit="ms")


if __name__ == "__main__":
    main()
