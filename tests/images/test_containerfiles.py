"""The Containerfiles' shape, the build context, the CLI's refusals, and the helpers
that run without a builder (fast: nothing is built here)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hybridnb.cli import main
from hybridnb.errors import UsageError
from hybridnb.images.base import make_base, slim
from hybridnb.images.build import checkout_version, local_torch, wheel_extensions
from hybridnb.images.builder import Builder

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "environments" / "images"
KINDS = ("notebook", "serve", "worker")
SHARED_END = "# ---- end of the shared lines ----"


def _instructions(text: str) -> list[str]:
    """The instructions of a Containerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            out.append(current.strip())
            current = ""
    return out


def _containerfile(kind: str) -> str:
    return (IMAGES / kind / "Containerfile").read_text()


def test_the_lines_down_to_torch_are_the_same_in_the_three_images():
    """Same instructions, same build arguments: builders reuse those layers (torch
    is most of every image) across the three builds."""
    shared = {kind: _instructions(_containerfile(kind).split(SHARED_END)[0])
              for kind in KINDS}
    # serve builds in a stage of its own; the stage's name is not part of a layer.
    shared["serve"] = [re.sub(r" AS build$", "", i) for i in shared["serve"]]
    assert shared["notebook"] == shared["worker"] == shared["serve"]
    assert shared["worker"][0] == "ARG BASE_IMAGE=python:3.11-slim-bookworm"
    assert any("TORCH_SPEC" in i and i.startswith("RUN") for i in shared["worker"])


@pytest.mark.parametrize("kind", KINDS)
def test_labels_come_last_and_the_user_is_numeric(kind):
    steps = _instructions(_containerfile(kind))
    last_layer = max(i for i, s in enumerate(steps) if s.startswith(("RUN", "COPY")))
    labels = [i for i, s in enumerate(steps) if s.startswith("LABEL")]
    # The revision label changes with each commit: after it, nothing may be rebuilt.
    assert labels and min(labels) > last_layer
    users = [s for s in steps if s.startswith("USER")]
    assert users and re.fullmatch(r"USER 1000:\d+", users[-1]), users


def test_the_worker_and_notebook_install_hybridnbs_requirements_file():
    for kind in ("worker", "notebook"):
        steps = _instructions(_containerfile(kind))
        assert "COPY environments/requirements.txt /tmp/hybridnb/requirements.txt" in steps
        assert any(s.endswith("pip install -r /tmp/hybridnb/requirements.txt") for s in steps)


def _dockerignore_allows(path: str) -> bool:
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("kind", KINDS)
def test_the_build_context_lets_in_what_the_containerfile_copies(kind):
    values = {"WHEEL_DIR": "build/images/dist", "HYBRIDNB_VERSION": "0.1.0"}
    for step in _instructions(_containerfile(kind)):
        if not step.startswith("COPY") or "--from=" in step:
            continue
        *sources, _ = step.split()[1:]
        for source in sources:
            source = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], source)
            assert _dockerignore_allows(source), f"{kind}: .dockerignore keeps out {source}"
    assert not _dockerignore_allows(".venv/bin/python")
    assert not _dockerignore_allows("tests/conftest.py")


def _pick(names: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    listed = tmp_path / "names.txt"
    listed.write_text(names)
    return subprocess.run([sys.executable, str(IMAGES / "pick_requirements.py"),
                           str(ROOT / "environments" / "requirements.txt"), str(listed)],
                          capture_output=True, text=True)


def test_the_serve_image_takes_its_requirements_from_the_shared_file(tmp_path):
    proc = _pick((IMAGES / "serve" / "packages.txt").read_text(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    picked = proc.stdout.splitlines()
    shared = (ROOT / "environments" / "requirements.txt").read_text().splitlines()
    assert set(picked) <= set(shared) and "torch>=2.10" in picked
    names = {re.split(r"[<>=;\[ ]", line)[0] for line in picked}
    assert not names & {"dask", "distributed", "jupyterlab", "papermill", "pandas"}
    # A name the shared file lacks stops the build instead of installing it unbounded.
    proc = _pick("torch\nno-such-project\n", tmp_path)
    assert proc.returncode == 2 and "no-such-project" in proc.stderr


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        record = "".join(f"{name},," + "\n" for name in [*files, "x.dist-info/RECORD"])
        zf.writestr("x-0.1.0.dist-info/RECORD", record)
    return path


def test_wheel_extensions_reads_the_wheels_record(tmp_path):
    data = "hybridnb-0.1.0.data/data"
    with_both = _wheel(tmp_path / "a.whl", {
        "hybridnb/__init__.py": b"",
        f"{data}/share/jupyter/labextensions/hybridnb/package.json": b"{}",
        f"{data}/share/jupyter/labextensions/hybridnb/static/remoteEntry.js": b"",
        f"{data}/share/jupyter/labextensions/@hybridnb/panels/package.json": b"{}",
        f"{data}/etc/jupyter/jupyter_server_config.d/hybridnb.json": json.dumps(
            {"ServerApp": {"jpserver_extensions": {"hybridnb.jupyter": True,
                                                   "off.one": False}}}).encode()})
    assert wheel_extensions(with_both) == {"labextensions": ["@hybridnb/panels", "hybridnb"],
                                           "server": ["hybridnb.jupyter"]}
    plain = _wheel(tmp_path / "b.whl", {"hybridnb/__init__.py": b""})
    assert wheel_extensions(plain) == {"labextensions": [], "server": []}


def test_a_local_cpu_torch_wheel_is_found(tmp_path):
    for name in ("torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "torch-2.14.0-cp311-cp311-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).write_bytes(b"")
    assert local_torch(tmp_path, "cpu") == "torch==2.13.0+cpu"
    assert local_torch(tmp_path, "cuda") is None


def test_slim_drops_caches_docs_and_the_build_hosts_files(tmp_path):
    root = tmp_path / "rootfs"
    for path in ("var/lib/apt/lists/deb_InRelease", "var/cache/apt/archives/x.deb",
                 "usr/share/doc/bash/README", "usr/share/doc/bash/copyright",
                 "usr/share/man/man1/ls.1", "usr/share/locale/de/LC_MESSAGES/x.mo",
                 "usr/share/locale/locale.alias", "etc/resolv.conf", "etc/hostname",
                 "dev/null", "var/log/dpkg.log", "usr/bin/python3",
                 "etc/apt/apt.conf.d/00x"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    slim(root)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["etc/apt/apt.conf.d/00x", "etc/apt/apt.conf.d/99hybridnb-slim",
                    "etc/dpkg/dpkg.cfg.d/hybridnb-slim", "etc/machine-id",
                    "usr/bin/python3", "usr/share/doc/bash/copyright",
                    "usr/share/locale/locale.alias"]


def test_no_debootstrap_is_a_usage_error_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    no_image = Builder("buildah", "/bin/false")  # has no image: the base must be made
    with pytest.raises(UsageError, match="apt-get install debootstrap"):
        make_base(no_image, cache_dir=tmp_path / "cache")


def test_cli_refuses_bad_input_before_looking_for_a_builder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no builder at all
    assert main(["images", "build", "server"]) == 2
    assert "did you mean 'serve'" in capsys.readouterr().err
    assert main(["images", "build", "worker", "--variant", "rocm"]) == 2
    assert main(["images", "build", "worker", "serve", "--tag", "x/y:1"]) == 2
    assert "one image" in capsys.readouterr().err


def test_cli_without_a_builder_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["images", "list"]) == 1
    err = capsys.readouterr().err
    assert "docker: not installed" in err and "apt-get install buildah" in err
    assert main(["images", "build", "worker", "--builder", "kaniko"]) == 2


FAKE_BUILDAH = """#!/bin/sh
# Records its arguments; answers inspect like buildah does (enough for build_image).
echo "$@" >> "$(dirname "$0")/calls.txt"
case "$1" in
  inspect) echo '{"FromImageID": "abc", "Docker": {"config": {"User": "1000:1000",
           "Labels": {"io.hybridnb.image.kind": "worker"}}}, "Manifest": "{}"}' ;;
esac
"""


def test_the_cuda_variant_takes_pypis_torch_and_its_own_tag(tmp_path):
    """Building it for real downloads ~3 GB of CUDA wheels: a stand-in for buildah
    records what build_image asks of it (the wheel is built for real)."""
    from hybridnb.images.build import build_image

    fake = tmp_path / "buildah"
    fake.write_text(FAKE_BUILDAH)
    fake.chmod(0o755)
    result = build_image("worker", builder=Builder("buildah", str(fake), (), "chroot"),
                         variant="cuda", registry="reg.local/ml", context=ROOT)
    (call,) = [c for c in (tmp_path / "calls.txt").read_text().splitlines()
               if c.startswith("build ")]
    args = call.split()
    version = checkout_version(ROOT)
    assert args[args.index("--tag") + 1] == result.image.ref == \
        f"reg.local/ml/worker:{version}-cuda"
    assert "TORCH_INDEX_URL=https://pypi.org/simple" in args
    assert "io.hybridnb.image.variant=cuda" in args and "VARIANT=cuda" in args
    assert args[args.index("--isolation") + 1] == "chroot" and "--layers" in args
    assert result.wheel.name == f"hybridnb-{version}-py3-none-any.whl"
    assert result.wheel.is_file()
