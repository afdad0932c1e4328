"""``hybridnb demo``: the main job, end to end on the embedded default.

Today it runs what exists: the configuration, a placement plan, a Dask cluster on the
``local`` site and a pinned computation on it. The notebooks issue replaces the body
with ``notebooks/00_quickstart.ipynb`` run headless.
"""

from __future__ import annotations

import time

import typer

from .common import options


def demo(ctx: typer.Context,
         workers: int = typer.Option(2, "--workers", help="Workers of the demo cluster.")
         ) -> None:
    """Run the end-to-end demo on this machine and print a summary."""
    import dask.array as da

    from ..placement import plan
    from ..sites import cluster

    config = options(ctx).config()
    typer.echo(f"1. configuration: {len(config.sites)} site(s) from "
               + " → ".join(config.layers))
    p = plan("preprocess", cpu=workers, hours=0.1, config=config).raise_if_empty()
    assert p.chosen is not None
    typer.echo(f"2. plan: run on '{p.chosen.site}' ({p.chosen.tier}); "
               f"{len(p.rejected)} site(s) rejected")
    start = time.perf_counter()
    with cluster(p.chosen.site, n_workers=workers, threads_per_worker=1,
                 config=config) as c:
        typer.echo(f"3. cluster: {c!r}")
        x = da.random.default_rng(0).standard_normal((4000, 4000), chunks=(1000, 1000))
        mean = float(c.compute((x @ x.T).mean(), classification="internal"))
        typer.echo(f"4. computed mean of X·Xᵀ (4000², pinned to sites allowed 'internal'): "
                   f"{mean:.4f}")
    typer.echo(f"5. cleaned up; {time.perf_counter() - start:.1f} s for cluster and work")
