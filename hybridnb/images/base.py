"""A local Debian base image, for machines that cannot pull one.

The Containerfiles build ``FROM ${BASE_IMAGE}`` (default ``python:3.11-slim-bookworm``).
Where no registry can be reached (CI here), :func:`make_base` makes an equivalent with
``debootstrap --variant=minbase --include=python3,python3-venv bookworm``: Debian 12 with
its Python 3.11, which matches torch's cp311 wheels. It slims the tree as Debian's own
slim images do (no package lists or caches, no manuals or translations; copyright files
stay), tars it, and imports the tarball as ``localhost/hybridnb/base:bookworm-KEY``.

The tarball is cached under ``cache_dir`` keyed by everything that shapes it (suite,
mirror, packages, the slimming recipe), so a new image store, or a machine that keeps the
cache, imports it in seconds instead of running debootstrap again (about 3 minutes).
Needs root (debootstrap creates device nodes and owners) and Debian's ``debootstrap``.

>>> base_key("bookworm", "http://deb.debian.org/debian", ("python3",)) == base_key(
...     "bookworm", "http://deb.debian.org/debian", ("python3",))
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import OperationError, UsageError
from .builder import Builder, find_builder

logger = logging.getLogger(__name__)

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv")
#: Bump when the slimming below changes: it is part of the cache key.
RECIPE = 1
#: The image's environment and command (as Debian's images have them).
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8"}
CMD = ("bash",)

# Later apt installs in images built FROM the base skip the same files.
_DPKG_EXCLUDES = """\
# hybridnb base image: no manuals, translations or documentation (copyrights stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
_APT_CONF = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
"""


def default_cache_dir() -> Path:
    """``$HYBRIDNB_IMAGES_CACHE``, else ``$XDG_CACHE_HOME/hybridnb/images``
    (``~/.cache/hybridnb/images``): outside any checkout, so fresh clones reuse it."""
    env = os.environ.get("HYBRIDNB_IMAGES_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "hybridnb" / "images"


def base_key(suite: str, mirror: str, packages: Sequence[str]) -> str:
    """The cache key of a base: a digest of everything that shapes its tree."""
    inputs = {"suite": suite, "mirror": mirror, "packages": sorted(packages),
              "variant": "minbase", "recipe": RECIPE}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def base_ref(suite: str = SUITE, mirror: str = MIRROR,
             packages: Sequence[str] = PACKAGES) -> str:
    """The local reference of the base these inputs make.

    >>> base_ref().startswith("localhost/hybridnb/base:bookworm-")
    True
    """
    return f"localhost/hybridnb/base:{suite}-{base_key(suite, mirror, packages)}"


def make_base(builder: Builder | None = None, *, suite: str = SUITE, mirror: str = MIRROR,
              packages: Sequence[str] = PACKAGES, cache_dir: str | Path | None = None,
              refresh: bool = False, log: IO[str] | None = None) -> str:
    """The local base image's reference, made if needed: from the builder's storage,
    else from the cached tarball, else with debootstrap (then cached).

    Parameters
    ----------
    builder:
        Default: :func:`find_builder`.
    suite, mirror, packages:
        What debootstrap installs (``--include``), and from where.
    cache_dir:
        Where the tarball is kept; default :func:`default_cache_dir`.
    refresh:
        Run debootstrap again even if a cached base exists (newer Debian packages).
    log:
        Where debootstrap's output goes; default: discarded, its last lines reported on
        failure.

    Raises
    ------
    UsageError
        Not root, or no debootstrap (the message says how to get one, or which public
        base to use instead).
    OperationError
        debootstrap or the import failed.
    """
    builder = builder or find_builder()
    ref = base_ref(suite, mirror, packages)
    if not refresh and builder.exists(ref):
        return ref
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tarball = cache / "base" / f"{suite}-{base_key(suite, mirror, packages)}.tar"
    if refresh or not tarball.is_file():
        _debootstrap(tarball, suite=suite, mirror=mirror, packages=packages, log=log)
    logger.info("importing %s as %s", tarball, ref)
    builder.import_rootfs(tarball, ref, env=ENV, cmd=CMD)
    return ref


def _debootstrap(tarball: Path, *, suite: str, mirror: str, packages: Sequence[str],
                 log: IO[str] | None) -> None:
    exe = shutil.which("debootstrap")
    if exe is None:
        raise UsageError("making a local base image needs debootstrap (Debian/Ubuntu: "
                         "apt-get install debootstrap); or pass --base with a public "
                         "image, e.g. python:3.11-slim-bookworm")
    if os.geteuid() != 0:
        raise UsageError("debootstrap needs root (it creates device nodes and file "
                         "owners): run 'hybridnb images base' as root, or pass --base "
                         "with a public image, e.g. python:3.11-slim-bookworm")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".debootstrap-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = [exe, "--variant=minbase", f"--include={','.join(packages)}", suite,
                str(rootfs), mirror]
        logger.info("running %s", " ".join(argv))
        proc = subprocess.run(argv, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout or "").strip().splitlines()[-3:])
            raise OperationError(f"debootstrap {suite} from {mirror} failed (exit "
                                 f"{proc.returncode}): {tail or 'see its output above'}")
        slim(rootfs)
        partial = Path(tmp) / "rootfs.tar"
        # Numeric owners: the image's users are the tree's, whatever this host calls them.
        proc = subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs),
                               "-cf", str(partial), "."], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OperationError(f"packing the base image failed: {proc.stderr.strip()}")
        os.replace(partial, tarball)  # whole or not at all: a later run trusts the cache


def slim(rootfs: Path) -> None:
    """Slim a debootstrapped tree as Debian's slim images are, and drop what a build
    host leaves in it (its resolv.conf and host name, device nodes, logs)."""
    def clear(path: Path, keep: Sequence[str] = ()) -> None:
        if not path.is_dir():
            return
        for child in path.iterdir():
            if child.name in keep:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    for sub in ("dev", "proc", "sys", "run", "tmp", "var/tmp", "var/log",
                "var/lib/apt/lists", "usr/share/man", "usr/share/info"):
        clear(rootfs / sub, keep=("lock", "partial"))
    clear(rootfs / "var/cache/apt", keep=("archives",))
    clear(rootfs / "var/cache/apt/archives", keep=("partial",))
    clear(rootfs / "usr/share/locale", keep=("locale.alias",))
    for doc in (rootfs / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            clear(doc, keep=("copyright",))
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)
    (rootfs / "etc/machine-id").write_text("")  # each container makes its own
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/hybridnb-slim").write_text(_DPKG_EXCLUDES)
    (rootfs / "etc/apt/apt.conf.d/99hybridnb-slim").write_text(_APT_CONF)
