"""The three images, built for real from the local base (``hybridnb images base``,
``hybridnb images build``), and run: a worker that imports and computes, a server that
answers KServe v1 and OIP v2 from the host, a notebook server with hybridnb's extensions.

Marked ``images``: minutes when cold (debootstrap, pip), about a minute when the cache
is warm (see conftest.py). CI runs them (.ci/run installs buildah and debootstrap).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from hybridnb.images import default_image
from hybridnb.images.build import WHEEL_DIR, checkout_version, wheel_extensions
from hybridnb.images.builder import (
    KIND_LABEL,
    REVISION_LABEL,
    VARIANT_LABEL,
    VERSION_LABEL,
    Container,
)
from hybridnb.k8s.pods import RUN_AS_USER
from hybridnb.processes import free_port
from hybridnb.serve.auth import TOKEN_ENV
from hybridnb.serve.render import PORT, kubernetes_manifests
from hybridnb.testing.waiting import stop_processes, wait_until

from .conftest import KINDS, LARGEST, ROOT, SERVE_BUDGET_BYTES, _hybridnb

pytestmark = [pytest.mark.images, pytest.mark.slow, pytest.mark.timeout(3600)]
VERSION = checkout_version(ROOT)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(container: Container, cmd: list[str], timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(container.argv(cmd), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_worker_imports_hybridnb_torch_and_distributed_and_computes(builder, image):
    info = image("worker")
    with builder.container(info.ref) as c:
        proc = run(c, ["python", "-c", "import os, hybridnb, torch, distributed; "
                       "print(hybridnb.__version__, torch.__version__, os.getuid())"])
        assert proc.returncode == 0, proc.stderr
        version, torch_version, uid = proc.stdout.split()
        assert (version, uid) == (VERSION, str(RUN_AS_USER))
        assert torch_version.endswith("+cpu")  # the CPU build, not PyPI's CUDA one
        proc = run(c, ["dask", "worker", "--help"])
        assert proc.returncode == 0 and "--nthreads" in proc.stdout, proc.stderr
        # What a DaskCluster pod does, in one process tree: a worker computes with torch.
        code = ("from distributed import Client, LocalCluster\n"
                "import torch\n"
                "with LocalCluster(n_workers=1, threads_per_worker=1,\n"
                "                  dashboard_address=None) as cluster, Client(cluster) as c:\n"
                "    print(c.submit(lambda: float(torch.ones(3).sum())).result())\n")
        proc = run(c, ["python", "-c", code])
        assert proc.returncode == 0 and proc.stdout.strip().endswith("3.0"), proc.stderr


def _changed_outside_tmp(builder, container: Container, since: float) -> list[str]:
    """Paths in the container's tree written after ``since``, but for /tmp and what the
    runtime itself writes (the mounts, /etc/hosts, resolv.conf, hostname)."""
    mount = Path(builder.call("mount", container.name).stdout.strip())
    skip = {"tmp", "proc", "sys", "dev", "run", "models"}
    runtime = {"etc/hosts", "etc/resolv.conf", "etc/hostname", "etc"}
    try:
        changed = []
        for dirpath, dirnames, filenames in os.walk(mount):
            rel = Path(dirpath).relative_to(mount)
            if rel == Path("."):
                dirnames[:] = [d for d in dirnames if d not in skip]
            for name in filenames + dirnames:
                path = Path(dirpath) / name
                key = str(path.relative_to(mount))
                if key not in runtime and path.lstat().st_mtime > since:
                    changed.append("/" + key)
        return changed
    finally:
        builder.call("umount", container.name, check=False)


def test_serve_answers_kserve_v1_and_oip_v2_from_the_host(builder, image, mlp_bundle,
                                                          tmp_path):
    import numpy as np
    import torch

    info = image("serve")
    # The bundle as a user hands it to a container: readable by the image's user.
    bundle = tmp_path / "bundle"
    shutil.copytree(mlp_bundle.path, bundle)
    for path in [bundle, *bundle.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    token, port = secrets.token_hex(8), free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    expected = mlp_bundle(torch.from_numpy(x)).numpy()
    with builder.container(info.ref, volumes=[(str(bundle), "/models/bundle", True)],
                           env={TOKEN_ENV: token}, network_host=True) as c:
        since = time.time()
        log = (tmp_path / "serve.log").open("wb")
        server = subprocess.Popen(c.argv(["hybridnb", "serve", "/models/bundle", "--host",
                                          "127.0.0.1", "--port", str(port)]),
                                  stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        health = [arg.replace(f":{PORT}/", f":{port}/") for arg in info.healthcheck[1:]]
        try:
            wait_until(lambda: httpx.get(f"{base}/v2/health/ready").status_code == 200,
                       timeout=120, what="the server in the serve image",
                       ignore=(httpx.HTTPError,), alive=lambda: server.poll() is None)
            v1 = httpx.post(f"{base}/v1/models/mlp:predict", headers=auth,
                            json={"instances": x.tolist()})
            assert v1.status_code == 200, v1.text
            np.testing.assert_allclose(v1.json()["predictions"], expected, atol=1e-5)
            v2 = httpx.post(f"{base}/v2/models/mlp/infer", headers=auth, json={
                "inputs": [{"name": mlp_bundle.input.name, "shape": [3, 8], "datatype": "FP32",
                            "data": x.flatten().tolist()}]})
            assert v2.status_code == 200, v2.text
            out = v2.json()["outputs"][0]
            np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), expected,
                                       atol=1e-5)
            assert httpx.post(f"{base}/v1/models/mlp:predict",
                              json={"instances": x.tolist()}).status_code == 401
            # The image's HEALTHCHECK, aimed at this port, passes while it serves...
            assert run(c, health).returncode == 0
        finally:
            stop_processes(server)
            log.close()
        # ...and fails once it is gone.
        assert run(c, health, timeout=60).returncode != 0
        # A read-only root file system would do: the server wrote only under /tmp.
        assert _changed_outside_tmp(builder, c, since) == []


def test_notebook_serves_jupyterlab_with_hybridnbs_extensions(builder, image, tmp_path):
    info = image("notebook")
    wheel = ROOT / WHEEL_DIR / f"hybridnb-{VERSION}-py3-none-any.whl"
    expected = wheel_extensions(wheel)
    # The wheel carries both halves of the JupyterLab integration (make install built the
    # labextension's assets); the image must list both enabled.
    assert expected == {"labextensions": ["hybridnb-labextension"],
                        "server": ["hybridnb.jupyter"]}, expected
    token, port = secrets.token_hex(8), free_port()
    base = f"http://127.0.0.1:{port}"
    with builder.container(info.ref, network_host=True) as c:
        proc = run(c, ["jupyterhub-singleuser", "--version"])
        assert proc.returncode == 0, proc.stderr
        server_ext = run(c, ["jupyter", "server", "extension", "list"])
        lab_ext = run(c, ["jupyter", "labextension", "list"])
        assert server_ext.returncode == 0 and lab_ext.returncode == 0
        listed = ANSI.sub("", server_ext.stdout + server_ext.stderr)  # it prints colours
        for module in expected["server"]:
            assert re.search(rf"{re.escape(module)}\s+enabled", listed), listed
        listed = ANSI.sub("", lab_ext.stdout + lab_ext.stderr)
        for name in expected["labextensions"]:
            assert re.search(rf"{re.escape(name)}\s+v\S+\s+enabled", listed), listed
        log = (tmp_path / "lab.log").open("wb")
        lab = subprocess.Popen(c.argv([
            "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: httpx.get(f"{base}/api/status",
                                         params={"token": token}).status_code == 200,
                       timeout=120, what="JupyterLab in the notebook image",
                       ignore=(httpx.HTTPError,), alive=lambda: lab.poll() is None)
            page = httpx.get(f"{base}/lab", params={"token": token})
            assert page.status_code == 200 and "JupyterLab" in page.text
            if expected["server"]:
                sites = httpx.get(f"{base}/hybridnb/sites",
                                  headers={"Authorization": f"token {token}"})
                assert sites.status_code == 200, sites.text
        finally:
            stop_processes(lab)
            log.close()


@pytest.mark.parametrize("kind", KINDS)
def test_images_run_as_a_numeric_user_and_carry_their_labels(image, kind):
    info = image(kind)
    uid, _, gid = info.user.partition(":")
    assert uid == str(RUN_AS_USER) and gid.isdigit(), info.user  # runAsNonRoot can check it
    assert info.ref == default_image(kind)
    assert info.labels[VERSION_LABEL] == VERSION
    assert (info.labels[KIND_LABEL], info.labels[VARIANT_LABEL]) == (kind, "cpu")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert info.labels[REVISION_LABEL] == (head or "unknown")
    assert info.labels["org.opencontainers.image.source"].startswith("https://")


def test_image_commands_are_what_the_manifests_expect(image):
    deployment = kubernetes_manifests("mlp", image=image("serve").ref)[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert image("serve").cmd == container["command"]
    assert image("serve").healthcheck[0] == "CMD"
    assert f"127.0.0.1:{PORT}/v2/health/ready" in image("serve").healthcheck[-1]
    assert image("notebook").cmd == ["jupyterhub-singleuser"]


_SIZES = """\
import os, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
def du(p):
    if os.path.isfile(p) or os.path.islink(p):
        return os.lstat(p).st_size
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(p) for f in fs)
sizes = {name: du(os.path.join(site, name)) for name in os.listdir(site)}
sizes["(base image: /usr)"] = du("/usr")
for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:6]:
    print(size, name)
"""


def test_sizes_are_reported_and_the_serving_image_stays_small(builder, image):
    for kind in KINDS:
        info = image(kind)
        with builder.container(info.ref) as c:
            proc = run(c, ["python", "-c", _SIZES])
        assert proc.returncode == 0, proc.stderr
        LARGEST[kind] = [(name, int(size)) for size, name in
                         (line.split(" ", 1) for line in proc.stdout.splitlines())]
    serve = image("serve")
    assert serve.size_bytes <= SERVE_BUDGET_BYTES, (
        f"the serve image is {serve.size_bytes / 1e6:,.0f} MB, over its "
        f"{SERVE_BUDGET_BYTES / 1e6:,.0f} MB budget; largest: {LARGEST['serve']}")
    # No Dask, no JupyterLab in it: the slim image is the serving subset.
    names = {name for name, _ in LARGEST["serve"]}
    with builder.container(serve.ref) as c:
        proc = run(c, ["python", "-c", "import importlib.util as u; "
                       "print([m for m in ('dask', 'distributed', 'jupyterlab', "
                       "'papermill', 'pandas') if u.find_spec(m)])"])
    assert proc.stdout.strip() == "[]", (proc.stdout, names)


def test_images_list_shows_what_was_built(image):
    refs = {image(kind).ref for kind in KINDS}
    proc = _hybridnb("images", "list", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = {entry["ref"]: entry for entry in json.loads(proc.stdout)}
    assert refs <= set(listed), listed
    for ref in refs:
        assert listed[ref]["version"] == VERSION and listed[ref]["size_bytes"] > 0
