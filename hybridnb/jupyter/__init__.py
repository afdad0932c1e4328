"""hybridnb in JupyterLab: the Jupyter server extension (REST routes, dashboard proxy).

Enabled by ``etc/jupyter/jupyter_server_config.d/hybridnb.json`` (installed with the
package); ``jupyter server extension list`` shows it as ``hybridnb.jupyter``. The routes
live under ``{base_url}hybridnb/`` (see :mod:`hybridnb.jupyter.handlers`); their shapes are
:mod:`hybridnb.jupyter.models`.

Importing this package is cheap (the server imports it at start): the app class and its
handlers import only tornado and jupyter_server; the library loads on the first request.

>>> [p["module"] for p in _jupyter_server_extension_points()]
['hybridnb.jupyter']
"""

from __future__ import annotations

from typing import Any

from .._version import __version__


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import HybridnbApp

    return [{"module": "hybridnb.jupyter", "app": HybridnbApp}]


__all__ = ["__version__"]
