"""``hybridnb compress``: int8 quantization and magnitude pruning of a model bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import print_json, table


def compress(
    bundle: Path = typer.Argument(..., help="The model bundle directory."),
    out: Path = typer.Option(..., "--out", "-o", help="The new bundle's directory."),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8 (int8 weights, float compute) or "
        "int8-dynamic (int8 activations too); Linear only.",
    ),
    prune: float | None = typer.Option(
        None, "--prune", help="Fraction in [0, 1) of Linear/conv weights to zero."
    ),
    prune_scope: str = typer.Option("layer", "--prune-scope", help="layer or global."),
    eval_data: str | None = typer.Option(
        None, "--eval", help="digits, or a prepared data directory (test split)."
    ),
    repeats: int = typer.Option(30, "--repeats", help="Latency samples per batch."),
    batch: list[int] = typer.Option(
        [1, 32, 256], "--batch", help="Batch sizes to time (repeatable)."
    ),
    version: str | None = typer.Option(None, "--version-tag", help="The new bundle's version."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write a compressed copy of BUNDLE and print the before/after report."""
    from ..serve.compress_bundle import compress as run

    report = run(
        bundle,
        out,
        quantize=quantize,
        prune=prune,
        prune_scope=prune_scope,
        eval_data=eval_data,
        batch_sizes=batch,
        repeats=repeats,
        version=version,
        overwrite=overwrite,
    )
    if as_json:
        print_json(report.to_dict())
        return
    table(
        f"compressed {report.name} → {report.path}",
        ["", "value"],
        [list(row) for row in report.rows()],
    )
