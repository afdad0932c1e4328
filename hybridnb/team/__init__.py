"""hybridnb in a team's JupyterHub: the admission every start asks for.

:func:`admit` before a start, :meth:`Lease.release` when it stops (see
:mod:`hybridnb.team.admission`). Outside a hub both cost nothing. The hub service that
answers lives in :mod:`hybridnb.hub`; the ``teams:`` configuration in
:mod:`hybridnb.config.teams`.

>>> from hybridnb import team
>>> team.admit("cluster", "local", environ={}) is team.NO_LEASE
True
"""

from __future__ import annotations

from .admission import (
    KINDS,
    NO_LEASE,
    HubUnavailable,
    Lease,
    QuotaError,
    admit,
    cluster_size,
    endpoint_token,
    in_hub,
    reap,
    release_ref,
)

__all__ = ["KINDS", "NO_LEASE", "HubUnavailable", "Lease", "QuotaError", "admit",
           "cluster_size", "endpoint_token", "in_hub", "reap", "release_ref"]
