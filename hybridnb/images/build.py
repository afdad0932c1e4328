"""Build hybridnb's images from a checkout: the wheel first, then the Containerfile.

:func:`build_image` builds ``environments/images/<kind>/Containerfile`` with a
:class:`~hybridnb.images.builder.Builder`: it builds the hybridnb wheel of the checkout
(so the image holds exactly that version), passes the base image, the torch source and
the labels, mounts what the build may read (a wheel directory, a CA bundle) read-only
for the build only, and reports what it built with its size.

>>> local_torch(Path("/nonexistent"), "cpu") is None
True
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..config.images import KINDS, VARIANTS, default_image
from ..errors import OperationError, UsageError
from .builder import (
    REVISION_LABEL,
    VARIANT_LABEL,
    VERSION_LABEL,
    Builder,
    ImageInfo,
    find_builder,
    last_lines,
)

logger = logging.getLogger(__name__)

#: Where torch comes from, by variant, unless a build says otherwise: PyTorch's CPU
#: wheels; PyPI, whose Linux wheel is the CUDA build.
TORCH_INDEX_URLS = {"cpu": "https://download.pytorch.org/whl/cpu",
                    "cuda": "https://pypi.org/simple"}
#: Where, inside the checkout, :func:`build_image` puts the wheel it builds (the
#: ``WHEEL_DIR`` build argument; ``.dockerignore`` lets it into the context).
WHEEL_DIR = "build/images/dist"
#: The path pip trusts inside the images (``PIP_CERT``); a CA bundle is mounted there.
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_image` built."""

    image: ImageInfo
    kind: str
    variant: str
    builder: str
    seconds: float
    wheel: Path

    def __repr__(self) -> str:
        return (f"BuildResult({self.image.ref!r}, {self.variant}, "
                f"{self.image.size_bytes / 1e6:.0f} MB, {self.seconds:.0f} s, {self.builder})")


def find_checkout(start: str | Path | None = None) -> Path:
    """The hybridnb checkout to build from: ``start``, or the one this package lies in.

    A checkout holds ``pyproject.toml`` and ``environments/images``; images are built
    from source (the hybridnb wheel is made from it).
    """
    candidates = [Path(start)] if start is not None else [Path(__file__).resolve().parents[2],
                                                          Path.cwd()]
    for root in candidates:
        if (root / "environments" / "images").is_dir() and (root / "pyproject.toml").is_file():
            return root.resolve()
    where = start if start is not None else "this package's parent or the current directory"
    raise UsageError(f"no hybridnb checkout at {where} (it needs pyproject.toml and "
                     "environments/images/): images are built from source; clone the "
                     "repository and run there, or pass --context DIR")


def checkout_version(root: Path) -> str:
    """The version in the checkout's ``hybridnb/_version.py`` (not this interpreter's)."""
    text = (root / "hybridnb" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    if not match:
        raise UsageError(f"{root / 'hybridnb' / '_version.py'}: no __version__ = '...' line")
    return match.group(1)


def build_wheel(root: Path, *, log: IO[str] | None = None) -> Path:
    """Build the hybridnb wheel of the checkout ``root`` into ``root/WHEEL_DIR``.

    The directory is emptied first, so the wheel is this build's and no other's.
    """
    out = root / WHEEL_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
            str(out), str(root)]
    proc = subprocess.run(argv, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise OperationError(f"building the hybridnb wheel failed (pip wheel, exit "
                             f"{proc.returncode}): {last_lines(proc.stdout or '')}")
    version = _wheel_version(checkout_version(root))
    wheel = out / f"hybridnb-{version}-py3-none-any.whl"
    if not wheel.is_file():
        found = ", ".join(p.name for p in out.iterdir()) or "nothing"
        raise OperationError(f"pip wheel wrote {found} to {out}, not {wheel.name}")
    return wheel


def _wheel_version(version: str) -> str:
    # Wheel file names carry the normalized version with '-' escaped (PEP 427).
    return version.replace("-", "_")


def wheel_extensions(wheel: str | Path) -> dict[str, list[str]]:
    """The Jupyter extensions a hybridnb wheel installs, read from its RECORD.

    ``labextensions``: names under ``share/jupyter/labextensions/`` (a ``package.json``
    there); ``server``: the modules that a ``etc/jupyter/jupyter_server_config.d/*.json``
    enables (``ServerApp.jpserver_extensions``). Empty lists when the wheel has none.
    """
    out: dict[str, list[str]] = {"labextensions": [], "server": []}
    with zipfile.ZipFile(wheel) as zf:
        record = next((n for n in zf.namelist() if n.endswith(".dist-info/RECORD")), None)
        names = zf.read(record).decode().splitlines() if record else []
        for line in names:
            path = line.split(",", 1)[0]
            lab = re.search(r"\.data/data/share/jupyter/labextensions/((?:@[^/]+/)?[^/]+)"
                            r"/package\.json$", path)
            if lab:
                out["labextensions"].append(lab.group(1))
            if re.search(r"\.data/data/etc/jupyter/jupyter_server_config\.d/[^/]+\.json$",
                         path):
                conf = json.loads(zf.read(path))
                enabled = (conf.get("ServerApp") or {}).get("jpserver_extensions") or {}
                out["server"] += [mod for mod, on in enabled.items() if on]
    return {k: sorted(set(v)) for k, v in out.items()}


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def local_torch(find_links: Path, variant: str) -> str | None:
    """``torch==VERSION`` of the newest torch wheel of ``variant`` in ``find_links``.

    Only CPU wheels carry their variant in the version (``2.13.0+cpu``).
    """
    if variant != "cpu" or not find_links.is_dir():
        return None
    versions = sorted((m.group(1) for p in find_links.glob("torch-*.whl")
                       if (m := re.match(r"torch-([0-9][^-]*\+cpu)-", p.name))),
                      key=_version_key)
    return f"torch=={versions[-1]}" if versions else None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0]))


def build_image(kind: str, *, builder: Builder | None = None, base: str | None = None,
                tag: str | None = None, variant: str = "cpu",
                context: str | Path | None = None, torch_spec: str | None = None,
                torch_index_url: str | None = None, find_links: str | Path | None = None,
                ca_bundle: str | Path | None = None, registry: str | None = None,
                image_tag: str | None = None, build_args: Mapping[str, str] | None = None,
                log: IO[str] | None = None) -> BuildResult:
    """Build hybridnb's ``kind`` image (``notebook``, ``worker``, ``serve``).

    Parameters
    ----------
    builder:
        Default: :func:`find_builder`.
    base:
        The ``BASE_IMAGE`` build argument; default the Containerfile's
        (``python:3.11-slim-bookworm``). :func:`hybridnb.images.base.make_base` makes a
        local one for machines that cannot pull.
    tag:
        The full reference to tag; default :func:`default_image` of ``kind`` and
        ``variant`` in ``registry`` with ``image_tag`` (the configuration's ``images``).
    variant:
        ``cpu`` or ``cuda``: which torch build (:data:`TORCH_INDEX_URLS`).
    context:
        The checkout; default :func:`find_checkout`.
    torch_spec, torch_index_url:
        What torch to install and from where; defaults: ``torch`` from the variant's
        index, or the CPU wheel in ``find_links`` (then torch's own dependencies come
        from PyPI).
    find_links:
        A directory of wheels, mounted read-only at build time (podman, buildah) and
        given to pip (``PIP_FIND_LINKS``).
    ca_bundle:
        A CA bundle mounted over the images' at build time only (podman, buildah), for
        pip behind a TLS-inspecting proxy; never copied into the image.
    build_args:
        More ``--build-arg`` values.
    log:
        Where the builder's output goes; default: this process's stderr.

    Raises
    ------
    UsageError
        An unknown kind or variant, no checkout, or options the builder cannot honour.
    OperationError
        The wheel or the image failed to build.
    """
    if kind not in KINDS:
        default_image(kind)  # raises the error naming the kinds
    if variant not in VARIANTS:
        raise UsageError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    builder = builder or find_builder()
    root = find_checkout(context)
    containerfile = root / "environments" / "images" / kind / "Containerfile"
    if not containerfile.is_file():
        raise UsageError(f"{containerfile}: no such file (the checkout lacks the {kind} image)")
    ref = tag or default_image(kind, variant=variant, registry=registry, tag=image_tag)
    mounts: list[tuple[Path, str]] = []
    args: dict[str, str] = {}
    if find_links is not None:
        links = Path(find_links).resolve()
        if not links.is_dir():
            raise UsageError(f"--find-links {find_links}: no such directory")
        mounts.append((links, str(links)))
        args["PIP_FIND_LINKS"] = str(links)
        local = local_torch(links, variant)
        if local and torch_spec is None and torch_index_url is None:
            torch_spec, torch_index_url = local, "https://pypi.org/simple"
    if ca_bundle is not None:
        bundle = Path(ca_bundle).resolve()
        if not bundle.is_file():
            raise UsageError(f"--ca-bundle {ca_bundle}: no such file")
        mounts.append((bundle, IMAGE_CA_BUNDLE))
    if mounts and builder.name == "docker":
        raise UsageError("docker build cannot mount --find-links or --ca-bundle at build "
                         "time; use podman or buildah (--builder), or leave them out")

    start = time.monotonic()
    wheel = build_wheel(root, log=log)
    version = checkout_version(root)
    args.update({"HYBRIDNB_VERSION": _wheel_version(version), "WHEEL_DIR": WHEEL_DIR,
                 "VARIANT": variant, "VCS_REF": _git(root, "rev-parse", "HEAD") or "unknown",
                 "TORCH_INDEX_URL": torch_index_url or TORCH_INDEX_URLS[variant]})
    if torch_spec:
        args["TORCH_SPEC"] = torch_spec
    if base:
        args["BASE_IMAGE"] = base
    args.update(build_args or {})
    argv = ["build", "--file", str(containerfile), "--tag", ref]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    # Layer caches key a LABEL step on its text, not on the build arguments in it: a new
    # commit alone would keep the last build's revision. Labels given here always apply.
    labels = {VERSION_LABEL: version, REVISION_LABEL: args["VCS_REF"], VARIANT_LABEL: variant}
    for label, value in labels.items():
        argv += ["--label", f"{label}={value}"]
    if builder.name != "docker":
        # docker's image format keeps HEALTHCHECK (OCI's has no field for it); --layers
        # caches each step, so unchanged steps are reused across builds and images.
        argv += ["--format", "docker", "--layers"]
        argv += [x for host, inside in mounts for x in ("--volume", f"{host}:{inside}:ro")]
        if builder.isolation:
            argv += ["--isolation", builder.isolation]
    if builder.name == "buildah":
        # buildah's default pulls a newer base when there is one, even for a local image.
        argv.append("--pull=false")
    argv.append(str(root))
    logger.info("building %s: %s", ref, " ".join(builder.command(*argv)))
    # The builder's progress goes to stderr (or ``log``): stdout is for the results.
    proc = subprocess.run(builder.command(*argv), stdout=log if log is not None else 2,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if proc.returncode != 0:
        raise OperationError(f"{builder.name} build of {ref} failed (exit {proc.returncode}); "
                             "its output above says which step")
    return BuildResult(image=builder.inspect(ref), kind=kind, variant=variant,
                       builder=builder.name, seconds=time.monotonic() - start, wheel=wheel)
