"""What each Dask worker received, by data classification, in the worker's own words.

Residency pinning (:meth:`~hybridnb.sites.ClusterHandle.pin`) asks the scheduler to run
work on ``data-CLASS`` only on workers whose site may hold ``CLASS``. Whether it did is a
question for the workers, not for the planner or the client: :class:`ResidencyRecorder`
is a worker plugin that appends, to one JSON-lines file per worker, every task the
worker was given (with the classifications its restrictions name), every piece of data
it fetched from a peer (counted for the classifications of the local tasks that needed
it), and every file it opened under the ``watch`` paths (a Python audit hook: what a
worker read behind the scheduler's back shows there too). :func:`read_residency` sums
the files up per worker.

>>> rec = ResidencyRecorder("/tmp/residency", watch=["/data/patients"])
>>> rec.name
'hybridnb-residency'
>>> classes_of({"data-pii": 1, "site-onprem": 1})
('pii',)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..resource_tags import site_of

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client, Worker

    from .handle import ClusterHandle

logger = logging.getLogger(__name__)

__all__ = ["UNRESTRICTED", "ResidencyRecorder", "WorkerResidency", "classes_of", "per_site",
           "read_residency", "record_residency", "residency_frame"]

#: The class counted for tasks whose restrictions name no data classification.
UNRESTRICTED = "unrestricted"
_PREFIX = "data-"
#: States a task given to this worker goes to first (not fetched data: that is "fetch").
_GIVEN = frozenset({"waiting", "ready", "constrained", "executing"})


def classes_of(resources: Mapping[str, float] | None) -> tuple[str, ...]:
    """The data classifications a task's resource restrictions name, sorted.

    >>> classes_of({"data-public": 1, "data-pii": 1}), classes_of({})
    (('pii', 'public'), ())
    """
    return tuple(sorted(k[len(_PREFIX):] for k in (resources or {}) if k.startswith(_PREFIX)))


# One audit hook per process (they cannot be removed): it forwards to the live recorders.
_recorders: list[ResidencyRecorder] = []
_hook_lock = threading.Lock()
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _recorders or not args:
        return
    target = args[0]
    if isinstance(target, int):  # os.open of a descriptor: no path to check
        return
    try:
        path = os.fsdecode(os.fspath(target))
    except TypeError:
        return
    for recorder in list(_recorders):
        recorder._opened(path)


class ResidencyRecorder(WorkerPlugin):
    """A worker plugin writing what its worker received to ``LOG_DIR/<worker>.jsonl``.

    Parameters
    ----------
    log_dir:
        A directory every worker can write to (shared storage on a multi-host cluster, or
        collect the files from each host afterwards).
    watch:
        Paths (files or directories) whose opening by the worker process is recorded:
        where data of a sensitive classification lives.

    Lines are ``{"event": ..., "t": unix time, ...}`` with events ``start`` (worker,
    name, site, host, pid), ``task`` (key, classes), ``fetch`` (key, nbytes, classes of
    the local tasks that needed it), ``open`` (path) and ``stop``.
    """

    name = "hybridnb-residency"
    idempotent = True  # registering it again keeps the file each worker writes

    def __init__(self, log_dir: str | os.PathLike[str],
                 watch: Iterable[str | os.PathLike[str]] = ()):
        self.log_dir = str(Path(log_dir).resolve())
        self.watch = tuple(str(Path(p).resolve()) for p in watch)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._worker: Worker | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "watch": self.watch}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["log_dir"], state["watch"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ResidencyRecorder({self.log_dir!r}, watch={list(self.watch)})"

    # -- plugin hooks (the worker's event loop) --------------------------------------

    def setup(self, worker: Worker) -> None:
        global _hooked
        self._worker = worker
        directory = Path(self.log_dir)
        directory.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(worker.name))
        path = directory / f"{stem}-{os.getpid()}.jsonl"
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        host = worker.address.split("://")[-1].rsplit(":", 1)[0]
        self._write({"event": "start", "worker": worker.address, "name": str(worker.name),
                     "site": site_of(worker.state.total_resources), "host": host,
                     "pid": os.getpid(), "watch": list(self.watch)})
        if self.watch:
            with _hook_lock:
                if not _hooked:
                    sys.addaudithook(_audit)
                    _hooked = True
                _recorders.append(self)

    def teardown(self, worker: Worker) -> None:
        with _hook_lock:
            if self in _recorders:
                _recorders.remove(self)
        self._write({"event": "stop"})
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        worker = self._worker
        if worker is None:
            return
        ts = worker.state.tasks.get(key)
        if ts is None:
            return
        if start == "released" and finish in _GIVEN and ts.run_spec is not None:
            self._write({"event": "task", "key": str(key),
                         "classes": list(classes_of(ts.resource_restrictions))})
        elif start == "flight" and finish == "memory":
            needed = sorted({c for dep in ts.dependents
                             for c in classes_of(dep.resource_restrictions)})
            self._write({"event": "fetch", "key": str(key), "nbytes": int(ts.nbytes or 0),
                         "classes": needed})

    # -- writing ---------------------------------------------------------------------

    def _opened(self, path: str) -> None:
        if any(path == w or path.startswith(w.rstrip(os.sep) + os.sep) for w in self.watch):
            self._write({"event": "open", "path": path})

    def _write(self, row: dict[str, Any]) -> None:
        line = json.dumps({**row, "t": round(time.time(), 3)}, separators=(",", ":"))
        with self._lock:  # tasks run in the worker's threads; transitions in its loop
            if self._file is not None:
                self._file.write(line + "\n")


@dataclass
class WorkerResidency:
    """One worker's record: where it ran, and what it received per classification.

    ``tasks`` and ``bytes_in`` are keyed by classification (:data:`UNRESTRICTED` for
    tasks with no ``data-`` restriction); ``bytes_in`` counts the data fetched from
    peers for tasks of that class; ``opened`` lists watched paths the worker opened;
    ``keys`` the keys of the tasks it was given.
    """

    worker: str
    name: str
    site: str | None
    host: str
    tasks: dict[str, int] = field(default_factory=dict)
    bytes_in: dict[str, int] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def received(self, classification: str) -> tuple[int, int]:
        """``(tasks, bytes fetched for them)`` of one classification.

        >>> WorkerResidency("tls://a:1", "w", "cloud", "a").received("pii")
        (0, 0)
        """
        return self.tasks.get(classification, 0), self.bytes_in.get(classification, 0)

    def to_row(self) -> dict[str, Any]:
        return {"worker": self.name, "site": self.site, "host": self.host,
                **{f"tasks_{k}": v for k, v in sorted(self.tasks.items())},
                **{f"bytes_in_{k}": v for k, v in sorted(self.bytes_in.items())},
                "watched_files_opened": len(self.opened)}


def read_residency(log_dir: str | os.PathLike[str]) -> list[WorkerResidency]:
    """Sum up the files :class:`ResidencyRecorder` wrote: one entry per worker file.

    Lines that do not parse (a worker killed mid-line) are skipped.
    """
    out = []
    for path in sorted(Path(log_dir).glob("*.jsonl")):
        rec: WorkerResidency | None = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            event = row.get("event")
            if event == "start":
                rec = WorkerResidency(str(row.get("worker")), str(row.get("name")),
                                      row.get("site"), str(row.get("host")))
                out.append(rec)
            elif rec is None:
                continue
            elif event == "task":
                rec.keys.append(str(row.get("key")))
                for c in row.get("classes") or [UNRESTRICTED]:
                    rec.tasks[c] = rec.tasks.get(c, 0) + 1
            elif event == "fetch":
                for c in row.get("classes") or [UNRESTRICTED]:
                    rec.bytes_in[c] = rec.bytes_in.get(c, 0) + int(row.get("nbytes") or 0)
            elif event == "open":
                rec.opened.append(str(row.get("path")))
    return out


def per_site(records: Iterable[WorkerResidency]) -> dict[str, WorkerResidency]:
    """The workers' records summed per site (``worker`` and ``host`` list them all).

    >>> a = WorkerResidency("tls://h:1", "w1", "cloud", "h", tasks={"public": 2})
    >>> b = WorkerResidency("tls://h:2", "w2", "cloud", "h", tasks={"public": 1})
    >>> per_site([a, b])["cloud"].tasks
    {'public': 3}
    """
    out: dict[str, WorkerResidency] = {}
    for r in records:
        site = r.site or "?"
        total = out.setdefault(site, WorkerResidency("", "", site, ""))
        total.worker = ", ".join(filter(None, (total.worker, r.worker)))
        total.name = ", ".join(filter(None, (total.name, r.name)))
        total.host = ", ".join(dict.fromkeys(filter(None, (*total.host.split(", "), r.host))))
        for mine, theirs in ((total.tasks, r.tasks), (total.bytes_in, r.bytes_in)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        total.opened += r.opened
        total.keys += r.keys
    return out


def residency_frame(records: Iterable[WorkerResidency]) -> pd.DataFrame:
    """A table of :func:`read_residency`'s records, one row per worker (missing: 0)."""
    import pandas as pd

    frame = pd.DataFrame([r.to_row() for r in records])
    counts = [c for c in frame.columns if c.startswith(("tasks_", "bytes_in_"))]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    return frame


def record_residency(cluster: ClusterHandle | Client, log_dir: str | os.PathLike[str],
                     watch: Iterable[str | os.PathLike[str]] = ()) -> ResidencyRecorder:
    """Register a :class:`ResidencyRecorder` on every worker of ``cluster`` (present and
    future); returns it.

    >>> record_residency(c, "build/residency", watch=["/data/patients"])  # doctest: +SKIP
    """
    from .handle import ClusterHandle

    client = cluster.client if isinstance(cluster, ClusterHandle) else cluster
    plugin = ResidencyRecorder(log_dir, watch)
    client.register_plugin(plugin)
    return plugin
