"""The ``dask`` launcher: one rank per worker of a hybridnb cluster.

Each rank runs in a subprocess the worker spawns (``python -m hybridnb.train.loop``), so
a crashed rank never takes its worker down and every attempt gets a clean process group.
Rendezvous: ``MASTER_ADDR`` is rank 0's worker host, with a port chosen free there; rank 0
hosts the TCP store. Gloo is told which interface to use (the one holding the worker's
address), which is what makes it work inside network namespaces and multi-homed hosts.

When one rank fails, a ``distributed.Event`` tells the others to stop their subprocess;
the group is restarted from the latest checkpoint up to ``max_restarts`` times, then the
error names the failing rank. The run directory must be visible to every worker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OperationError, UsageError
from ..processes import free_port, tail
from .follow import Follower

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..sites import ClusterHandle
    from ..state import StateStore
    from .spec import TrainSpec

logger = logging.getLogger(__name__)


def _interface_of(host: str) -> str | None:
    """The network interface that holds address ``host`` (for GLOO_SOCKET_IFNAME)."""
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == host for a in addrs):
            return name
    return None


def worker_free_port() -> int:
    from distributed import get_worker

    host = get_worker().address.split("://")[-1].rsplit(":", 1)[0]
    return free_port(host)


def run_rank(rank: int, world: int, master: str, port: int, run_dir: str, attempt: int,
             event_name: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one rank in a subprocess on this worker; stop it if the event is set."""
    from distributed import Event, get_worker

    host = get_worker().address.split("://")[-1].rsplit(":", 1)[0]
    child_env = {**os.environ, **env, "RANK": str(rank), "WORLD_SIZE": str(world),
                 "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": master,
                 "MASTER_PORT": str(port), "HYBRIDNB_ATTEMPT": str(attempt),
                 "TORCHELASTIC_ERROR_FILE": str(Path(run_dir) / "logs" /
                                                f"error-rank{rank}-attempt{attempt}.json")}
    iface = _interface_of(host)
    if iface and "GLOO_SOCKET_IFNAME" not in env:
        child_env["GLOO_SOCKET_IFNAME"] = iface
    stop = Event(event_name)
    proc = subprocess.Popen([sys.executable, "-m", "hybridnb.train.loop",
                             str(Path(run_dir) / "spec.json"), run_dir], env=child_env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None:
            if stop.is_set():
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return {"rank": rank, "exitcode": proc.returncode, "host": host, "pid": proc.pid,
            "stopped": stop.is_set()}


def run_on_dask(spec: TrainSpec, run_dir: Path, *, nprocs: int, site: str,
                cluster: ClusterHandle | None, config: HybridConfig | None, store: StateStore,
                record_id: str, live: bool, timeout: float | None,
                model_path: list[str] | None = None) -> None:
    """Run every attempt of the job on the cluster's workers (see the module docstring)."""
    from ..state import Status

    owned = None
    if cluster is None:
        from ..sites import cluster as start_cluster

        owned = cluster = start_cluster(site, n_workers=nprocs, config=config, store=store)
    try:
        workers = sorted(cluster.workers(), key=lambda w: w.address)
        if nprocs > len(workers):
            raise UsageError(f"{nprocs} ranks need {nprocs} workers; cluster {cluster.name!r} "
                             f"has {len(workers)}")
        chosen = [w.address for w in workers[:nprocs]]
        (run_dir / "logs").mkdir(exist_ok=True)
        store.update(record_id, status=Status.running)
        follow = Follower(spec, run_dir, store, record_id, live, timeout)
        failed: dict[str, Any] = {}
        for attempt in range(spec.max_restarts + 1):
            outcome = _attempt(cluster, chosen, spec, run_dir, attempt, follow,
                               model_path or [])
            if outcome is None:
                return
            failed = outcome
            logger.warning("attempt %d failed: rank %s exit %s", attempt, failed["rank"],
                           failed["exitcode"])
        raise OperationError(_message(spec, run_dir, failed))
    finally:
        if owned is not None:
            owned.close()


def _attempt(cluster: ClusterHandle, chosen: list[str], spec: TrainSpec, run_dir: Path,
             attempt: int, follow: Follower, model_path: list[str]) -> dict[str, Any] | None:
    from distributed import Event

    from .models import ENV_MODEL_PATH

    client = cluster.client
    master = chosen[0].split("://")[-1].rsplit(":", 1)[0]
    port = client.submit(worker_free_port, workers=[chosen[0]], pure=False,
                         allow_other_workers=False).result()
    event_name = f"hybridnb-train-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k.startswith(("HYBRIDNB_TRAIN_", "GLOO_"))}
    env["OMP_NUM_THREADS"] = str(spec.threads)  # as the local agent does for its ranks
    # Where the check found the model module (directories missing on a worker's host are
    # skipped there: its module must then be installed on that host).
    env[ENV_MODEL_PATH] = os.pathsep.join(model_path)
    futures = [client.submit(run_rank, rank, len(chosen), master, port, str(run_dir), attempt,
                             event_name, env, workers=[addr], pure=False,
                             allow_other_workers=False)
               for rank, addr in enumerate(chosen)]
    stop = Event(event_name, client=client)
    failed: dict[str, Any] | None = None
    try:
        pending = set(futures)
        while pending:
            time.sleep(0.3)
            done = {f for f in pending if f.done()}
            pending -= done
            follow.tick()
            for fut in done:
                out = fut.result()  # a worker that died raises here (KilledWorker)
                if out["exitcode"] != 0 and not out["stopped"] and failed is None:
                    failed = out
                    stop.set()  # the others would wait in a collective until the timeout
            if follow.expired():
                stop.set()
                raise OperationError(f"training run {spec.name!r} did not finish in time")
    except BaseException:
        stop.set()
        raise
    finally:
        client.gather(futures, errors="skip")
    follow.tick(final=True)
    return failed


def _message(spec: TrainSpec, run_dir: Path, failed: dict[str, Any]) -> str:
    code = failed["exitcode"]
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code}")
    log = run_dir / "logs" / f"rank{failed['rank']}.log"
    return (f"training run {spec.name!r} failed on Dask: rank {failed['rank']} (pid "
            f"{failed['pid']} on {failed['host']}) {how}. Log {log}, last lines:\n{tail(log, 15)}")
