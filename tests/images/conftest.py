"""Fixtures of the image tests: a builder with its own image store, the local base, and
the three images built from it with the real ``hybridnb images build``.

Everything is cached under ``$HYBRIDNB_IMAGES_CACHE`` (default
``~/.cache/hybridnb/images``), outside the checkout, so a second run, or CI in a fresh
clone on the same machine, reuses the base tarball and the builder's layer cache: only
the layers after a changed file are rebuilt (the hybridnb wheel's, on most commits).

Without buildah (or docker, podman) or debootstrap these tests skip, naming the package;
under CI (``$CI`` set) they fail instead, since CI installs both (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hybridnb.errors import HybridnbError
from hybridnb.images.base import default_cache_dir
from hybridnb.images.build import checkout_version
from hybridnb.images.builder import Builder, ImageInfo, find_builder

if TYPE_CHECKING:
    from hybridnb.serve.model_bundle import Bundle

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("worker", "notebook", "serve")  # worker first: the others reuse its layers
#: A CPU torch wheel on local disk (machines of this kind, and CI's, have one).
WHEELS = Path("/opt/wheels")
#: The serving image's budget with CPU torch (issue 18).
SERVE_BUDGET_BYTES = 1_200_000_000


def missing(what: str) -> None:
    """Skip, or fail under CI, where every tool the image tests need is installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI installs it (.ci/run)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def mlp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A small MLP's bundle (8 inputs, 3 labels), as training writes one."""
    import torch

    from hybridnb.serve.model_bundle import bundle

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3)).eval()
    return bundle(model, torch.randn(2, 8), tmp_path_factory.mktemp("bundles") / "mlp",
                  name="mlp", labels=["a", "b", "c"])


@pytest.fixture(scope="session")
def images_cache() -> Path:
    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def builder(images_cache: Path) -> Iterator[Builder]:
    """buildah (or podman, docker) with an image store of the tests' own, kept in the
    cache: the user's images are never touched, and the layers survive between runs.

    The store is chosen with ``CONTAINERS_STORAGE_CONF`` (the containers tools' own
    setting), so ``hybridnb images`` run as a subprocess uses it too.
    """
    saved = os.environ.get("CONTAINERS_STORAGE_CONF")
    found: Builder | None = None
    why = ""
    for driver in ("overlay", "vfs"):  # overlay where the kernel has it: far faster
        conf = images_cache / f"storage-{driver}.conf"
        conf.write_text(f'[storage]\ndriver = "{driver}"\n'
                        f'graphroot = "{images_cache / ("storage-" + driver)}"\n'
                        f'runroot = "{images_cache / ("run-" + driver)}"\n')
        os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
        try:
            found = find_builder(os.environ.get("HYBRIDNB_IMAGES_BUILDER"))
            break
        except HybridnbError as exc:
            why = str(exc)
    if found is None:
        missing(f"no container builder works here: {why} (Debian: apt-get install buildah)")
    assert found is not None
    yield found
    found.prune()  # earlier builds whose tags moved: the cache stays bounded
    if saved is None:
        os.environ.pop("CONTAINERS_STORAGE_CONF", None)
    else:
        os.environ["CONTAINERS_STORAGE_CONF"] = saved


@pytest.fixture(scope="session")
def base_image(builder: Builder, images_cache: Path) -> str:
    """The local Debian base (``hybridnb images base``: debootstrap once, then the
    cached tarball)."""
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        missing("debootstrap is not installed (Debian: apt-get install debootstrap)")
    if os.geteuid() != 0:
        missing("making the local base image needs root (debootstrap)")
    start = time.monotonic()
    proc = _hybridnb("images", "base", "--builder", builder.name, "--cache-dir",
                     str(images_cache))
    assert proc.returncode == 0, f"hybridnb images base failed:\n{proc.stderr[-4000:]}"
    TIMINGS["base_seconds"] = round(time.monotonic() - start, 1)
    ref = proc.stdout.strip().splitlines()[-1]
    assert builder.exists(ref), ref
    return ref


TIMINGS: dict[str, Any] = {}


def _hybridnb(*args: str, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    """``hybridnb ARGS`` of this checkout, with the built-in configuration only (a user's
    ``images.registry`` would rename the images)."""
    nowhere = ROOT / "build" / "images" / "no-config"
    nowhere.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "HYBRIDNB_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(nowhere),
               HYBRIDNB_SYSTEM_CONFIG=str(nowhere / "hybridnb.yaml"))
    return subprocess.run([sys.executable, "-m", "hybridnb", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=nowhere.parent,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def image(builder: Builder, base_image: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Callable[[str], ImageInfo]]:
    """``image(kind)``: the ``kind`` image, built once per session from the local base
    with ``hybridnb images build KIND --base BASE`` (torch from the local CPU wheel when
    there is one). Writes ``build/bench/images.json`` (sizes, build times) at the end."""
    built: dict[str, ImageInfo] = {}
    logs = tmp_path_factory.mktemp("image-logs")

    def get(kind: str) -> ImageInfo:
        if kind in built:
            return built[kind]
        args = ["images", "build", kind, "--base", base_image, "--builder", builder.name,
                "--json"]
        if any(WHEELS.glob("torch-*+cpu-*.whl")):
            args += ["--find-links", str(WHEELS)]
        start = time.monotonic()
        proc = _hybridnb(*args)
        seconds = time.monotonic() - start
        (logs / f"{kind}.log").write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (f"hybridnb {' '.join(args)} exited {proc.returncode}:"
                                      f"\n{proc.stderr[-6000:]}")
        (result,) = json.loads(proc.stdout)
        info = builder.inspect(result["ref"])
        TIMINGS[f"{kind}_seconds"] = round(seconds, 1)
        built[kind] = info
        return info

    yield get
    if built:
        _write_bench(builder, built)


def _write_bench(builder: Builder, built: dict[str, ImageInfo]) -> None:
    from hybridnb.fileio import atomic_write_json

    report = {"builder": builder.name,
              "storage": os.environ.get("CONTAINERS_STORAGE_CONF") or "the builder's default",
              "version": checkout_version(ROOT), "timings_seconds": TIMINGS,
              "images": {kind: {"ref": info.ref, "size_bytes": info.size_bytes,
                                "largest": LARGEST.get(kind, [])}
                         for kind, info in built.items()}}
    path = ROOT / "build" / "bench" / "images.json"
    atomic_write_json(path, report)
    SUMMARY[:] = [f"{kind:9s} {info.size_bytes / 1e6:7,.0f} MB  {info.ref}  (built in "
                  f"{TIMINGS.get(kind + '_seconds', 0):.0f} s)" for kind, info in built.items()]
    SUMMARY.append(f"base {TIMINGS.get('base_seconds', 0):.0f} s; written to {path}")


#: What takes the room in each image (filled by the size test): [(path, bytes)].
LARGEST: dict[str, list[tuple[str, int]]] = {}

#: Lines for the end of the test run (sizes and build times).
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("hybridnb images (unpacked sizes)")
        for line in SUMMARY:
            terminalreporter.write_line(line)
