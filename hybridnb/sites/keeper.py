"""Keep a cluster running in a detached process (``hybridnb cluster up``).

Run as ``python -m hybridnb.sites.keeper --site S --name N ...``: it starts the cluster
with :func:`hybridnb.cluster`, adds its own pid to the cluster's record (so ``cluster
down`` and ``gc`` can stop it), and closes the cluster cleanly on SIGTERM or SIGINT.

While it runs it reconciles (STYLE.md habit 4): a surface that wants another size writes
``spec.desired`` (``{"generation": g, "workers": n}`` or ``{"generation": g, "adapt":
{"minimum": a, "maximum": b}}``) with :meth:`~hybridnb.state.StateStore.merge_spec`; the
keeper applies each new generation, records it as ``spec.applied``, and keeps
``spec.workers``/``threads``/``memory_bytes`` current for lists that must not ask the
scheduler.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from ..errors import OperationError
from ..state import ProcessRef, Record, StateStore, Status

#: Seconds between two looks at the desired state and the workers.
RECONCILE_EVERY = 0.5


def launch_keeper(cmd: list[str], *, name: str, log_path: Path, timeout: float,
                  store: StateStore) -> Record:
    """Start the keeper command ``cmd`` detached and return its cluster's record once it
    runs (``hybridnb cluster up`` and the sidebar both start clusters this way).

    A keeper that dies before its cluster runs, or does not get there in ``timeout``
    seconds (then it is stopped), is an :class:`OperationError` carrying its log's end.
    """
    from ..processes import spawn_detached, tail
    from ..waiting import Ended, wait_until

    pid = spawn_detached(cmd, log_path)
    keeper = ProcessRef.of(pid)

    def running() -> Record | None:
        rec = next((r for r in store.list("cluster") if r.name == name), None)
        ok = rec is not None and rec.status is Status.running and any(
            p.pid == pid for p in rec.pids)
        return rec if ok else None

    try:
        return wait_until(running, timeout=timeout, ignore=(), alive=keeper.alive,
                          what=f"cluster {name}")
    except Ended:
        raise OperationError(f"cluster {name} failed to start:\n  "
                             + tail(log_path, 5).replace("\n", "\n  ")
                             + f"\n(full log: {log_path})") from None
    except TimeoutError:
        os.kill(pid, signal.SIGTERM)
        raise OperationError(f"cluster {name} did not start within {timeout:g} s "
                             f"(log: {log_path})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hybridnb-keeper")
    parser.add_argument("--site", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--memory")
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--overrides", default="{}", help="JSON of --set overrides")
    parser.add_argument("--started-from", default="cli",
                        help="What asked for it (cli, sidebar): shown in lists")
    parser.add_argument("--adapt", help='JSON {"minimum": a, "maximum": b}: adapt from the start')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from ..config import load_config
    from .factory import cluster

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    store = StateStore()
    config = load_config(*args.config, overrides=json.loads(args.overrides))
    handle = cluster(args.site, n_workers=args.workers, threads_per_worker=args.threads,
                     memory_limit=args.memory, name=args.name, store=store, config=config,
                     adapt=json.loads(args.adapt) if args.adapt else None)
    rec = handle.record
    if rec is not None:
        store.merge_spec(rec.id, {"started_from": args.started_from})
        store.update(rec.id, pids=[*rec.pids, ProcessRef.of(os.getpid())],
                     address=handle.scheduler_address,
                     message=f"kept by pid {os.getpid()}; dashboard {handle.dashboard_link}")
    logging.getLogger(__name__).info("cluster %s up at %s", args.name, handle.scheduler_address)
    seen: dict[str, Any] = {}
    while not stop.wait(RECONCILE_EVERY):
        if rec is not None:
            seen = reconcile(handle, store, rec.id, seen)
    handle.close()
    return 0


def reconcile(handle: Any, store: StateStore, record_id: str,
              seen: dict[str, Any]) -> dict[str, Any]:
    """Apply a new desired size, and record the workers when they changed; returns what
    was recorded (pass it back next time)."""
    log = logging.getLogger(__name__)
    spec = store.get(record_id).spec
    desired = spec.get("desired") or {}
    changes: dict[str, Any] = {}
    if desired.get("generation") not in (None, (spec.get("applied") or {}).get("generation")):
        try:
            if desired.get("adapt") is not None:
                handle.adapt(**desired["adapt"])
            elif desired.get("workers") is not None:
                adaptive = getattr(handle.cluster, "_adaptive", None)
                if adaptive is not None:  # a fixed size ends adaptivity (on its loop)
                    handle.cluster.loop.add_callback(adaptive.stop)
                handle.scale(int(desired["workers"]))
            changes["applied"] = {**desired, "error": None}
        except Exception as exc:  # a size the backend refuses: say so, keep running
            log.warning("cluster %s: cannot apply %s: %s", handle.name, desired, exc)
            changes["applied"] = {**desired, "error": str(exc)}
    try:
        workers = handle.workers()
    except Exception:  # a scheduler busy past the timeout: try again next round
        workers = None
    if workers is not None:
        stats = {"workers": len(workers), "threads": sum(w.nthreads for w in workers),
                 "memory_bytes": sum(w.memory_limit for w in workers)}
        if stats != seen:
            changes.update(stats)
            seen = stats
    if changes:
        store.merge_spec(record_id, changes)
    return seen


if __name__ == "__main__":
    raise SystemExit(main())
