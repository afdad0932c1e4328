"""Container builders: find the one this machine has, and drive it.

:func:`find_builder` picks docker (with a running engine), podman or buildah, in that
order, and :class:`Builder` drives it: the same inspect, list, import and run for the
three (:mod:`hybridnb.images.build` builds with it). buildah needs no daemon: where no
OCI runtime is installed (runc, crun) its steps run in a chroot (``--isolation
chroot``), and where the kernel has no overlay file system it stores layers as plain
copies (``--storage-driver vfs``). :func:`find_builder` decides both by asking the
machine.

>>> Builder("buildah", "/usr/bin/buildah", ("--storage-driver", "vfs")).command("images")
['/usr/bin/buildah', '--storage-driver', 'vfs', 'images']
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.images import DESCRIPTIONS
from ..errors import OperationError, UsageError

#: The builders hybridnb drives, in the order :func:`find_builder` tries them.
BUILDERS = ("docker", "podman", "buildah")
#: Labels every hybridnb image carries (the Containerfiles and ``images build`` set them).
KIND_LABEL = "io.hybridnb.image.kind"
VARIANT_LABEL = "io.hybridnb.image.variant"
VERSION_LABEL = "org.opencontainers.image.version"
REVISION_LABEL = "org.opencontainers.image.revision"
_INSTALL_HINT = ("install one: docker (with a running engine), podman, or buildah "
                 "(Debian/Ubuntu: apt-get install buildah; Fedora: dnf install buildah)")


@dataclass(frozen=True)
class Builder:
    """A container builder: ``docker``, ``podman`` or ``buildah``, and how to call it.

    ``global_args`` go before every subcommand (buildah's ``--storage-driver``);
    ``isolation`` is passed to builds and runs (``chroot`` where there is no
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
                                 f"{proc.returncode}): {last_lines(proc.stderr or proc.stdout)}")
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


def find_builder(name: str | None = None, *, storage_driver: str | None = None) -> Builder:
    """The first builder that works here: docker (engine running), podman, buildah.

    podman and buildah use their configured image store (``storage.conf``, or the file
    ``$CONTAINERS_STORAGE_CONF`` names), as they do on their own.

    Parameters
    ----------
    name:
        Use this one (``docker``, ``podman`` or ``buildah``) instead of the first found.
    storage_driver:
        podman and buildah: ``overlay`` or ``vfs``; default: the configured one, or
        ``vfs`` where that does not work here (a kernel without overlay).

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
        builder, why = _probe(candidate, exe, storage_driver)
        if builder is not None:
            return builder
        tried.append(f"{candidate}: {why}")
    raise OperationError(f"no container builder works here ({'; '.join(tried)}); "
                         + _INSTALL_HINT)


def _probe(name: str, exe: str, storage_driver: str | None) -> tuple[Builder | None, str]:
    """A working :class:`Builder` for ``exe``, or None and why not."""
    if name == "docker":
        proc = _quiet([exe, "info", "--format", "{{.ServerVersion}}"])
        if proc.returncode != 0:
            return None, f"no engine answers ({last_lines(proc.stderr, 1)})"
        return Builder(name, exe), ""
    # Without an OCI runtime, buildah and podman run build steps in a chroot.
    isolation = None if any(shutil.which(r) for r in ("crun", "runc")) else "chroot"
    why = ""
    for driver in [storage_driver] if storage_driver else [None, "vfs"]:
        args = ("--storage-driver", driver) if driver else ()
        # `info` opens the image store: it fails where the driver cannot work.
        proc = _quiet([exe, *args, "info"])
        if proc.returncode == 0:
            return Builder(name, exe, args, isolation), ""
        why = last_lines(proc.stderr or proc.stdout, 1)
    return None, why or "does not start"


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def last_lines(text: str, n: int = 3) -> str:
    """The last ``n`` non-empty lines of a tool's output, on one line (for messages)."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no output"


def list_images(builder: Builder | None = None) -> list[ImageInfo]:
    """hybridnb's images in the builder's storage (those with its kind label), by name."""
    builder = builder or find_builder()
    found = []
    for ref in builder.references():
        info = builder.inspect(ref)
        if info.kind in DESCRIPTIONS:
            found.append(info)
    return sorted(found, key=lambda i: (i.kind or "", i.ref))
