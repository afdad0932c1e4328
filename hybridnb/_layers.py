"""The package's layers, as data: who may import whom.

Data flows left to right, and a module imports only from its own layer or from layers to
its left. ``tests/test_layers.py`` walks every import in the package (module-level,
function-level and ``TYPE_CHECKING`` ones alike: a lazy import is still a dependency) and
fails on an import that runs right to left, or on a cycle between modules; the
architecture page of the docs describes the same order.

A layer names its members by module path (a package stands for all its modules). Inside
a layer, members may import each other (without cycles) unless the layer is
``independent``: then they are peers that share only what lies to their left.

>>> layer_of("hybridnb.serve.render").name
'serve'
>>> rank("hybridnb.k8s.pods") < rank("hybridnb.config.models") < rank("hybridnb.cli.app")
True
>>> layer_of("hybridnb").name       # the package itself is the public API, on the right
'api'
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "hybridnb"


@dataclass(frozen=True)
class Layer:
    """One layer: its name, its members (module paths) and what it is for."""

    name: str
    members: tuple[str, ...]
    about: str
    #: Members may not import each other (peers, e.g. two transports).
    independent: bool = False


#: Left to right. Each module belongs to the layer of its longest listed prefix.
LAYERS: tuple[Layer, ...] = (
    Layer("base", ("hybridnb._version", "hybridnb._lazy", "hybridnb._layers",
                   "hybridnb.errors", "hybridnb.fileio", "hybridnb.waiting", "hybridnb.processes",
                   "hybridnb.resource_tags", "hybridnb.exposition", "hybridnb.machine",
                   "hybridnb.lifecycle"),
          "errors and small utilities with no knowledge of hybridnb's concepts: atomic "
          "files, deadlines and polling, processes, exit hooks, the label vocabulary, "
          "Prometheus text"),
    Layer("k8s", ("hybridnb.k8s",),
          "pure functions that build and check Kubernetes manifests from plain values; "
          "they import nothing of hybridnb but the base layer"),
    Layer("config", ("hybridnb.config",),
          "typed models of sites, datasets, policies and teams; layered loading"),
    Layer("images", ("hybridnb.images",),
          "hybridnb's own container images: building and listing them (their names "
          "are configuration, in hybridnb.config.images)"),
    Layer("state", ("hybridnb.state", "hybridnb.cleanup"),
          "the SQLite record of what this user started, and stopping what was left"),
    Layer("admission", ("hybridnb.team",),
          "the team's admission (a hub's quotas and leases) that every start asks for"),
    Layer("sites & placement", ("hybridnb.sites", "hybridnb.placement"),
          "cluster backends and the cluster handle; the planner"),
    Layer("data", ("hybridnb.data",),
          "datasets, pipeline steps, shards and loaders"),
    Layer("serve", ("hybridnb.serve",),
          "model bundles and endpoints (training writes bundles, so serve lies left of "
          "train)"),
    Layer("train", ("hybridnb.train",),
          "training specs, the per-rank loop, launchers, checkpoints, metrics"),
    Layer("monitor", ("hybridnb.monitor",),
          "metric names, collectors, stores, plots, alerts, exports"),
    Layer("notebooks", ("hybridnb.notebooks",),
          "papermill runs, sweeps, records, secrets, notebook jobs"),
    Layer("widgets", ("hybridnb.widgets",), "JupyterLab panels"),
    Layer("hub", ("hybridnb.hub",),
          "the team hub service and its JupyterHub renderings"),
    Layer("transports", ("hybridnb.cli", "hybridnb.jupyter"),
          "thin transports over the library: the CLI and the Jupyter server extension; "
          "peers, so neither imports the other", independent=True),
    Layer("api", (ROOT, "hybridnb.__main__"),
          "the public API (``import hybridnb``), resolved lazily over everything to its "
          "left, and ``python -m hybridnb``"),
    Layer("testing", ("hybridnb.testing",),
          "fixtures shipped with the package: it may import anything, nothing imports it"),
)


# Imports that break the rule on purpose, each with its reason (as import-linter's
# ``ignore_imports``); keep this short.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("hybridnb.cli.demo_hybrid", "hybridnb.testing.sshd"):
        "demo-hybrid runs the testing harness's namespace hosts (notebook 06); it asks the "
        "harness first whether they can be built here, to refuse with the reason",
}


def member_of(module: str) -> str | None:
    """The listed member ``module`` belongs to (its longest prefix), or ``None``.

    The package root matches only itself: a new top-level module must be given a layer.

    >>> member_of("hybridnb.data.steps"), member_of("hybridnb.nowhere")
    ('hybridnb.data', None)
    """
    best: str | None = None
    for layer in LAYERS:
        for m in layer.members:
            hit = module == m or (m != ROOT and module.startswith(m + "."))
            if hit and (best is None or len(m) > len(best)):
                best = m
    return best


def layer_of(module: str) -> Layer:
    """The layer of ``module``; ``KeyError`` naming the table when it has none."""
    member = member_of(module)
    for layer in LAYERS:
        if member in layer.members:
            return layer
    raise KeyError(f"{module} is in no layer: add it to hybridnb/_layers.py LAYERS")


def rank(module: str) -> int:
    """Position of ``module``'s layer, left (0) to right."""
    return LAYERS.index(layer_of(module))


def allowed(importer: str, imported: str) -> bool:
    """Whether ``importer`` may import ``imported`` under the layer rule.

    >>> allowed("hybridnb.train.launch", "hybridnb.serve.model_bundle")
    True
    >>> allowed("hybridnb.k8s.dask", "hybridnb.config")
    False
    >>> allowed("hybridnb.jupyter.clusters", "hybridnb.cli.cluster")   # peers
    False
    """
    if (importer, imported) in EXCEPTIONS:
        return True
    a, b = rank(importer), rank(imported)
    if a != b:
        return b < a
    layer = LAYERS[a]
    return not layer.independent or member_of(importer) == member_of(imported)
