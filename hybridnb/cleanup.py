"""Stop and clean up what this user left running (``hybridnb gc``).

Local processes recorded in the state store are stopped here (SIGTERM, then SIGKILL
after a grace period). Anything else — a Kubernetes cluster, a remote scheduler — is
stopped by the module that started it, named in :data:`STOPPERS` by ``(kind, backend)``
and imported only when such a record exists.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .state import Record, StateStore, Status

logger = logging.getLogger(__name__)

#: ``(kind, backend) -> "module:function"``; the function takes ``(record, store)`` and
#: stops what the record describes. Modules add their own entries when they are written.
STOPPERS: dict[tuple[str, str], str] = {
    ("cluster", "kubernetes"): "hybridnb.sites.kubernetes:KubernetesBackend.stop_record",
}


@dataclass(frozen=True)
class Cleaned:
    """What ``gc`` did with one record."""

    record: Record
    action: str  # "stopped", "forgotten", "skipped"
    detail: str = ""


def terminate(record: Record, grace: float = 5.0) -> list[int]:
    """Stop the record's live local processes and their children; return the pids stopped.

    Each process counts once, children first: a record often lists a process and its
    own child (a cluster's keeper and its worker's nanny).
    """
    from .processes import stop_tree

    # ref.alive() also checks the start time: a pid reused by another process is spared.
    return stop_tree([ref.pid for ref in record.pids if ref.alive()], grace=grace)


def _stopper(record: Record) -> Callable[[Record, StateStore], None] | None:
    target = STOPPERS.get((record.kind.value, record.backend or ""))
    if target is None:
        return None
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def gc(store: StateStore | None = None, *, dry_run: bool = False,
       grace: float = 5.0) -> list[Cleaned]:
    """Stop every active record this user owns; return what was done.

    >>> import os, tempfile
    >>> gc(StateStore(os.path.join(tempfile.mkdtemp(), "s.db")))
    []
    """
    import getpass

    store = store or StateStore()
    out: list[Cleaned] = []
    for rec in store.list(active=True, owner=getpass.getuser()):
        stopper = _stopper(rec)
        if rec.local and rec.pids and stopper is None:
            if dry_run:
                out.append(Cleaned(rec, "would stop", f"pids {[p.pid for p in rec.pids]}"))
                continue
            pids = terminate(rec, grace)
            store.update(rec.id, status=Status.stopped, message="stopped by gc")
            out.append(Cleaned(rec, "stopped", f"pids {pids}" if pids else "already gone"))
        elif stopper is not None:
            if dry_run:
                out.append(Cleaned(rec, "would stop", rec.remote_id or rec.address or ""))
                continue
            try:
                stopper(rec, store)
            except Exception as exc:  # one failure must not stop the sweep
                logger.warning("could not stop %s: %s", rec.id, exc)
                store.update(rec.id, error=str(exc), message="gc failed to stop it")
                out.append(Cleaned(rec, "failed", str(exc)))
                continue
            store.update(rec.id, status=Status.stopped, message="stopped by gc")
            out.append(Cleaned(rec, "stopped", rec.remote_id or rec.address or ""))
        elif not rec.local:
            out.append(Cleaned(rec, "skipped", f"started on host {rec.host}; run gc there"))
        else:
            if not dry_run:
                store.update(rec.id, status=Status.lost, message="nothing to stop; forgotten")
            out.append(Cleaned(rec, "forgotten", "no process or remote id recorded"))
    return out
