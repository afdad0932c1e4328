"""A Dask scheduler and site-tagged workers on network-namespace hosts.

The multi-host tests (sites, training) all need the same thing: a ``dask scheduler`` on
one namespace host and workers of named sites on others, started the way an operator
would (``hybridnb worker``'s command line). The processes belong to their hosts and stop
at the fixture's teardown.

>>> from hybridnb.testing.netns_dask import scheduler_command
>>> scheduler_command("10.0.0.1", 8786)[-5:]
['--host', '10.0.0.1', '--port', '8786', '--no-dashboard']
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .netns import NetnsHost, wait_for_port

if TYPE_CHECKING:
    from ..config import HybridConfig

PORT = 8786


def scheduler_command(address: str, port: int = PORT, *extra: str) -> list[str]:
    """The command line of a plain ``dask scheduler`` listening on ``address:port``."""
    return [sys.executable, "-m", "distributed.cli.dask_scheduler", *extra, "--host", address,
            "--port", str(port), "--no-dashboard"]


def start_dask(hub: NetnsHost, workers: Iterable[tuple[NetnsHost, str]],
               config: HybridConfig, *, port: int = PORT) -> str:
    """Start a scheduler on ``hub`` and one worker per ``(host, site)``; its address.

    Workers are ``hybridnb worker`` command lines, so they carry their site's resources
    (``site-NAME``, ``data-CLASS``) from ``config``; each listens on its host's address.
    """
    from ..cli.worker import worker_command

    address = f"tcp://{hub.address}:{port}"
    hub.popen(scheduler_command(hub.address, port))
    wait_for_port(hub.address, port)
    for host, site in workers:
        host.popen(worker_command(address, site, config, nthreads=1, host=host.address,
                                  name=site))
    return address
