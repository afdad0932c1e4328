"""Where a pipeline's passes compute: pinned on a cluster, else in this process.

A pass over the data is the expensive part of a pipeline, so the runner lets small
side results (row counts for the summary) ride along with the next pass instead of
paying for their own: :meth:`Runner.also` queues them, and the next :meth:`Runner.compute`
computes them in the same graph, where dask shares the reads.

>>> import dask
>>> r = Runner.__new__(Runner); r.cluster, r.progress, r.results, r._extra = None, False, {}, {}
>>> r.also("n", dask.delayed(len)([1, 2, 3]))
>>> r.compute(dask.delayed(sum)([1, 2]))
(3,)
>>> r.results["n"]
3
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..sites import ClusterHandle
    from .dask_dataset import DaskDataset


def interactive() -> bool:
    """Whether progress bars are wanted by default: a terminal or a notebook."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


class Runner:
    """Computes dask objects where the data may go: pinned on a cluster, else locally."""

    def __init__(self, cluster: ClusterHandle | None, ds: DaskDataset, config: HybridConfig,
                 progress: bool):
        self.cluster = cluster
        self.progress = progress
        self.pins: dict[str, Any] = {}
        self.shuffle_method = "tasks"
        #: Results of objects queued with :meth:`also`, by their key.
        self.results: dict[Hashable, Any] = {}
        self._extra: dict[Hashable, Any] = {}
        if cluster is not None:
            # Raises the clear residency error before any work when no worker qualifies.
            self.pins = cluster.pin(classification=ds.classification)
            need = self.pins.get("resources", {})
            workers = cluster.workers()
            # P2P places output partitions itself, ignoring resource restrictions: use it
            # only when every worker may hold the data.
            everywhere = all(all(w.resources.get(k, 0) >= 1 for k in need) for w in workers)
            if everywhere:
                self.shuffle_method = "p2p"
            sites = [cluster.config.sites.get(s) for s in cluster.sites]
            if everywhere and all(s is not None and s.allows(ds.classification)
                                  for s in sites):
                # Every site of this cluster may hold the data: restrictions add no
                # safety, and they cost memory. The scheduler does not queue restricted
                # root tasks, so workers read partitions far ahead of their consumers
                # (seen: the whole 2 GB input resident at once instead of 0.5 GB).
                self.pins = {}
        else:
            local = config.sites.get("local")
            if local is not None and not local.allows(ds.classification):
                raise UsageError(f"dataset {ds.name!r} is classified {ds.classification} and "
                                 "site 'local' may not hold it; pass cluster= a cluster on an "
                                 "allowed site")

    def also(self, key: Hashable, obj: Any) -> None:
        """Compute ``obj`` with the next pass; its value lands in ``results[key]``."""
        if hasattr(obj, "__dask_graph__"):
            self._extra[key] = obj
        else:
            self.results[key] = obj

    @property
    def pending(self) -> list[Hashable]:
        """Keys queued with :meth:`also` and not computed yet."""
        return list(self._extra)

    def compute(self, *objs: Any) -> tuple[Any, ...]:
        """Compute ``objs`` (and whatever :meth:`also` queued) in one pass."""
        keys = list(self._extra)
        extra = [self._extra[k] for k in keys]
        self._extra = {}
        done = self._compute([*objs, *extra])
        self.results.update(zip(keys, done[len(objs):], strict=True))
        return done[:len(objs)]

    def _compute(self, objs: list[Any]) -> tuple[Any, ...]:
        lazy = [i for i, o in enumerate(objs) if hasattr(o, "__dask_graph__")]
        values = list(objs)
        if not lazy:
            return tuple(values)
        todo = [objs[i] for i in lazy]
        if len(todo) == 1 and hasattr(todo[0], "optimize") and hasattr(todo[0], "expr"):
            # Client.compute does not fuse a DataFrame's blockwise chains (read → steps →
            # write would be one task per step and partition, each result held until the
            # next runs). One collection alone fuses safely; several are left as they
            # are, since fusing each apart would read shared inputs once per collection.
            todo = [todo[0].optimize(fuse=True)]
        if self.cluster is not None:
            client = self.cluster.client
            futures = client.compute(todo, **self.pins)
            if self.progress:
                from distributed import progress

                progress(futures)
            done = client.gather(futures)
        else:
            import dask

            if self.progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar():
                    done = dask.compute(*todo)
            else:
                done = dask.compute(*todo)
        for i, value in zip(lazy, done, strict=True):
            values[i] = value
        return tuple(values)
