"""``gateway`` backend: a Dask cluster from a team's dask-gateway, through the hub.

The gateway (``dask-gateway-server``) starts schedulers and workers for everyone; this
backend asks it for a cluster with ``dask_gateway.GatewayCluster``, authenticated with
the user's JupyterHub token (``JupyterHubAuth``: ``$JUPYTERHUB_API_TOKEN``). Cluster
options — cores and memory per worker, workers to start with — come from the site's
``gateway:`` block or the start's arguments (``threads_per_worker`` → ``worker_cores``,
``memory_limit`` → ``worker_memory``; the sidebar's cluster form passes those).

dask-gateway has no per-user limits of its own: the team's quotas give them. A scale or
an adaptive maximum past the user's ``workers`` quota (or past what their ``cpus``
quota allows at the cluster's cores per worker) is capped, with a
:class:`QuotaCapWarning`. Traffic is TLS with the gateway's per-cluster certificates,
and the dashboard is the gateway's (authenticated) one.

Note for gateway admins: dask-gateway-server's default ``ClusterConfig.scheduler_cmd``
and ``worker_cmd`` are the removed ``dask-scheduler``/``dask-worker`` scripts; set
``["dask", "scheduler"]`` and ``["dask", "worker"]``.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import TYPE_CHECKING, Any

from ..errors import OperationError, UsageError
from .base import Backend, Started

if TYPE_CHECKING:
    from ..state import Record, StateStore

logger = logging.getLogger(__name__)


class QuotaCapWarning(UserWarning):
    """A scale was capped at the team's quota."""


def _gateway_classes() -> tuple[Any, Any]:
    try:
        from dask_gateway import GatewayCluster
        from dask_gateway.client import GatewaySecurity
    except ImportError:  # the client is an extra: hybridnb[gateway]
        raise UsageError("the gateway backend needs the dask-gateway client: pip install "
                         "'hybridnb[gateway]' (or dask-gateway)") from None
    return GatewayCluster, GatewaySecurity


def _security(security: Any) -> Any:
    """dask-gateway's in-memory TLS credentials, described like distributed's own."""
    if security is None:
        return None
    _, GatewaySecurity = _gateway_classes()

    class Credentials(GatewaySecurity):  # type: ignore[misc, valid-type]
        require_encryption = True
        tls_ca_file = "-----BEGIN CERTIFICATE----- (the gateway's, in memory)"

    return Credentials(security.tls_key, security.tls_cert)


def capped(n: int | None, cap: int | None, what: str) -> int | None:
    """``n``, or ``cap`` with a :class:`QuotaCapWarning` when ``n`` is above it.

    >>> capped(3, 5, "scale"), capped(None, 5, "adapt")
    (3, 5)
    """
    if cap is None:
        return n
    if n is None or n > cap:
        if n is not None:
            message = (f"{what}: {n} workers is past your team quota; capped at {cap} (ask "
                       "your team's contact for more)")
            warnings.warn(message, QuotaCapWarning, stacklevel=3)
            logger.warning("%s", message)
        return cap
    return n


def _close_once(gateway: Any) -> None:
    """Make ``gateway.close()`` idempotent: dask-gateway 2026.3 closes its client again
    from ``__del__``, and a second close asks distributed for a loop it stopped."""
    close, done = gateway.close, list[bool]()

    def once() -> Any:
        if not done:
            done.append(True)
            return close()
        return None

    gateway.close = once


class GatewayBackend(Backend):
    """Clusters from a dask-gateway (the team's shared Dask)."""

    name = "gateway"

    def security(self, directory: Any = None) -> None:
        return None  # the gateway makes each cluster's certificates

    def _auth(self) -> Any:
        from dask_gateway.auth import get_auth

        if self.options.auth == "jupyterhub" and not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise UsageError(f"site '{self.site.name}' authenticates through JupyterHub, but "
                             "this process has no $JUPYTERHUB_API_TOKEN: use it from a server "
                             "of the hub (or a token the hub issued)")
        return get_auth(self.options.auth)

    def max_workers(self, cores: float | None) -> int | None:
        """The most workers the user's quotas allow (None: no quota)."""
        from ..config.teams import hub_user

        teams, user = self.config.teams, hub_user(os.environ)
        if teams is None or user is None:
            return None
        limits = teams.user_quota(user, teams.charged_group(user, self.site.name))
        caps = []
        if "workers" in limits:
            caps.append(int(limits["workers"]))
        if "cpus" in limits:
            caps.append(math.floor(limits["cpus"] / (cores or 1)))
        return min(caps) if caps else None

    def cluster_options(self, threads_per_worker: int | None,
                        memory_limit: str | float | None) -> dict[str, Any]:
        """The cluster options to ask for (only those the site or the start sets)."""
        from ..config.units import parse_bytes

        opts = self.options
        out = dict(opts.options)
        cores = threads_per_worker or opts.cores
        memory = parse_bytes(memory_limit) if memory_limit is not None else opts.memory
        if cores is not None:
            out["worker_cores"] = cores
        if memory is not None:
            out["worker_memory"] = round(memory / 2**30, 3)  # GiB, as the gateway takes it
        return out

    def start(self, *, name: str, n_workers: int | None, threads_per_worker: int | None,
              memory_limit: str | float | None, security: Any) -> Started:
        GatewayCluster, _ = _gateway_classes()
        opts = self.options
        wanted = self.cluster_options(threads_per_worker, memory_limit)
        cap = self.max_workers(wanted.get("worker_cores"))
        auth = self._auth()

        class TeamCluster(GatewayCluster):  # type: ignore[misc, valid-type]
            """A GatewayCluster whose scale and adapt stay within the team's quota."""

            def scale(self, n: int, **kwargs: Any) -> Any:
                return super().scale(capped(n, cap, f"cluster {name}"), **kwargs)

            def adapt(self, minimum: int | None = None, maximum: int | None = None,
                      active: bool = True, **kwargs: Any) -> Any:
                maximum = capped(maximum, cap, f"cluster {name} (adapt maximum)")
                if minimum is not None and maximum is not None:
                    minimum = min(minimum, maximum)
                return super().adapt(minimum=minimum, maximum=maximum, active=active,
                                     **kwargs)

            def close(self, timeout: float | None = None, shutdown: bool | None = None
                      ) -> Any:
                # ClusterHandle closes with a timeout, as distributed's clusters take.
                return super().close(shutdown=shutdown)

        # Whole numbers as integers: a gateway's Integer option refuses 1.0.
        options = {k: int(v) if isinstance(v, float) and v.is_integer() else v
                   for k, v in wanted.items()}
        try:
            cluster = TeamCluster(address=opts.address, proxy_address=opts.proxy_address,
                                  public_address=opts.public_address, auth=auth,
                                  shutdown_on_close=True, **options)
        except (ValueError, TypeError) as exc:  # an option the gateway does not offer
            raise UsageError(f"site '{self.site.name}': the gateway refused the cluster "
                             f"options {options}: {exc}; fix sites.{self.site.name}.gateway"
                             ) from None
        except Exception as exc:
            raise OperationError(f"site '{self.site.name}': the gateway at {opts.address} "
                                 f"did not start a cluster: {exc}") from exc
        _close_once(cluster.gateway)
        workers = n_workers if n_workers is not None else opts.workers
        try:
            if workers:
                cluster.scale(workers)
        except BaseException:
            cluster.shutdown()
            raise
        return Started(address=cluster.scheduler_address, cluster=cluster,
                       security=_security(cluster.security), remote_id=cluster.name,
                       close_timeout=opts.timeout)

    @classmethod
    def stop_record(cls, record: Record, store: StateStore) -> None:
        """Shut a leftover gateway cluster down (``hybridnb gc``)."""
        from dask_gateway import GatewayCluster

        from ..config import load_config

        site = load_config().site(record.site)
        opts = site.gateway
        if opts is None or not record.remote_id:
            return
        cluster = GatewayCluster.from_name(record.remote_id, address=opts.address,
                                           proxy_address=opts.proxy_address,
                                           auth=opts.auth, shutdown_on_close=True)
        cluster.shutdown()
