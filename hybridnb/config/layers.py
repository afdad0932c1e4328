"""Configuration layers and their merge, remembering where every value came from.

Layers, low to high (DESIGN.md):

1. the built-in default (one ``local`` site: the embedded default);
2. ``/etc/hybridnb/hybridnb.yaml`` — the team's, set by a JupyterHub admin
   (``$HYBRIDNB_SYSTEM_CONFIG`` points elsewhere, e.g. in a container image);
3. ``~/.config/hybridnb/hybridnb.yaml`` (``$XDG_CONFIG_HOME`` honoured);
4. ``./hybridnb.yaml`` — the project's;
5. ``$HYBRIDNB_CONFIG``;
6. explicit arguments: files passed by the caller, then a mapping of overrides.

Mappings merge key by key; any other value (a list, a number) replaces the lower one.
``null`` in place of a mapping removes it: ``sites: {local: null}`` drops the built-in
site from a team's configuration.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .defaults import builtin_default
from .problems import ConfigError, ConfigProblem
from .yamlsource import KeyPath, read_yaml

SYSTEM_PATH = Path("/etc/hybridnb/hybridnb.yaml")
BUILTIN = "built-in default"
ARGUMENTS = "arguments"


@dataclass
class Layer:
    """One source of configuration: its label, its data and the line of every key."""

    label: str
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Origin:
    """Where a value came from."""

    label: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.label}:{self.line}" if self.line else self.label


def layer_paths(cwd: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> list[tuple[str, Path, bool]]:
    """The file layers as ``(label, path, required)``, lowest first.

    Only ``$HYBRIDNB_CONFIG`` is required to exist: setting it to a missing file is a
    mistake worth reporting, whereas the other files are optional.
    """
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    paths = [
        (str(Path(env.get("HYBRIDNB_SYSTEM_CONFIG") or SYSTEM_PATH)), False),
        (str(xdg / "hybridnb" / "hybridnb.yaml"), False),
        (str(Path(cwd or Path.cwd()) / "hybridnb.yaml"), False),
    ]
    out = [(label, Path(label), required) for label, required in paths]
    if env.get("HYBRIDNB_CONFIG"):
        p = Path(env["HYBRIDNB_CONFIG"]).expanduser()
        out.append((f"$HYBRIDNB_CONFIG ({p})", p, True))
    return out


def read_layers(files: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None,
                cwd: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> list[Layer]:
    """Read every layer that exists, lowest first.

    All files are read before any error is raised, so one run reports the problems of
    every layer at once.
    """
    layers = [Layer(BUILTIN, builtin_default())]
    problems: list[ConfigProblem] = []
    candidates = layer_paths(cwd, environ)
    candidates += [(str(f), Path(f).expanduser(), True) for f in files]
    seen: set[Path] = set()
    for label, path, required in candidates:
        if not required and not path.is_file():
            continue
        resolved = path.resolve()
        if resolved in seen:  # the same file through two layers counts once
            continue
        seen.add(resolved)
        try:
            data, lines = read_yaml(path, label)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        layers.append(Layer(label, data, lines))
    if problems:
        raise ConfigError(problems)
    if overrides:
        layers.append(Layer(ARGUMENTS, _nest(overrides)))
    return layers


def merge(layers: Iterable[Layer]) -> tuple[dict[str, Any], dict[KeyPath, Origin]]:
    """Deep-merge ``layers`` and return the data with the origin of every key path.

    >>> low = Layer("low", {"sites": {"a": {"tier": "private", "labels": {"x": "1"}}}})
    >>> high = Layer("high", {"sites": {"a": {"labels": {"y": "2"}}}})
    >>> data, origins = merge([low, high])
    >>> data["sites"]["a"]["labels"]
    {'x': '1', 'y': '2'}
    >>> str(origins[("sites", "a", "tier")]), str(origins[("sites", "a", "labels", "y")])
    ('low', 'high')
    """
    data: dict[str, Any] = {}
    origins: dict[KeyPath, Origin] = {}
    for layer in layers:
        _merge_into(data, layer.data, (), origins, layer)
    return data, origins


def _merge_into(base: dict[str, Any], over: Mapping[str, Any], path: KeyPath,
                origins: dict[KeyPath, Origin], layer: Layer) -> None:
    for key, value in over.items():
        sub = (*path, str(key))
        if value is None and isinstance(base.get(key), dict):
            del base[key]  # null removes a mapping (a site, a dataset) set below
            for stale in [p for p in origins if p[: len(sub)] == sub]:
                del origins[stale]
            continue
        origins[sub] = Origin(layer.label, layer.lines.get(sub))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge_into(base[key], value, sub, origins, layer)
            continue
        # A replaced value takes its whole subtree with it, origins included.
        for stale in [p for p in origins if len(p) > len(sub) and p[: len(sub)] == sub]:
            del origins[stale]
        base[key] = copy.deepcopy(value)
        _record(value, sub, origins, layer)


def _record(value: Any, path: KeyPath, origins: dict[KeyPath, Origin], layer: Layer) -> None:
    children: Iterable[tuple[str, Any]]
    if isinstance(value, Mapping):
        children = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((str(i), v) for i, v in enumerate(value))
    else:
        return
    for key, child in children:
        sub = (*path, key)
        origins[sub] = Origin(layer.label, layer.lines.get(sub))
        _record(child, sub, origins, layer)


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"sites.local.capacity.cpu": 4}`` into nested mappings (plain keys pass)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return out
