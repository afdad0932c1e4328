"""Configuration of a hybrid cloud: sites, datasets, policies, in layers.

>>> from hybridnb.config import load_config
>>> config = load_config()          # built-in default + any files present
>>> config.site("local").backend
'local'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .layers import ARGUMENTS, BUILTIN, Layer, Origin, layer_paths, merge, read_layers
from .models import (
    Budget,
    Capacity,
    Cost,
    Dataset,
    HybridConfig,
    KubernetesOptions,
    Link,
    LocalOptions,
    Network,
    Policies,
    SchedulerOptions,
    Site,
    SSHOptions,
)
from .problems import ConfigError, ConfigProblem
from .teams import hub_user
from .validate import validate
from .yamlsource import read_yaml

__all__ = [
    "ARGUMENTS", "BUILTIN", "Budget", "Capacity", "ConfigError", "ConfigProblem", "Cost",
    "Dataset", "HybridConfig", "KubernetesOptions", "Layer", "Link", "LocalOptions",
    "Network", "Origin", "Policies", "SSHOptions", "SchedulerOptions", "Site",
    "check_file", "layer_paths", "load_config", "merge", "read_layers", "validate",
]


def load_config(*files: str | Path, overrides: Mapping[str, Any] | None = None,
                cwd: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> HybridConfig:
    """Read, merge and validate every configuration layer.

    Parameters
    ----------
    *files:
        Extra files, above ``$HYBRIDNB_CONFIG`` (the "explicit arguments" layer).
    overrides:
        Values above everything, as nested mappings or dotted keys
        (``{"sites.local.capacity.cpu": 4}``).
    cwd, environ:
        Where to look for ``./hybridnb.yaml`` and which environment to read (tests).

    Raises
    ------
    ConfigError
        Listing every problem, each with its file, line, key path and fix.

    Examples
    --------
    >>> load_config(overrides={"sites.local.capacity.cpu": 4}).site("local").capacity.cpu
    4.0
    """
    layers = read_layers(files, overrides, cwd=cwd, environ=environ)
    data, origins = merge(layers)
    config = validate(data, origins, [layer.label for layer in layers])
    # Inside a team's hub, a user sees only what their groups may use (config.teams).
    user = hub_user(os.environ if environ is None else environ)
    return config.restrict(user) if user else config


def check_file(path: str | Path) -> HybridConfig:
    """Validate one file on top of the built-in default only (``hybridnb sites validate``)."""
    layers: Iterable[Layer] = [Layer(BUILTIN, read_layers(environ={"HOME": "/nonexistent"},
                                                          cwd="/nonexistent")[0].data)]
    data_, lines = read_yaml(path)
    layers = [*layers, Layer(str(path), data_, lines)]
    data, origins = merge(layers)
    return validate(data, origins, [layer.label for layer in layers])
