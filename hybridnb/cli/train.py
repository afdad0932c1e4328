"""``hybridnb train SPEC.yaml``: train a model from a spec file (or render its PyTorchJob)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UsageError
from .common import options, parse_sets, print_json

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..train import TrainResult, TrainSpec

#: Top-level keys of hybridnb.yaml: a --set on them after the command is a mistake.
CONFIG_KEYS = ("sites", "datasets", "policies", "images")


def train(ctx: typer.Context,
          spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="Training spec (YAML)."),
          site: str = typer.Option("local", "--site", help="Site to train on."),
          nprocs: int = typer.Option(2, "--nprocs", "-n", help="Number of ranks."),
          launcher: str = typer.Option("local", "--launcher", help="local or dask."),
          data: Path | None = typer.Option(
              None, "--data", metavar="DIR",
              help="Train on this prepared dataset (what 'hybridnb data prepare' wrote) "
                   "instead of the spec's data."),
          epochs: int | None = typer.Option(None, "--epochs", metavar="N",
                                            help="Override the spec's epochs."),
          batch_size: int | None = typer.Option(None, "--batch-size", metavar="N",
                                                help="Override the spec's batch_size "
                                                     "(per rank)."),
          set_: list[str] = typer.Option(
              [], "--set", metavar="KEY=VALUE",
              help="Override a spec key: --set optimizer.lr=0.01 (repeatable). Config "
                   "keys go before the command: hybridnb --set sites... train."),
          run_dir: Path | None = typer.Option(None, "--run-dir",
                                              help="Run directory (default: under state)."),
          resume: bool = typer.Option(False, "--resume",
                                      help="Continue from the run dir's latest checkpoint."),
          no_bundle: bool = typer.Option(False, "--no-bundle",
                                         help="Do not write a model bundle."),
          as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
          render: str | None = typer.Option(
              None, "--render", metavar="kubernetes",
              help="Write a Kubeflow PyTorchJob (and its ConfigMap) to --out instead of "
                   "training here."),
          out: Path | None = typer.Option(None, "--out", metavar="DIR",
                                          help="Where --render writes."),
          image: str | None = typer.Option(None, "--image", metavar="IMAGE",
                                           help="--render: an image with hybridnb and the "
                                                "model's module (default: the site's "
                                                "kubernetes.image, else hybridnb's worker)."),
          run_claim: str | None = typer.Option(
              None, "--run-claim", metavar="PVC",
              help="--render: the PersistentVolumeClaim holding the run directory "
                   "(default: JOB-run)."),
          claim_size: str | None = typer.Option(
              None, "--claim-size", metavar="SIZE",
              help="--render: also write that claim, of this size (e.g. 5Gi)."),
          namespace: str | None = typer.Option(None, "--namespace", metavar="NS",
                                               help="--render: namespace (default: the "
                                                    "site's, else default)."),
          ) -> None:
    """Train with torch.distributed (DDP or FSDP); print a summary and the bundle's path."""
    from ..train import fit, load_spec

    overrides = spec_overrides(set_, data=data, epochs=epochs, batch_size=batch_size)
    loaded = load_spec(spec, overrides=overrides)
    config = options(ctx).config()
    if render is not None:
        _render(loaded, render, out=out, nprocs=nprocs, image=image, run_claim=run_claim,
                claim_size=claim_size, namespace=namespace, site=site, config=config)
        return
    started = time.perf_counter()
    result = fit(loaded, site=site, nprocs=nprocs, launcher=launcher, run_dir=run_dir,
                 resume=resume, config=config, bundle=not no_bundle)
    wall = time.perf_counter() - started
    if as_json:
        print_json(summary(result, wall))
        return
    typer.echo(summary_text(result, wall))


def spec_overrides(items: list[str], *, data: Path | None = None, epochs: int | None = None,
                   batch_size: int | None = None) -> dict[str, Any]:
    """The spec overrides the options ask for, as dotted keys (``--set`` last wins)."""
    out: dict[str, Any] = {}
    if data is not None:
        # Absolute: the ranks and the bundle's record do not depend on where it was typed.
        out["data"] = {"path": str(data.expanduser().resolve())}
    if epochs is not None:
        out["epochs"] = epochs
    if batch_size is not None:
        out["batch_size"] = batch_size
    sets = parse_sets(items)
    for key in sets:
        if key.split(".")[0] in CONFIG_KEYS:
            raise UsageError(f"--set {key}=...: '{key.split('.')[0]}' is a configuration key, "
                             "not a spec key; put it before the command: hybridnb --set "
                             f"{key}=VALUE train ...")
    out.update(sets)
    return out


def summary(result: TrainResult, wall: float) -> dict[str, Any]:
    """The run in a few figures (what ``--json`` prints)."""
    r = result.result
    return {"name": result.name, "test_accuracy": r.get("test_accuracy"),
            "val_accuracy": r.get("val_accuracy"), "test_loss": r.get("test_loss"),
            "steps": r.get("steps"), "ranks": r.get("world_size"),
            "strategy": r.get("strategy"), "precision": r.get("precision"),
            "device": r.get("device"), "seconds": round(wall, 1),
            "run_dir": str(result.run_dir),
            "bundle": str(result.bundle) if result.bundle is not None else None,
            "note": r.get("note") or None}


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def summary_text(result: TrainResult, wall: float) -> str:
    """A short human summary: accuracy as %, the time taken, where things are.

    >>> from hybridnb.train import TrainResult
    >>> r = TrainResult("digits", "/runs/d", {"test_accuracy": 0.98765, "val_accuracy": 0.99,
    ...                 "steps": 40, "world_size": 2, "strategy": "ddp", "precision": "fp32",
    ...                 "device": "cpu"}, [], bundle=Path("/runs/d/bundle"))
    >>> print(summary_text(r, 12.345))
    trained digits: test accuracy 98.8 % (validation 99.0 %) in 12.3 s
      40 steps on 2 ranks (ddp, fp32, cpu)
      run dir  /runs/d
      bundle   /runs/d/bundle
    serve it:  hybridnb serve /runs/d/bundle
    """
    r = result.result
    val = f" (validation {_pct(r['val_accuracy'])})" if r.get("val_accuracy") is not None else ""
    ranks = r.get("world_size", "?")
    lines = [f"trained {result.name}: test accuracy {_pct(r.get('test_accuracy'))}{val} in "
             f"{wall:.1f} s",
             f"  {r.get('steps', '?')} steps on {ranks} rank{'' if ranks == 1 else 's'} "
             f"({r.get('strategy', '?')}, {r.get('precision', '?')}, {r.get('device', '?')})"]
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    lines.append(f"  run dir  {result.run_dir}")
    if result.bundle is not None:
        lines += [f"  bundle   {result.bundle}", f"serve it:  hybridnb serve {result.bundle}"]
    return "\n".join(lines)


def _render(spec: TrainSpec, what: str, *, out: Path | None, nprocs: int, image: str | None,
            run_claim: str | None, claim_size: str | None, namespace: str | None,
            site: str, config: HybridConfig) -> None:
    from ..k8s.validate import write_manifests
    from ..train.k8s import manifests

    if what != "kubernetes":
        raise UsageError(f"unknown --render {what!r}; training renders 'kubernetes' (a "
                         "Kubeflow PyTorchJob)")
    if out is None:
        raise UsageError("--render kubernetes needs --out DIR (where to write the files)")
    if nprocs < 1:
        raise UsageError(f"--nprocs must be ≥ 1, got {nprocs}")
    opts = config.site(site).kubernetes  # None unless a kubernetes site
    image = image or (opts.image if opts is not None else config.images.image("worker"))
    objs = manifests(spec, nprocs=nprocs, image=image, run_claim=run_claim,
                     claim_size=claim_size,
                     namespace=namespace or (opts.namespace if opts is not None else "default"),
                     env=dict(opts.env) if opts is not None else None)
    paths = write_manifests(objs, out)
    job = objs[-1]["metadata"]["name"]
    claim = objs[-1]["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"][
        "volumes"][1]["persistentVolumeClaim"]["claimName"]
    typer.echo(f"wrote PyTorchJob {job!r} ({nprocs} ranks) to {out}: "
               f"{', '.join(p.name for p in paths)}")
    if claim_size is None:
        typer.echo(f"  the run directory lives on the claim {claim!r}: create it first "
                   "(ReadWriteMany), or pass --claim-size SIZE to write one")
    if spec.data.path is not None:
        typer.echo(f"  the spec reads its data from {spec.data.path!r}: that path must exist "
                   "inside the pods (an image layer, or a volume you add)")
    typer.echo(f"apply it:  kubectl apply -f {out}")
