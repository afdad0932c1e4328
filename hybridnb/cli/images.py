"""``hybridnb images build|list|base``: hybridnb's container images (notebook, worker, serve)."""

from __future__ import annotations

import ssl
from pathlib import Path

import typer

from .common import options, print_json, table

app = typer.Typer(help="Container images: build hybridnb's notebook, worker and serve "
                       "images, list them, make a local base.", no_args_is_help=True)


def _host_ca_bundle() -> Path | None:
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile) if cafile and Path(cafile).is_file() else None


@app.command("build")
def build(ctx: typer.Context,
          kinds: list[str] = typer.Argument(None, metavar="KIND",
                                            help="notebook, worker or serve (default: "
                                                 "all three)."),
          base: str | None = typer.Option(None, "--base", metavar="IMAGE",
                                          help="Base image (default: the Containerfile's, "
                                               "python:3.11-slim-bookworm); "
                                               "'hybridnb images base' makes a local one."),
          tag: str | None = typer.Option(None, "--tag", "-t", metavar="NAME:TAG",
                                         help="Tag the image so (one image only; default: "
                                              "images.registry/KIND:VERSION)."),
          variant: str = typer.Option("cpu", "--variant", help="cpu or cuda (torch build)."),
          builder: str | None = typer.Option(None, "--builder",
                                             help="docker, podman or buildah (default: "
                                                  "the first that works, in that order)."),
          find_links: Path | None = typer.Option(
              None, "--find-links", metavar="DIR",
              help="A directory of wheels, mounted at build time; a CPU torch wheel "
                   "there is used."),
          torch: str | None = typer.Option(None, "--torch", metavar="SPEC",
                                           help="torch requirement, e.g. torch==2.13.0."),
          torch_index_url: str | None = typer.Option(
              None, "--torch-index-url", metavar="URL",
              help="Where torch comes from (default: PyTorch's CPU index for cpu, PyPI "
                   "for cuda)."),
          ca_bundle: Path | None = typer.Option(
              None, "--ca-bundle", metavar="FILE",
              help="CA bundle mounted for pip at build time only (default: this "
                   "host's, with podman and buildah)."),
          no_ca_bundle: bool = typer.Option(False, "--no-ca-bundle",
                                            help="Mount no CA bundle."),
          context: Path | None = typer.Option(None, "--context", metavar="DIR",
                                              help="The hybridnb checkout (default: "
                                                   "this package's)."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Build hybridnb's images from a checkout, with docker, podman or buildah."""
    from ..config.images import KINDS, default_image
    from ..errors import UsageError
    from ..images.build import build_image
    from ..images.builder import find_builder

    wanted = list(kinds or KINDS)
    for kind in wanted:  # bad names fail before any builder is looked for
        default_image(kind, variant=variant)
    if tag is not None and len(wanted) != 1:
        raise UsageError("--tag names one image: give one of notebook, worker, serve")
    images = options(ctx).config().images
    found = find_builder(builder)
    if no_ca_bundle:
        ca_bundle = None
    elif ca_bundle is None and found.name != "docker":
        ca_bundle = _host_ca_bundle()
    results = []
    for kind in wanted:
        result = build_image(kind, builder=found, base=base, tag=tag, variant=variant,
                             context=context, torch_spec=torch,
                             torch_index_url=torch_index_url, find_links=find_links,
                             ca_bundle=ca_bundle, registry=images.registry,
                             image_tag=images.tag)
        results.append(result)
        if not as_json:
            typer.echo(f"built {result.image.ref} ({result.variant}, "
                       f"{result.image.size_bytes / 1e6:,.0f} MB, {result.seconds:.0f} s, "
                       f"{result.builder})")
    if as_json:
        print_json([{**r.image.to_dict(), "seconds": round(r.seconds, 1),
                     "builder": r.builder} for r in results])
        return
    typer.echo(f"push:  {found.name} push REF   (rendered manifests use "
               f"{images.registry}/KIND:TAG; set images.registry to yours)")


@app.command("list")
def list_(builder: str | None = typer.Option(None, "--builder",
                                             help="docker, podman or buildah."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List hybridnb's images that the builder has (built by 'images build')."""
    from ..images.builder import find_builder, list_images

    found = list_images(find_builder(builder))
    if as_json:
        print_json([i.to_dict() for i in found])
        return
    if not found:
        typer.echo("no hybridnb images (build them: hybridnb images build)")
        return
    table(None, ["image", "kind", "variant", "version", "revision", "size", "user", "id"],
          [[i.ref, i.kind, i.variant, i.version, (i.labels.get(
              "org.opencontainers.image.revision") or "")[:12],
            f"{i.size_bytes / 1e6:,.0f} MB", i.user, i.id] for i in found])


@app.command("base")
def base(builder: str | None = typer.Option(None, "--builder",
                                            help="docker, podman or buildah."),
         suite: str = typer.Option("bookworm", "--suite", help="Debian release."),
         mirror: str = typer.Option("http://deb.debian.org/debian", "--mirror",
                                    help="Debian mirror."),
         cache_dir: Path | None = typer.Option(
             None, "--cache-dir", metavar="DIR",
             help="Where the base's tarball is cached (default: $HYBRIDNB_IMAGES_CACHE "
                  "or ~/.cache/hybridnb/images)."),
         refresh: bool = typer.Option(False, "--refresh",
                                      help="Run debootstrap again (newer packages)."),
         ) -> None:
    """Make a local Debian base image (debootstrap) and print its name, for --base."""
    from ..images.base import make_base
    from ..images.builder import find_builder

    ref = make_base(find_builder(builder), suite=suite, mirror=mirror, cache_dir=cache_dir,
                    refresh=refresh)
    typer.echo(ref)
