"""Endpoints: model bundles, an Open Inference Protocol server, dynamic batching.

Importing this package is cheap; the names below load their modules on first use
(PEP 562), so torch and starlette load only when needed.

>>> import hybridnb.serve
>>> "bundle" in dir(hybridnb.serve)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    # One function, two names: write_bundle is the glossary's, bundle the one DESIGN.md
    # fixes (docs/glossary.md, "bundle").
    "write_bundle": "hybridnb.serve.model_bundle:bundle",
    "bundle": "hybridnb.serve.model_bundle:bundle",
    "load_bundle": "hybridnb.serve.model_bundle:load_bundle",
    "Bundle": "hybridnb.serve.model_bundle:Bundle",
    "BundleError": "hybridnb.serve.model_bundle:BundleError",
    "TensorSpec": "hybridnb.serve.model_bundle:TensorSpec",
    "ServeSettings": "hybridnb.serve.settings:ServeSettings",
    "create_app": "hybridnb.serve.app:create_app",
    "run_server": "hybridnb.serve.server:run_server",
    "ServerThread": "hybridnb.serve.server:ServerThread",
    "start_server": "hybridnb.serve.process:start_server",
    "ServerProcess": "hybridnb.serve.process:ServerProcess",
    "deploy": "hybridnb.serve.endpoint:deploy",
    "Endpoint": "hybridnb.serve.endpoint:Endpoint",
    "AutoscalePolicy": "hybridnb.serve.autoscale:AutoscalePolicy",
    "POLICIES": "hybridnb.serve.router:POLICIES",
    "compress": "hybridnb.serve.compress_bundle:compress",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app
    from .autoscale import AutoscalePolicy
    from .compress_bundle import compress
    from .endpoint import Endpoint, deploy
    from .model_bundle import Bundle, BundleError, TensorSpec, bundle, load_bundle
    from .model_bundle import bundle as write_bundle
    from .process import ServerProcess, start_server
    from .router import POLICIES
    from .server import ServerThread, run_server
    from .settings import ServeSettings


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
