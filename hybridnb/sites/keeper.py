"""Keep a cluster running in a detached process (``hybridnb cluster up``).

Run as ``python -m hybridnb.sites.keeper --site S --name N ...``: it starts the cluster
with :func:`hybridnb.cluster`, adds its own pid to the cluster's record (so ``cluster
down`` and ``gc`` can stop it), and closes the cluster cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading

from ..state import ProcessRef, StateStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hybridnb-keeper")
    parser.add_argument("--site", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--memory")
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--overrides", default="{}", help="JSON of --set overrides")
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
                     memory_limit=args.memory, name=args.name, store=store, config=config)
    rec = handle.record
    if rec is not None:
        store.update(rec.id, pids=[*rec.pids, ProcessRef.of(os.getpid())],
                     address=handle.scheduler_address,
                     message=f"kept by pid {os.getpid()}; dashboard {handle.dashboard_link}")
    logging.getLogger(__name__).info("cluster %s up at %s", args.name, handle.scheduler_address)
    stop.wait()
    handle.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
