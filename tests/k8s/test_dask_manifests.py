"""DaskCluster, DaskAutoscaler and TLS Secret manifests, checked against the real schemas
(the Dask CRDs shipped in dask-kubernetes; Kubernetes' own via kubernetes-validate)."""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.k8s import MANAGED_BY_LABEL, SITE_LABEL
from hybridnb.k8s.dask import (
    TLS_MOUNT_PATH,
    dask_autoscaler_manifest,
    dask_cluster_manifest,
    tls_secret_manifest,
)
from hybridnb.k8s.validate import ManifestError, assert_valid, validate_manifest
from hybridnb.sites.kubernetes import kube_site
from hybridnb.testing import stop_processes

CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----\n"


def configured_gke(tier: str = "public", tls: bool | None = None, **kubernetes):
    options = {"namespace": "ml", "image": "ghcr.io/dask/dask:2024.8.0", **kubernetes}
    config = load_config(overrides={"sites": {"gke": {
        "tier": tier, "backend": "kubernetes", "kubernetes": options, "tls": tls,
        "capacity": {"cpu": 64, "memory": "256GiB"},
        "classifications": ["public", "internal"]}}})
    return config.site("gke")


def gke_site(tier: str = "public", tls: bool | None = None, **kubernetes):
    """The builders' view of the configured site (plain values, no configuration)."""
    return kube_site(configured_gke(tier, tls, **kubernetes))


@pytest.fixture
def gke(hybridnb_home):
    """A public Kubernetes site (TLS on by default) with sized workers."""
    return gke_site(worker_cpu=2, worker_memory="8GiB", service_account="dask-sa",
                     env={"EXTRA_PIP_PACKAGES": "pyarrow"})


@pytest.fixture
def private(hybridnb_home):
    """A private Kubernetes site that opts out of TLS (on by default), no sizes."""
    return gke_site(tier="private", tls=False)


def containers(manifest):
    spec = manifest["spec"]
    return spec["scheduler"]["spec"]["containers"][0], spec["worker"]["spec"]["containers"][0]


def env_of(container):
    return {item["name"]: item["value"] for item in container.get("env", [])}


def parse_resources(arg: str) -> dict[str, float]:
    # As `dask worker --resources` parses it (distributed/cli/dask_worker.py).
    return {k: float(v) for k, v in (pair.split("=") for pair in arg.replace(",", " ").split())}


def test_cluster_manifest_validates_against_the_shipped_crd(gke, private):
    for site in (gke, private):
        manifest = dask_cluster_manifest(site, "demo", n_workers=3)
        assert manifest["apiVersion"] == "kubernetes.dask.org/v1"
        assert manifest["kind"] == "DaskCluster"
        assert validate_manifest(manifest) == []
        assert assert_valid(manifest) is manifest


def test_broken_cluster_manifest_fails_with_paths(private):
    manifest = dask_cluster_manifest(private, "demo", n_workers=2)
    broken = copy.deepcopy(manifest)
    broken["spec"]["worker"]["replicas"] = "two"
    broken["spec"]["worker"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    broken["spec"]["schedulr"] = {}
    problems = {p.path: p.message for p in validate_manifest(broken)}
    assert problems == {
        "$.spec.worker.replicas": "'two' is not of type 'integer'",
        "$.spec.worker.spec.containers[0].imagePullPolcy":
            "unknown field 'imagePullPolcy' (did you mean 'imagePullPolicy'?)",
        "$.spec.schedulr": "unknown field 'schedulr' (did you mean 'scheduler'?)",
    }
    with pytest.raises(ManifestError, match=r"\$\.spec\.worker\.replicas") as info:
        assert_valid(broken)
    assert isinstance(info.value, UsageError)
    assert len(info.value.problems) == 3
    assert all(p.resource == "DaskCluster/demo" for p in info.value.problems)


def test_quantities_must_be_strings_as_the_crd_says(private):
    # The Dask CRDs type quantities as strings; the API server rejects a bare number.
    manifest = dask_cluster_manifest(private, "demo", n_workers=1,
                                     resources={"limits": {"cpu": 2}})
    problems = validate_manifest(manifest)
    assert [p.path for p in problems] == ["$.spec.worker.spec.containers[0].resources.limits.cpu"]


def test_site_options_land_where_expected(gke):
    manifest = dask_cluster_manifest(gke, "demo", n_workers=4, env={"FOO": "bar"},
                                     labels={"team": "vision"})
    meta = manifest["metadata"]
    assert meta["name"] == "demo" and meta["namespace"] == "ml"
    assert meta["labels"] == {MANAGED_BY_LABEL: "hybridnb", SITE_LABEL: "gke", "team": "vision"}
    assert manifest["spec"]["worker"]["replicas"] == 4
    scheduler, worker = containers(manifest)
    for container in (scheduler, worker):
        assert container["image"] == "ghcr.io/dask/dask:2024.8.0"
        assert env_of(container)["EXTRA_PIP_PACKAGES"] == "pyarrow"
        assert env_of(container)["FOO"] == "bar"
    for pod in ("scheduler", "worker"):
        assert manifest["spec"][pod]["spec"]["serviceAccountName"] == "dask-sa"
    assert worker["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"},
                                   "limits": {"memory": "8Gi"}}
    assert "resources" not in scheduler
    # distributed >= 2026.6 has no dask-scheduler/dask-worker scripts.
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    assert worker["args"][:2] == ["dask", "worker"]
    args = worker["args"]
    assert args[args.index("--nthreads") + 1] == "2"
    assert args[args.index("--memory-limit") + 1] == str(8 * 2**30)
    assert validate_manifest(manifest) == []


def test_workers_carry_the_site_resources(gke):
    from hybridnb.resource_tags import site_resource, worker_resources

    _, worker = containers(dask_cluster_manifest(gke, "demo", n_workers=1))
    args = worker["args"]
    tags = parse_resources(args[args.index("--resources") + 1])
    assert tags == dict(gke.resources) == worker_resources(configured_gke())
    assert site_resource("gke") == "site-gke" and tags["site-gke"] >= 1
    assert {"data-public", "data-internal"} <= set(tags)

    _, worker = containers(dask_cluster_manifest(gke, "demo", n_workers=1,
                                                 dask_resources={"site-gke": 1, "GPU": 2}))
    args = worker["args"]
    assert parse_resources(args[args.index("--resources") + 1]) == {"site-gke": 1, "GPU": 2}


def test_explicit_resources_override_the_site(gke):
    requests = {"requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}
    manifest = dask_cluster_manifest(gke, "demo", n_workers=1, resources=requests,
                                     scheduler_resources={"requests": {"cpu": "1"}})
    scheduler, worker = containers(manifest)
    assert worker["resources"] == requests
    assert scheduler["resources"] == {"requests": {"cpu": "1"}}
    assert validate_manifest(manifest) == []


def test_tls_mounts_the_secret(gke):
    manifest = dask_cluster_manifest(gke, "demo", n_workers=2)  # public site: TLS on
    for pod in ("scheduler", "worker"):
        spec = manifest["spec"][pod]["spec"]
        assert spec["volumes"] == [{"name": "hybridnb-tls", "secret": {"secretName": "demo-tls"}}]
        container = spec["containers"][0]
        assert container["volumeMounts"] == [
            {"name": "hybridnb-tls", "mountPath": TLS_MOUNT_PATH, "readOnly": True}]
        assert container["args"][-2:] == ["--protocol", "tls"]
        env = env_of(container)
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == f"{TLS_MOUNT_PATH}/ca.crt"
        for role in ("SCHEDULER", "WORKER", "CLIENT"):
            assert env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] == f"{TLS_MOUNT_PATH}/tls.crt"
            assert env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] == f"{TLS_MOUNT_PATH}/tls.key"
    scheduler, worker = containers(manifest)
    # Without it the operator would point workers at tcp://, which a TLS scheduler refuses.
    assert env_of(worker)["DASK_SCHEDULER_ADDRESS"] == \
        "tls://demo-scheduler.ml.svc.cluster.local:8786"
    assert "DASK_SCHEDULER_ADDRESS" not in env_of(scheduler)
    assert validate_manifest(manifest) == []

    named = dask_cluster_manifest(gke, "demo", n_workers=1, tls_secret="shared-certs")
    assert named["spec"]["worker"]["spec"]["volumes"][0]["secret"]["secretName"] == "shared-certs"


def _run_container(container, tls_dir: Path, *, replace: dict[str, str], append: list[str],
                   env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run a container's command here as the kubelet would: its env, ``$(VAR)`` expanded,
    the Secret's files at ``tls_dir``; ``replace``/``append`` keep it on loopback."""
    container_env = {k: v.replace(TLS_MOUNT_PATH, str(tls_dir))
                     for k, v in env_of(container).items()}
    args = [replace.get(a, a).replace("$(DASK_WORKER_NAME)", "demo-default-worker-0")
            for a in container["args"]]
    assert args[0] == "dask"  # the image's `dask` command; here, the venv's
    args[0] = str(Path(sys.executable).with_name("dask"))
    return subprocess.Popen([*args, *append], env={**os.environ, **container_env, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_container_commands_form_a_tls_cluster(gke, tmp_path):
    """The pods' scheduler and worker commands, run with real distributed: they speak TLS
    with the mounted certificates, and the worker carries the site's resources."""
    import json
    import shutil
    import time

    from distributed import Client

    from hybridnb.sites.security import from_files, temporary

    tls_dir = tmp_path / "tls"
    temporary(tls_dir)  # self-signed: the certificate is its own CA
    shutil.copy(tls_dir / "tls.crt", tls_dir / "ca.crt")
    scheduler, worker = containers(dask_cluster_manifest(gke, "demo", n_workers=1))
    scheduler_file = tmp_path / "scheduler.json"
    procs = []
    try:
        # Ports and the scheduler file are test-only: in the pod, the Service names them.
        procs.append(_run_container(
            scheduler, tls_dir, replace={"0.0.0.0": "127.0.0.1"},
            append=["--port", "0", "--dashboard-address", "127.0.0.1:0",
                    "--scheduler-file", str(scheduler_file)]))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert procs[0].poll() is None, "the scheduler command exited"
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        procs.append(_run_container(
            worker, tls_dir, replace={"8788": "127.0.0.1:0"}, append=["--host", "127.0.0.1"],
            env={"DASK_SCHEDULER_ADDRESS": address}))  # the pod's names the Service
        security = from_files(tls_dir / "ca.crt", tls_dir / "tls.crt", tls_dir / "tls.key")
        with Client(address, security=security, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            [info] = client.scheduler_info(n_workers=-1)["workers"].values()
            assert info["name"] == "demo-default-worker-0"
            assert info["resources"]["site-gke"] >= 1 and info["nthreads"] == 2
            assert info["memory_limit"] == 8 * 2**30
            future = client.submit(sum, [1, 2], resources={"site-gke": 1})
            assert future.result(timeout=30) == 3
    finally:
        stop_processes(*reversed(procs))


def test_tls_follows_the_site_unless_overridden(private, gke):
    plain = dask_cluster_manifest(private, "demo", n_workers=1)
    scheduler, worker = containers(plain)
    assert "volumes" not in plain["spec"]["worker"]["spec"]
    assert "--protocol" not in worker["args"] and "--protocol" not in scheduler["args"]
    assert not any(k.startswith("DASK_DISTRIBUTED__COMM__TLS") for k in env_of(worker))
    assert "volumes" in dask_cluster_manifest(private, "demo", n_workers=1,
                                              tls=True)["spec"]["worker"]["spec"]
    assert "volumes" not in dask_cluster_manifest(gke, "demo", n_workers=1,
                                                  tls=False)["spec"]["worker"]["spec"]


def test_no_nulls_and_defaults_from_dask_config(private):
    import dask.config

    manifest = dask_cluster_manifest(private, "demo", n_workers=1)
    _, worker = containers(manifest)
    assert "env" not in worker and "resources" not in worker  # make_cluster_spec's None
    with dask.config.set({"kubernetes.count.start": 5}):
        assert dask_cluster_manifest(private, "demo")["spec"]["worker"]["replicas"] == 5
    spec = dask_cluster_manifest(private, "demo", n_workers=0, idle_timeout=60,
                                 scheduler_service_type="LoadBalancer")["spec"]
    assert spec["idleTimeout"] == 60 and spec["scheduler"]["service"]["type"] == "LoadBalancer"


@pytest.mark.parametrize("name", ["Demo", "my_cluster", "-demo", "x" * 54, ""])
def test_bad_cluster_names_are_usage_errors(private, name):
    with pytest.raises(UsageError, match="invalid cluster name") as info:
        dask_cluster_manifest(private, name, n_workers=1)
    assert repr(name) in str(info.value)


def test_bad_inputs_are_usage_errors(hybridnb_home, private):
    with pytest.raises(UsageError, match=r"namespace of site 'gke'.*'ML_Team'"):
        dask_cluster_manifest(gke_site(namespace="ML_Team"), "demo", n_workers=1)
    with pytest.raises(UsageError, match="n_workers"):
        dask_cluster_manifest(private, "demo", n_workers=-1)
    local = load_config().site("local")
    with pytest.raises(UsageError, match="'local' backend"):
        kube_site(local)


def test_autoscaler(gke):
    manifest = dask_autoscaler_manifest("demo", 1, 10, site=gke)
    assert manifest["metadata"] == {"name": "demo", "namespace": "ml",
                                    "labels": {MANAGED_BY_LABEL: "hybridnb", SITE_LABEL: "gke"}}
    assert manifest["spec"] == {"cluster": "demo", "minimum": 1, "maximum": 10}
    assert validate_manifest(manifest) == []
    assert dask_autoscaler_manifest("demo", 0, 0, namespace="ops")["metadata"]["namespace"] == "ops"
    with pytest.raises(UsageError, match="minimum"):
        dask_autoscaler_manifest("demo", 5, 2)
    with pytest.raises(UsageError, match="maximum"):
        dask_autoscaler_manifest("demo", 0, 2.5)  # type: ignore[arg-type]


def test_tls_secret(hybridnb_home):
    secret = tls_secret_manifest("demo-tls", "ml", CERT, KEY.encode(), CERT,
                                 labels={SITE_LABEL: "gke"})
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.key"]).decode() == KEY
    assert base64.b64decode(secret["data"]["ca.crt"]).decode() == CERT
    assert secret["metadata"]["labels"][SITE_LABEL] == "gke"
    assert validate_manifest(secret) == []  # kubernetes-validate, strict
    with pytest.raises(UsageError, match="key_pem is not PEM"):
        tls_secret_manifest("demo-tls", "ml", CERT, "/path/to/tls.key", CERT)
    with pytest.raises(UsageError, match="'Demo'"):
        tls_secret_manifest("Demo", "ml", CERT, KEY, CERT)


def test_importing_the_package_stays_cheap():
    code = ("import sys, hybridnb.k8s; print(sorted(m for m in ('yaml', 'pydantic', 'dask', "
            "'dask_kubernetes', 'jsonschema', 'kubernetes_validate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def _kubeconfig() -> str | None:
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return next((str(Path(p).resolve()) for p in paths if Path(p).is_file()), None)


KUBECONFIG = _kubeconfig()


@pytest.mark.k8s
@pytest.mark.skipif(KUBECONFIG is None,
                    reason="needs a live cluster: KUBECONFIG does not point to an existing file")
def test_server_side_dry_run(hybridnb_home):
    """The API server accepts the manifests (dry run, strict field validation)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    namespace = os.environ.get("HYBRIDNB_K8S_NAMESPACE", "default")
    site = gke_site(tier="public", namespace=namespace, worker_cpu=1, worker_memory="2GiB")
    api = config.new_client_from_config(config_file=KUBECONFIG)
    secret = tls_secret_manifest("hybridnb-test-tls", namespace, CERT, KEY, CERT)
    client.CoreV1Api(api).create_namespaced_secret(
        namespace, secret, dry_run="All", field_validation="Strict")
    custom = client.CustomObjectsApi(api)
    for manifest, plural in (
            (dask_cluster_manifest(site, "hybridnb-test", n_workers=1,
                                   tls_secret="hybridnb-test-tls"), "daskclusters"),
            (dask_autoscaler_manifest("hybridnb-test", 0, 2, site=site), "daskautoscalers")):
        try:
            custom.create_namespaced_custom_object(
                "kubernetes.dask.org", "v1", namespace, plural, manifest,
                dry_run="All", field_validation="Strict")
        except ApiException as exc:
            if exc.status == 404:
                pytest.skip("the Dask operator's CRDs are not installed in this cluster")
            raise
