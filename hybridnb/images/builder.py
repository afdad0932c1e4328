"""Build hybridnb's images with the container builder this machine has.

:func:`find_builder` picks docker (with a running engine), podman or buildah, in that
order, and :class:`Builder` drives it: the same build, list, inspect and run for the
three. :func:`build_image` builds ``environments/images/<kind>/Containerfile`` from a
checkout: it builds the hybridnb wheel first (pinned to the checkout's version), passes
the base image, the torch source and the labels as build arguments, and reports what it
built with its size.

buildah runs without a daemon and without root privileges beyond the user's; where no
OCI runtime is installed (runc, crun) its steps run in a chroot (``--isolation chroot``),
and where the kernel has no overlay file system it stores layers as plain copies
(``--storage-driver vfs``). :func:`find_builder` decides both by asking buildah.

>>> Builder("buildah", "/usr/bin/buildah", ("--storage-driver", "vfs")).command("images")
['/usr/bin/buildah', '--storage-driver', 'vfs', 'images']
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import OperationError, UsageError
from .names import DESCRIPTIONS, KINDS, VARIANTS, default_image

logger = logging.getLogger(__name__)

#: The builders hybridnb drives, in the order :func:`find_builder` tries them.
BUILDERS = ("docker", "podman", "buildah")
#: Where torch comes from, by variant, unless a build says otherwise: PyTorch's CPU
#: wheels; PyPI, whose Linux wheel is the CUDA build.
TORCH_INDEX_URLS = {"cpu": "https://download.pytorch.org/whl/cpu",
                    "cuda": "https://pypi.org/simple"}
#: Labels every hybridnb image carries (the Containerfiles set them).
KIND_LABEL = "io.hybridnb.image.kind"
VARIANT_LABEL = "io.hybridnb.image.variant"
VERSION_LABEL = "org.opencontainers.image.version"
REVISION_LABEL = "org.opencontainers.image.revision"
#: Where, inside the checkout, :func:`build_image` puts the wheel it builds (the
#: ``WHEEL_DIR`` build argument; ``.dockerignore`` lets it into the context).
WHEEL_DIR = "build/images/dist"
#: The path pip trusts inside the images (``PIP_CERT``); a CA bundle is mounted there.
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
_INSTALL_HINT = ("install one: docker (with a running engine), podman, or buildah "
                 "(Debian/Ubuntu: apt-get install buildah; Fedora: dnf install buildah)")


@dataclass(frozen=True)
class Builder:
    """A container builder: ``docker``, ``podman`` or ``buildah``, and how to call it.

    ``global_args`` go before every subcommand (buildah's ``--storage-driver``,
    ``--root``); ``isolation`` is passed to builds and runs (``chroot`` where there is no
    OCI runtime).
    """

    name: str
    executable: str
    global_args: tuple[str, ...] = ()
    isolation: str | None = None

    def command(self, *args: str) -> list[str]:
        """The argv of ``builder [global args] args...``."""
        return [self.executable, *self.global_args, *args]

    def call(self, *args: str, timeout: float | None = 600, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        """Run a builder command, capturing its output; an :class:`OperationError` with
        the builder's own message when it fails (and ``check``)."""
        argv = self.command(*args)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise OperationError(f"{self.name} {' '.join(args[:2])} did not finish in "
                                 f"{timeout:g} s") from None
        if check and proc.returncode != 0:
            raise OperationError(f"{self.name} {' '.join(args[:2])} failed (exit "
                                 f"{proc.returncode}): {_last_lines(proc.stderr or proc.stdout)}")
        return proc

    def exists(self, ref: str) -> bool:
        """Whether the image ``ref`` is in the builder's storage."""
        args: tuple[str, ...] = ("image", "inspect", "--format", "{{.Id}}", ref)
        if self.name == "buildah":
            args = ("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)
        return self.call(*args, check=False, timeout=60).returncode == 0

    def inspect(self, ref: str) -> ImageInfo:
        """What the builder knows of the image ``ref``: id, user, labels, size in bytes."""
        if self.name == "buildah":
            data = json.loads(self.call("inspect", "--type", "image", ref).stdout)
            config = (data.get("Docker") or {}).get("config") or {}
            oci = (data.get("OCIv1") or {}).get("config") or {}
            manifest = json.loads(data.get("Manifest") or "{}")
            # Local storage keeps layers uncompressed: the sum is the unpacked size.
            size = sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
            return ImageInfo(
                ref=ref, id=str(data.get("FromImageID", ""))[:12],
                user=str(config.get("User") or oci.get("User") or ""),
                labels=dict(config.get("Labels") or oci.get("Labels") or {}),
                size_bytes=size, cmd=list(config.get("Cmd") or oci.get("Cmd") or []),
                healthcheck=list((config.get("Healthcheck") or {}).get("Test") or []),
                created=str((data.get("OCIv1") or {}).get("created", "")))
        data = json.loads(self.call("image", "inspect", ref).stdout)
        data = data[0] if isinstance(data, list) else data
        config = data.get("Config") or {}
        return ImageInfo(
            ref=ref, id=str(data.get("Id", "")).removeprefix("sha256:")[:12],
            user=str(config.get("User") or ""), labels=dict(config.get("Labels") or {}),
            size_bytes=int(data.get("Size") or 0), cmd=list(config.get("Cmd") or []),
            healthcheck=list((config.get("Healthcheck") or {}).get("Test") or []),
            created=str(data.get("Created", "")))

    def references(self) -> list[str]:
        """Every tagged image in the builder's storage (``name:tag``)."""
        if self.name == "buildah":
            listed = json.loads(self.call("images", "--json").stdout or "[]")
            return sorted({n for image in listed for n in (image.get("names") or [])})
        out = self.call("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return sorted({line for line in out.split() if "<none>" not in line})

    def remove(self, ref: str) -> None:
        """Remove the image ``ref`` (its layers stay while other images use them)."""
        self.call("rmi", ref)

    def prune(self) -> None:
        """Remove earlier builds of hybridnb's images whose tag moved to a newer one.

        Only untagged images with hybridnb's kind label: the untagged steps that the
        layer cache keeps (a build stage's last step has no label) stay reusable.
        """
        label = f"label={KIND_LABEL}"
        if self.name != "buildah":
            self.call("image", "prune", "--force", "--filter", label, check=False)
            return
        ids = self.call("images", "--quiet", "--filter", "dangling=true", "--filter", label,
                        check=False).stdout.split()
        if ids:
            self.call("rmi", *sorted(set(ids)), check=False)

    def import_rootfs(self, tarball: Path, ref: str, *, env: Mapping[str, str],
                      cmd: Sequence[str]) -> None:
        """Make the image ``ref`` from a root file system tarball (a base image)."""
        changes = [f"ENV {k}={v}" for k, v in env.items()] + [f"CMD {json.dumps(list(cmd))}"]
        if self.name != "buildah":
            flags = [x for change in changes for x in ("--change", change)]
            self.call("import", *flags, str(tarball), ref, timeout=1800)
            return
        container = self.call("from", "scratch").stdout.strip()
        try:
            # buildah add unpacks a local tar archive into the destination.
            self.call("add", container, str(tarball), "/", timeout=1800)
            config = [x for k, v in env.items() for x in ("--env", f"{k}={v}")]
            self.call("config", *config, "--cmd", json.dumps(list(cmd)), container)
            self.call("commit", "--quiet", container, ref, timeout=1800)
        finally:
            self.call("rm", container, check=False)

    @contextmanager
    def container(self, ref: str, *, volumes: Sequence[tuple[str, str, bool]] = (),
                  env: Mapping[str, str] | None = None, network_host: bool = False
                  ) -> Iterator[Container]:
        """A container of ``ref`` to run commands in (:meth:`Container.argv`).

        ``volumes`` are ``(host path, container path, read-only)``; ``network_host``
        shares the host's network (a server in it listens on the host's loopback).
        Run the argv it gives with :mod:`subprocess`. With buildah, the commands share
        one working container, removed when the ``with`` ends; docker and podman run
        each in a fresh one.
        """
        opts: list[str] = []
        for host, inside, read_only in volumes:
            opts += ["--volume", f"{host}:{inside}" + (":ro" if read_only else "")]
        for key, value in (env or {}).items():
            opts += ["--env", f"{key}={value}"]
        if network_host:
            opts += ["--network", "host"]
        if self.name != "buildah":
            yield Container(self, ref, None, tuple(opts))
            return
        if self.isolation:
            opts += ["--isolation", self.isolation]
        name = self.call("from", "--pull=false", ref).stdout.strip()
        try:
            yield Container(self, ref, name, tuple(opts))
        finally:
            self.call("rm", name, check=False)


@dataclass(frozen=True)
class Container:
    """Where :meth:`Builder.container` runs commands: ``name`` is buildah's working
    container (None for docker and podman, which run each command in a new one)."""

    builder: Builder
    ref: str
    name: str | None
    options: tuple[str, ...]

    def argv(self, cmd: Sequence[str]) -> list[str]:
        """The argv that runs ``cmd`` in the container."""
        if self.name is None:
            return self.builder.command("run", "--rm", *self.options, self.ref, *cmd)
        return self.builder.command("run", *self.options, self.name, "--", *cmd)


@dataclass(frozen=True)
class ImageInfo:
    """An image as its builder describes it."""

    ref: str
    id: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    created: str = ""

    @property
    def kind(self) -> str | None:
        """``notebook``, ``worker`` or ``serve`` for hybridnb's images, else None."""
        return self.labels.get(KIND_LABEL)

    @property
    def version(self) -> str | None:
        return self.labels.get(VERSION_LABEL)

    @property
    def variant(self) -> str | None:
        return self.labels.get(VARIANT_LABEL)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "id": self.id, "kind": self.kind, "variant": self.variant,
                "version": self.version, "revision": self.labels.get(REVISION_LABEL),
                "user": self.user, "size_bytes": self.size_bytes, "created": self.created}


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


def find_builder(name: str | None = None, *, storage_root: str | Path | None = None,
                 storage_driver: str | None = None) -> Builder:
    """The first builder that works here: docker (engine running), podman, buildah.

    Parameters
    ----------
    name:
        Use this one (``docker``, ``podman`` or ``buildah``) instead of the first found.
    storage_root:
        podman and buildah: keep images under this directory (``--root``), e.g. a
        cache of a test session, instead of the user's default storage.
    storage_driver:
        podman and buildah: ``overlay`` or ``vfs``; default: the configured one
        (``$STORAGE_DRIVER``, storage.conf), or ``vfs`` when that does not work here.

    Raises
    ------
    UsageError
        ``name`` is not one of :data:`BUILDERS`.
    OperationError
        None works; the message names what to install.

    Examples
    --------
    >>> find_builder("kaniko")
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: unknown builder 'kaniko'; choose docker, podman or buildah
    """
    if name is not None and name not in BUILDERS:
        raise UsageError(f"unknown builder {name!r}; choose docker, podman or buildah")
    tried: list[str] = []
    for candidate in (name,) if name else BUILDERS:
        exe = shutil.which(candidate)
        if exe is None:
            tried.append(f"{candidate}: not installed")
            continue
        builder, why = _probe(candidate, exe, storage_root, storage_driver)
        if builder is not None:
            return builder
        tried.append(f"{candidate}: {why}")
    raise OperationError(f"no container builder works here ({'; '.join(tried)}); "
                         + _INSTALL_HINT)


def _probe(name: str, exe: str, storage_root: str | Path | None,
           storage_driver: str | None) -> tuple[Builder | None, str]:
    """A working :class:`Builder` for ``exe``, or None and why not."""
    if name == "docker":
        proc = _quiet([exe, "info", "--format", "{{.ServerVersion}}"])
        if proc.returncode != 0:
            return None, f"no engine answers ({_last_lines(proc.stderr, 1)})"
        return Builder(name, exe), ""
    has_runtime = any(shutil.which(r) for r in ("crun", "runc"))
    isolation = None if has_runtime else "chroot"
    base: list[str] = []
    if storage_root is not None:
        root = Path(storage_root)
        base += ["--root", str(root / "storage"), "--runroot", str(root / "run")]
    drivers = [storage_driver] if storage_driver else [None, "vfs"]
    why = ""
    for driver in drivers:
        args = base + (["--storage-driver", driver] if driver else [])
        # `info` opens the storage: it fails where the driver cannot work (no overlay).
        proc = _quiet([exe, *args, "info"])
        if proc.returncode == 0:
            return Builder(name, exe, tuple(args), isolation), ""
        why = _last_lines(proc.stderr or proc.stdout, 1)
    return None, why or "does not start"


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no output"


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
                             f"{proc.returncode}): {_last_lines(proc.stdout or '')}")
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


def list_images(builder: Builder | None = None) -> list[ImageInfo]:
    """hybridnb's images in the builder's storage (those with its kind label), by name."""
    builder = builder or find_builder()
    found = []
    for ref in builder.references():
        info = builder.inspect(ref)
        if info.kind in DESCRIPTIONS:
            found.append(info)
    return sorted(found, key=lambda i: (i.kind or "", i.ref))
