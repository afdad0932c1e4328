"""Edge sites: rollouts over thin links, serving while disconnected.

- :func:`push`: send a bundle to an edge site once, resumable and checksummed; the site
  stages it beside the old version, checks it, switches, and rolls back by itself.
- :class:`EdgeClient`: the central side's client of an edge agent (pinned TLS, token).
- :func:`start_agent` / :mod:`~hybridnb.serve.edge.agent`: the agent on the edge
  machine: the local endpoint (:mod:`~hybridnb.serve.edge.front`), versions
  (:mod:`~hybridnb.serve.edge.supervisor`), received files
  (:mod:`~hybridnb.serve.edge.blobs`) and the on-disk buffer of metrics and request
  logs (:mod:`~hybridnb.serve.edge.buffer`) the centre reads when the link is up
  (:mod:`hybridnb.monitor.edge`).

>>> import hybridnb.serve.edge as edge
>>> "push" in dir(edge)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

_LAZY = {
    "push": "hybridnb.serve.edge.client:push",
    "manifest_of": "hybridnb.serve.edge.client:manifest_of",
    "EdgeClient": "hybridnb.serve.edge.client:EdgeClient",
    "RolloutReport": "hybridnb.serve.edge.client:RolloutReport",
    "RolloutError": "hybridnb.serve.edge.client:RolloutError",
    "Unreachable": "hybridnb.serve.edge.client:Unreachable",
    "start_agent": "hybridnb.serve.edge.process:start_agent",
    "AgentProcess": "hybridnb.serve.edge.process:AgentProcess",
    "init_agent_dir": "hybridnb.serve.edge.tls:init_agent_dir",
    "RecordBuffer": "hybridnb.serve.edge.buffer:RecordBuffer",
    "BlobStore": "hybridnb.serve.edge.blobs:BlobStore",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .blobs import BlobStore
    from .buffer import RecordBuffer
    from .client import EdgeClient, RolloutError, RolloutReport, Unreachable, manifest_of, push
    from .process import AgentProcess, start_agent
    from .tls import init_agent_dir

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
