"""What is running, as the state store records it: clusters, runs and endpoints started
anywhere — the CLI, another kernel, another panel — shown in the panels as tables.

>>> import tempfile, os
>>> from hybridnb.state import Kind, StateStore, Status
>>> store = StateStore(os.path.join(tempfile.mkdtemp(), "state.db"))
>>> _ = store.add(Kind.cluster, "etl", "local", status=Status.running,
...               spec={"dashboard": "http://127.0.0.1:8787/status"})
>>> "etl" in running_html(["cluster"], store=store)
True
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from .base import html_table, link

logger = logging.getLogger(__name__)

#: What the empty table says, by the kinds asked for.
NOTHING = "nothing running in the state store"


def _since(ts: float | None) -> str:
    if not ts:
        return "–"
    age = time.time() - ts
    ago = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200 \
        else f"{age / 3600:.0f} h"
    return f"{time.strftime('%H:%M:%S', time.localtime(ts))} ({ago} ago)"


def _where(rec: Any) -> Any:
    dashboard = rec.spec.get("dashboard")
    if dashboard:
        return link(str(dashboard), "dashboard")
    if rec.address:
        return rec.address
    return rec.spec.get("run_dir") or "–"


def _processes(rec: Any, mine: Iterable[str]) -> str:
    """Whose it is: this panel's, this kernel's, or processes on some host."""
    if rec.id in set(mine):
        return "this panel"
    pids = [p.pid for p in rec.pids]
    if rec.local and os.getpid() in pids:
        return "this kernel"
    if not pids:  # in-process (threads), or remote: the host is what is known
        return f"on {rec.host}"
    shown = ", ".join(map(str, pids[:3])) + (", …" if len(pids) > 3 else "")
    return f"pid{'s' if len(pids) > 1 else ''} {shown} on {rec.host}"


def running_records(kinds: Iterable[str], store: Any = None) -> list[Any]:
    """Active records of these kinds, newest first (``[]`` if the store is unreadable)."""
    from ..state import StateStore

    wanted = set(kinds)
    try:
        records = (store or StateStore()).list(active=True)
    except Exception as exc:  # the store is advisory for a view
        logger.debug("cannot read the state store: %s", exc)
        return []
    return [r for r in records if r.kind.value in wanted]


def running_html(kinds: Iterable[str], *, store: Any = None, mine: Iterable[str] = (),
                 caption: str = "running (state store)") -> str:
    """A table of what runs, with where to reach it and who started it."""
    kinds = list(kinds)
    records = running_records(kinds, store)
    if not records:
        return f"<p class='hybridnb-muted hybridnb-running'>{NOTHING}</p>"
    mine = list(mine)
    rows = [[rec.kind.value, rec.name, rec.site, rec.status.value, _where(rec),
             _since(rec.started_at or rec.created_at), _processes(rec, mine)]
            for rec in records]
    return html_table(["kind", "name", "site", "status", "where", "started", "processes"],
                      rows, caption=caption, css="hybridnb-running")
