"""hybridnb: a notebook-first platform for AI on hybrid clouds.

Declare sites and datasets, ask where a job should run, start Dask clusters on any
site, train with torch.distributed, deploy endpoints and monitor them — from a notebook.

Importing ``hybridnb`` is cheap: the public API below resolves on first use (PEP 562),
so torch, dask and matplotlib load only when something needs them.

>>> import hybridnb
>>> hybridnb.load_config().site("local").tier
'private'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

# Public name -> "module:attribute". One table, so the lazy API is easy to read and test.
_LAZY = {
    "load_config": "hybridnb.config:load_config",
    "HybridConfig": "hybridnb.config:HybridConfig",
    "Site": "hybridnb.config:Site",
    "Dataset": "hybridnb.config:Dataset",
    "ConfigError": "hybridnb.config:ConfigError",
    "StateStore": "hybridnb.state:StateStore",
    "HybridnbError": "hybridnb.errors:HybridnbError",
    "UsageError": "hybridnb.errors:UsageError",
    "OperationError": "hybridnb.errors:OperationError",
    "gc": "hybridnb.cleanup:gc",
    "cluster": "hybridnb.sites:cluster",
    "hybrid_cluster": "hybridnb.sites:hybrid_cluster",
    "connect": "hybridnb.sites:connect",
    "plan": "hybridnb.placement:plan",
    "load_dataset": "hybridnb.data:load",
    "Pipeline": "hybridnb.data:Pipeline",
    "ShardLoader": "hybridnb.data:ShardLoader",
    "fit": "hybridnb.train.launch:fit",
    "TrainSpec": "hybridnb.train.spec:TrainSpec",
    "TrainResult": "hybridnb.train.result:TrainResult",
    "Monitor": "hybridnb.monitor:Monitor",
    "Collector": "hybridnb.monitor:Collector",
    "dashboard": "hybridnb.monitor:dashboard",
    "ui": "hybridnb.widgets:ui",
    "widgets": "hybridnb.widgets",
    "record": "hybridnb.notebooks.records:record",
    "secret": "hybridnb.notebooks.secrets:secret",
    "run_notebook": "hybridnb.notebooks.runner:run_notebook",
    "sweep": "hybridnb.notebooks.sweeps:sweep",
    "write_bundle": "hybridnb.serve:write_bundle",
    "bundle": "hybridnb.serve:bundle",  # alias of write_bundle (docs/glossary.md)
    "load_bundle": "hybridnb.serve:load_bundle",
    "Bundle": "hybridnb.serve:Bundle",
    "deploy": "hybridnb.serve.endpoint:deploy",
    "Endpoint": "hybridnb.serve.endpoint:Endpoint",
    "ClusterHandle": "hybridnb.sites:ClusterHandle",
}

#: Subpackages and modules that resolve as attributes once ``import hybridnb`` has run
#: (``hybridnb.serve.bundle(...)``), each imported on first use. Not in ``__all__``, so
#: ``from hybridnb import *`` stays cheap.
_SUBMODULES = ("cleanup", "config", "data", "errors", "fileio", "k8s", "machine", "monitor",
               "notebooks", "placement", "serve", "sites", "state", "testing", "train")

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .cleanup import gc
    from .config import ConfigError, Dataset, HybridConfig, Site, load_config
    from .data import Pipeline, ShardLoader
    from .data import load as load_dataset
    from .errors import HybridnbError, OperationError, UsageError
    from .monitor import Collector, Monitor, dashboard
    from .notebooks.records import record
    from .notebooks.runner import run_notebook
    from .notebooks.secrets import secret
    from .notebooks.sweeps import sweep
    from .placement import plan
    from .serve.endpoint import Endpoint, deploy
    from .serve.model_bundle import Bundle, bundle, load_bundle
    from .serve.model_bundle import bundle as write_bundle
    from .sites import ClusterHandle, cluster, connect, hybrid_cluster
    from .state import StateStore
    from .train.launch import fit
    from .train.result import TrainResult
    from .train.spec import TrainSpec
    from .widgets.tabs import ui


__getattr__, __dir__ = lazy_exports(
    __name__, {**_LAZY, **{m: f"hybridnb.{m}" for m in _SUBMODULES}}, __all__)
