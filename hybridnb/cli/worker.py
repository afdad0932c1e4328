"""``hybridnb worker SCHEDULER --site NAME``: a Dask worker tagged with its site.

For sites whose workers someone else starts (the ``scheduler`` backend): it runs
``dask worker`` with the site's resource tags (``site-NAME``, ``data-CLASS``) so that
residency pinning finds it, and with the site's TLS files when the address is tls://.
A plain tcp:// scheduler beyond loopback is refused unless the site says ``tls: false``
(then it warns).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..config import HybridConfig

from .common import options


def worker_command(scheduler: str, site_name: str, config: HybridConfig,
                   nthreads: int | None = None, memory_limit: str | None = None,
                   host: str | None = None, name: str | None = None) -> list[str]:
    """The ``dask worker`` command line for a worker of ``site_name``."""
    from ..config.models import address_is_loopback
    from ..errors import UsageError
    from ..resource_tags import resources_arg, worker_resources

    site = config.site(site_name)
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
           "--resources", resources_arg(worker_resources(site)), "--no-dashboard"]
    if nthreads is not None:
        cmd += ["--nthreads", str(nthreads)]
    if memory_limit is not None:
        cmd += ["--memory-limit", memory_limit]
    if host is not None:
        cmd += ["--host", host]
    if name is not None:
        cmd += ["--name", name]
    if scheduler.startswith("tls://"):
        opts = site.scheduler
        if opts is None or not (opts.tls_ca_file and opts.tls_cert and opts.tls_key):
            raise UsageError(f"{scheduler} needs TLS files: set tls_ca_file, tls_cert and "
                             f"tls_key under sites.{site_name}.scheduler")
        cmd += ["--tls-ca-file", opts.tls_ca_file, "--tls-cert", opts.tls_cert,
                "--tls-key", opts.tls_key]
    elif not address_is_loopback(scheduler):
        # A plain worker beyond loopback runs code for anyone who reaches it: only a site
        # that says tls: false may, and then it is told so.
        if not site.tls_opted_out:
            raise UsageError(
                f"site '{site_name}' requires TLS to join {scheduler}: use a tls:// "
                f"scheduler address (with tls_ca_file, tls_cert and tls_key under "
                f"sites.{site_name}.scheduler), or set sites.{site_name}.tls: false on a "
                "trusted network")
        from ..sites.security import warn_plain

        warn_plain(site, scheduler)
    return cmd


def worker(ctx: typer.Context,
           scheduler: str = typer.Argument(..., help="Scheduler address, tcp:// or tls://"),
           site: str = typer.Option(..., "--site", help="The site this worker belongs to."),
           nthreads: int | None = typer.Option(None, "--nthreads", metavar="N",
                                               help="Threads of the worker (default: "
                                                    "Dask's, one per core)."),
           memory_limit: str | None = typer.Option(None, "--memory-limit", metavar="SIZE",
                                                   help="Memory the worker may use, e.g. "
                                                        "8GiB (default: Dask's)."),
           host: str | None = typer.Option(None, "--host", metavar="ADDRESS",
                                           help="Address to listen on."),
           name: str | None = typer.Option(None, "--name",
                                           help="The worker's name (default: Dask's)."),
           ) -> None:
    """Run a Dask worker for SITE that joins SCHEDULER (replaces this process)."""
    cmd = worker_command(scheduler, site, options(ctx).config(), nthreads, memory_limit,
                         host, name)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
