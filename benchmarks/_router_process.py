"""hybridnb's router (:func:`~hybridnb.serve.router_app.create_router_app`) as a process.

What a deployment runs in a thread, here in a process of its own, so a benchmark can
measure it (CPU, and no GIL shared with the load generator) in front of replicas it did
not start: ``python _router_process.py PORT ROUTING URL...``; it serves until SIGTERM.
"""

from __future__ import annotations

import sys

from hybridnb.serve.router import ReplicaPool
from hybridnb.serve.router_app import create_router_app
from hybridnb.serve.server import _make_server, bind


def main(argv: list[str]) -> None:
    port, routing, urls = int(argv[0]), argv[1], argv[2:]
    pool = ReplicaPool()
    for url in urls:
        pool.add(url)
    sock = bind("127.0.0.1", port)
    app = create_router_app(pool, routing)
    _make_server(app, log_config=None, drain_timeout_s=5.0).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
