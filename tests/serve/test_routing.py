"""Routing under load, end to end: a deployment of two replicas, one of them slow.

The slow replica is a real replica process that is paused (SIGSTOP) most of the time
and let run (SIGCONT) briefly, like a host starved by a noisy neighbour: it answers,
late, and burns no CPU meanwhile, so the test machine's load cannot blur the
difference. Load goes through the real router; the per-replica request counts come
from the router's and the replicas' own ``/metrics``. Round robin is the control: it
splits evenly whatever the speeds, so a skew under the other policies is theirs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from hybridnb.serve.endpoint import deploy
from hybridnb.serve.settings import ServeSettings

from .conftest import infer_body
from .test_deploy import INFER, _hammer

pytestmark = pytest.mark.slow

SETTINGS = ServeSettings(batching=False, threads=1)
ROUTE = INFER.replace("/mlp/", "/{name}/")


@contextmanager
def starved(pid: int, paused_s: float = 0.3, running_s: float = 0.01) -> Iterator[None]:
    """Keep ``pid`` paused ``paused_s`` out of every ``paused_s + running_s`` seconds.

    Readiness probes still get answers (within ``paused_s``, far below the health
    check's 2 s timeout), so the deployment keeps the replica rather than replacing it.
    """
    stop = threading.Event()

    def cycle() -> None:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            stop.wait(paused_s)
            os.kill(pid, signal.SIGCONT)
            stop.wait(running_s)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        os.kill(pid, signal.SIGCONT)  # never leave it stopped: it must drain on close


def _counts(metrics: dict, index: int) -> tuple[float, float]:
    """Requests answered 200 by replica ``index``: (router's count, replica's own count)."""
    router = metrics["router"].get(
        f'hybridnb_router_requests_total{{code="200",replica="{index}",version="stable"}}', 0.0
    )
    own = metrics["replicas"][index].get(
        f'hybridnb_endpoint_requests_total{{code="200",route="{ROUTE}"}}', 0.0
    )
    return router, own


@pytest.mark.parametrize("routing", ["least_connections", "least_response_time", "round_robin"])
def test_load_goes_to_the_fast_replica(routing, mlp, hybridnb_home):
    _, b = mlp
    x = np.ones((1, 8), np.float32)
    with deploy(b, replicas=2, routing=routing, settings=SETTINGS, record=False) as ep:
        fast, slow = ep._d.pool.replicas
        with starved(slow.process.pid):
            results, errors = asyncio.run(
                _hammer(ep.url + INFER, infer_body(x), seconds=6, limit=300, concurrency=4)
            )
        assert not errors, errors[:3]
        assert {code for code, _ in results} == {200}
        assert ep.status()["healthy"] == 2  # slow, not dead: nothing was replaced
        metrics = ep.metrics()
    n_fast, own_fast = _counts(metrics, fast.index)
    n_slow, own_slow = _counts(metrics, slow.index)
    # Both sides saw the same requests: the router's labels name the right replica.
    assert (n_fast, n_slow) == (own_fast, own_slow)
    assert n_fast + n_slow == len(results)
    if routing == "round_robin":
        assert abs(n_fast - n_slow) <= 1, (n_fast, n_slow)  # blind to speed: the control
    else:
        # The slow replica answers a couple of requests per 0.31 s cycle at best, the
        # fast one dozens: the expected skew is well beyond 4:1.
        assert n_fast >= 4 * n_slow, (n_fast, n_slow)
