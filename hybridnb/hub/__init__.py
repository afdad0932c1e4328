"""hybridnb for a team's JupyterHub: the hub service and the hub's configuration.

- :mod:`hybridnb.hub.ledger`: the team ledger (SQLAlchemy; SQLite by default) and the
  quota check of every start;
- :mod:`hybridnb.hub.service`: ``hybridnb hub-service``, the JupyterHub service that
  admits starts, records stops and shows an admin page;
- :mod:`hybridnb.hub.render`: ``hybridnb hub render``, a ``jupyterhub_config.d``
  snippet and zero-to-jupyterhub Helm values from the same ``teams:`` configuration,
  checked against the chart's values schema and the Kubernetes schemas.

The client side — what every start calls — is :mod:`hybridnb.team`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    "Ledger": "hybridnb.hub.ledger:Ledger",
    "make_app": "hybridnb.hub.service:make_app",
    "serve": "hybridnb.hub.service:serve",
    "render_hub": "hybridnb.hub.render:render",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

if TYPE_CHECKING:
    from .ledger import Ledger
    from .render import render as render_hub
    from .service import make_app, serve
