"""``hybridnb plan``: where should a job run, and why not elsewhere."""

from __future__ import annotations

import typer

from .common import options, print_json, table


def plan(ctx: typer.Context,
         kind: str = typer.Option(..., "--kind", help="preprocess, train, serve or notebook"),
         cpu: float = typer.Option(1.0, "--cpu", help="CPU cores."),
         gpu: int = typer.Option(0, "--gpu", help="GPUs."),
         memory: str = typer.Option("0", "--memory", metavar="SIZE", help="Memory, e.g. 32GiB."),
         hours: float = typer.Option(1.0, "--hours", help="Compute hours."),
         data: list[str] = typer.Option([], "--data", metavar="DATASET",
                                         help="Dataset it reads (repeatable)."),
         deadline: float | None = typer.Option(None, "--deadline", metavar="HOURS",
                                                help="Hours, at most."),
         budget: float | None = typer.Option(None, "--budget", metavar="USD",
                                              help="US dollars, at most."),
         tier: list[str] = typer.Option([], "--tier", help="Allowed tier (repeatable)."),
         policy: str | None = typer.Option(None, "--policy",
                                           help="private-first, cheapest or fastest"),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Rank the sites for a job; the chosen site is the first row, rejected ones say why."""
    from ..placement import ROW_COLUMNS
    from ..placement import plan as make_plan

    result = make_plan(kind, cpu=cpu, gpu=gpu, memory=memory, hours=hours, data=data,
                       deadline=deadline, budget=budget, tiers=tier or None, policy=policy,
                       config=options(ctx).config())
    if as_json:
        print_json(result.to_dict())
    else:
        rows = result.to_rows()
        table(f"plan: {result.request.describe()}", list(ROW_COLUMNS),
              [[row[c] for c in ROW_COLUMNS] for row in rows])
        for note in result.notes:
            typer.echo(f"note: {note}")
    result.raise_if_empty()
