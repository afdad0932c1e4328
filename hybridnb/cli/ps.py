"""``hybridnb ps`` and ``hybridnb gc``: what this user started, and its clean-up."""

from __future__ import annotations

import time

import typer

from .common import print_json, table


def _age(ts: float | None) -> str:
    if ts is None:
        return ""
    s = int(time.time() - ts)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def ps(all_: bool = typer.Option(False, "--all", "-a", help="Include ended ones."),
       kind: str | None = typer.Option(None, "--kind", help="cluster, run, endpoint, notebook"),
       as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List clusters, runs, endpoints and notebook runs you started, with their status."""
    from ..errors import UsageError
    from ..state import Kind, StateStore

    if kind is not None and kind not in Kind.__members__:
        raise UsageError(f"--kind {kind!r}: use one of {', '.join(Kind.__members__)}")
    store = StateStore()
    store.refresh()  # processes that died since show as lost
    records = store.list(kind, active=None if all_ else True)
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        typer.echo("nothing running" if not all_ else "nothing recorded")
        return
    table(None, ["id", "kind", "name", "site", "status", "age", "address", "pids"],
          [[r.id, r.kind.value, r.name, r.site, r.status.value, _age(r.created_at),
            r.address, " ".join(str(p.pid) for p in r.pids)] for r in records])


def gc(dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be done.")
       ) -> None:
    """Stop and clean up everything you started that is still running."""
    from ..cleanup import gc as run_gc
    from ..state import StateStore

    store = StateStore()
    done = run_gc(store, dry_run=dry_run)
    for item in done:
        rec = item.record
        typer.echo(f"{item.action}: {rec.id} ({rec.kind.value} {rec.name!r} on {rec.site})"
                   + (f" — {item.detail}" if item.detail else ""))
    if not done:
        typer.echo("nothing to clean up")
    if any(item.action == "failed" for item in done):
        raise typer.Exit(1)
