"""The backend registry, plug-ins, Kubernetes without a cluster, and the CLI."""

from __future__ import annotations

import json

import pytest

import hybridnb
from hybridnb.cli import main
from hybridnb.config import ConfigError, load_config
from hybridnb.errors import UsageError
from hybridnb.sites import (
    Backend,
    Started,
    get_backend,
    known_backends,
    register_backend,
    unregister_backend,
)
from hybridnb.sites.local import LocalBackend


def test_builtin_backends_resolve():
    for name in ("local", "scheduler", "ssh", "kubernetes"):
        assert get_backend(name).name == name
    assert {"local", "scheduler", "ssh", "kubernetes"} <= set(known_backends())
    with pytest.raises(UsageError, match=r"unknown backend 'sshh'.*did you mean 'ssh'"):
        get_backend("sshh")


class ThreadsBackend(LocalBackend):
    """A plug-in: one small module is a whole backend."""

    name = "threads"

    def start(self, *, name, n_workers, threads_per_worker, memory_limit, security):
        return super().start(name=name, n_workers=n_workers,
                             threads_per_worker=threads_per_worker,
                             memory_limit=memory_limit, security=security, processes=False)


def test_plugin_backend_is_accepted_by_config_and_runs(hybridnb_home, store):
    register_backend("threads", ThreadsBackend)
    try:
        config = load_config(overrides={"sites": {"lab": {
            "backend": "threads", "capacity": {"cpu": 1, "memory": "1GiB"}}}})
        with hybridnb.cluster("lab", n_workers=1, config=config, store=store) as c:
            assert c.backend == "threads"
            assert c.client.submit(sum, [1, 2]).result() == 3
            assert {w.site for w in c.workers()} == {"lab"}
        assert issubclass(ThreadsBackend, Backend)
    finally:  # a registration is process-wide: later tests (the docs) list the built-ins
        unregister_backend("threads")
    assert "threads" not in known_backends()


def test_base_backend_says_what_is_missing(hybridnb_home):
    config = load_config()
    b = Backend(config.site("local"), config)
    with pytest.raises(NotImplementedError):
        b.start(name="x", n_workers=1, threads_per_worker=1, memory_limit=None, security=None)
    with pytest.raises(UsageError, match="cannot lend workers"):
        b.worker_specs(1, 1, None, None)
    assert Started(address="tcp://x:1").owns


def test_kubernetes_site_without_context_is_a_clear_error(hybridnb_home, monkeypatch, store):
    monkeypatch.setenv("KUBECONFIG", str(hybridnb_home / "no-kubeconfig"))
    config = load_config(overrides={"sites": {"gke": {
        "tier": "public", "backend": "kubernetes", "kubernetes": {"namespace": "ml"},
        "tls": False, "capacity": {"cpu": 64, "memory": "256GiB"}}}})
    with pytest.raises(UsageError) as info:
        hybridnb.cluster("gke", config=config, store=store)
    assert "site 'gke'" in str(info.value) and "KUBECONFIG" in str(info.value)
    tls_config = load_config(overrides={"sites": {"gke": {
        "tier": "public", "backend": "kubernetes",
        "capacity": {"cpu": 64, "memory": "256GiB"}}}})
    with pytest.raises(UsageError, match=r"requires TLS.*not supported yet"):
        hybridnb.cluster("gke", config=tls_config, store=store)
    assert store.list() == []


def test_ssh_site_lends_specs_with_its_hosts(hybridnb_home):
    config = load_config(overrides={"sites": {"rack": {
        "backend": "ssh", "ssh": {"hosts": ["10.9.0.1", "10.9.0.2", "10.9.0.3"],
                                  "user": "ml", "key": "/k", "port": 2222},
        "capacity": {"cpu": 8, "memory": "8GiB"}}}})
    backend = get_backend("ssh")(config.site("rack"), config)
    specs = backend.worker_specs(3, 2, "1GiB", None)
    hosts = [s["options"]["address"] for s in specs.values()]
    assert hosts == ["10.9.0.2", "10.9.0.3", "10.9.0.2"]
    opts = next(iter(specs.values()))["options"]
    assert opts["kwargs"]["resources"]["site-rack"] >= 1
    assert opts["kwargs"]["host"] == "10.9.0.2" and opts["kwargs"]["nthreads"] == 2
    assert opts["connect_options"] == {"port": 2222, "username": "ml", "client_keys": ["/k"],
                                       "connect_timeout": 10.0, "login_timeout": 10.0}
    assert opts["start_timeout"] == 60.0
    assert backend.scheduler_spec(None)["options"]["address"] == "10.9.0.1"
    assert "port" not in backend.scheduler_spec(None)["options"]["kwargs"]  # any free one


def test_ssh_site_scheduler_port_is_fixed_when_configured(hybridnb_home):
    """Workers started elsewhere (a cloud bursting in) find the scheduler at a known port."""
    config = load_config(overrides={"sites": {"rack": {
        "backend": "ssh", "ssh": {"hosts": ["10.9.0.1"], "scheduler_port": 8786},
        "capacity": {"cpu": 1, "memory": "1GiB"}}}})
    spec = get_backend("ssh")(config.site("rack"), config).scheduler_spec(None)
    assert spec["options"]["kwargs"]["port"] == 8786
    with pytest.raises(ConfigError, match="scheduler_port"):
        load_config(overrides={"sites": {"rack": {
            "backend": "ssh", "ssh": {"hosts": ["10.9.0.1"], "scheduler_port": 70000},
            "capacity": {"cpu": 1, "memory": "1GiB"}}}})


def test_cli_cluster_up_list_connect_down(hybridnb_home, capsys):
    assert main(["cluster", "up", "local", "--workers", "1", "--name", "cli-test"]) == 0
    out = capsys.readouterr().out
    assert "cluster cli-test" in out and "tcp://" in out
    try:
        assert main(["cluster", "list", "--json"]) == 0
        (rec,) = json.loads(capsys.readouterr().out)
        assert rec["name"] == "cli-test" and rec["status"] == "running"
        with hybridnb.connect("cli-test") as c:
            assert c.client.submit(sum, [2, 3]).result() == 5
        assert main(["cluster", "up", "local", "--name", "cli-test"]) == 2
        assert "already called" in capsys.readouterr().err
    finally:
        assert main(["cluster", "down", "cli-test"]) == 0
    assert "stopped cli-test" in capsys.readouterr().out
    assert main(["cluster", "list"]) == 0
    assert "no clusters running" in capsys.readouterr().out
    assert main(["cluster", "down", "cli-test"]) == 2
    assert main(["cluster", "up", "nowhere"]) == 2
    assert "unknown site 'nowhere'" in capsys.readouterr().err


def test_gc_stops_a_detached_cluster_left_running(hybridnb_home, capsys):
    import psutil

    from hybridnb.cleanup import _stopper
    from hybridnb.state import StateStore, Status

    assert main(["cluster", "up", "local", "--workers", "1", "--name", "leftover"]) == 0
    capsys.readouterr()
    (rec,) = StateStore().list("cluster", active=True)
    assert len(rec.pids) >= 2  # the keeper and the worker's nanny
    assert main(["gc"]) == 0
    assert f"stopped: {rec.id}" in capsys.readouterr().out
    assert not any(p.alive() for p in rec.pids)
    assert StateStore().get(rec.id).status is Status.stopped
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "leftover" in " ".join(p.info["cmdline"] or [])]
    # remote clusters are stopped by the backend that started them
    k8s = rec.model_copy(update={"backend": "kubernetes"})
    assert _stopper(k8s).__qualname__ == "KubernetesBackend.stop_record"
