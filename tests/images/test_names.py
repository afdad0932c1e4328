"""Rendered manifests default to hybridnb's images, named in one place and configurable."""

from __future__ import annotations

import json

import pytest
import yaml

from hybridnb import __version__
from hybridnb.cli import main
from hybridnb.config import ConfigError, load_config
from hybridnb.errors import UsageError
from hybridnb.images import default_image
from hybridnb.k8s.dask import dask_cluster_manifest
from hybridnb.notebooks.k8s import notebook_job
from hybridnb.sites.kubernetes import kube_site

KUBE_SITE = {"backend": "kubernetes", "tier": "public", "kubernetes": {"namespace": "ml"},
             "capacity": {"cpu": 64, "memory": "256GiB"}}


def _config(**top):
    return load_config(overrides={"sites": {"gke": KUBE_SITE}, **top}, cwd="/nonexistent",
                       environ={})


def test_default_names_follow_the_version_and_variant():
    assert default_image("worker") == f"ghcr.io/hybridnb/worker:{__version__}"
    assert default_image("notebook", variant="cuda") == \
        f"ghcr.io/hybridnb/notebook:{__version__}-cuda"
    with pytest.raises(UsageError, match="did you mean 'serve'"):
        default_image("server")
    with pytest.raises(UsageError, match="variant"):
        default_image("worker", variant="rocm")
    with pytest.raises(UsageError, match="registry"):
        default_image("worker", registry="Registry With Spaces")


def test_a_kubernetes_site_runs_hybridnbs_worker_image_by_default(tmp_path):
    site = _config().site("gke")
    manifest = dask_cluster_manifest(kube_site(site), "demo", n_workers=1)
    for role in ("scheduler", "worker"):
        container = manifest["spec"][role]["spec"]["containers"][0]
        assert container["image"] == default_image("worker")
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                              "nbformat_minor": 5}))
    job = notebook_job(nb, {}, image=site.kubernetes.image)
    assert job.job["spec"]["template"]["spec"]["containers"][0]["image"] == \
        default_image("worker")


def test_images_registry_and_tag_move_every_default():
    config = _config(images={"registry": "registry.example.com:5000/ml", "tag": "team1"})
    assert config.site("gke").kubernetes.image == "registry.example.com:5000/ml/worker:team1"
    assert config.images.image("serve") == "registry.example.com:5000/ml/serve:team1"


def test_a_site_with_gpus_gets_the_cuda_variant_and_a_named_image_wins():
    gpu = {**KUBE_SITE, "capacity": {"cpu": 8, "memory": "64GiB", "gpu": 2}}
    named = {**KUBE_SITE, "kubernetes": {"image": "ghcr.io/me/mine:1"}}
    config = load_config(overrides={"sites": {"gpu": gpu, "named": named}},
                         cwd="/nonexistent", environ={})
    assert config.site("gpu").kubernetes.image == default_image("worker", variant="cuda")
    assert config.site("named").kubernetes.image == "ghcr.io/me/mine:1"


def test_a_kubernetes_site_without_its_block_still_gets_the_configured_image():
    bare = {k: v for k, v in KUBE_SITE.items() if k != "kubernetes"}
    config = load_config(overrides={"sites": {"bare": bare},
                                    "images": {"registry": "reg.local/x"}},
                         cwd="/nonexistent", environ={})
    assert config.site("bare").kubernetes.image == f"reg.local/x/worker:{__version__}"


def test_a_bad_registry_names_the_key():
    with pytest.raises(ConfigError, match=r"images\.registry"):
        _config(images={"registry": "registry.example.com/Team"})


def test_cli_renders_default_to_the_serve_image(hybridnb_home, mlp_bundle):
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(yaml.safe_dump(
        {"sites": {"gke": KUBE_SITE}, "images": {"registry": "reg.local/ml"}}))
    out = hybridnb_home / "deploy"
    assert main(["deploy", str(mlp_bundle.path), "--render", "kubernetes", "--out", str(out),
                 "--site", "gke", "--token", "t0k"]) == 0
    deployment = yaml.safe_load(next(out.glob("*-deployment-*.yaml")).read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"reg.local/ml/serve:{__version__}"
