"""TLS by default wherever a site's processes listen beyond loopback, dashboards that
listen only where they should, and an opt-out that warns.

The multi-host cases (ssh sites, hybrid clusters, a local site on a real interface)
are in ``test_netns_sites.py``; these run on loopback.
"""

from __future__ import annotations

import os
import sys
import warnings
from urllib.parse import urlsplit

import pytest

import hybridnb
from hybridnb.cli.worker import worker_command
from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.sites.security import InsecureSiteWarning

from .conftest import listening

CAPACITY = {"cpu": 1, "memory": "1GiB"}


def site_config(**body):
    return load_config(overrides={"sites": {"s": {"capacity": CAPACITY, **body}}})


@pytest.mark.parametrize(("body", "tls"), [
    ({}, False),  # local: LocalCluster on 127.0.0.1
    ({"local": {"host": "127.0.0.1"}}, False),
    ({"local": {"host": "10.0.0.5"}}, True),  # a local site that workers of others join
    ({"local": {"host": "hub.example.org"}}, True),  # a name is not known to be loopback
    ({"backend": "ssh", "ssh": {"hosts": ["10.0.0.5", "10.0.0.6"]}}, True),
    ({"backend": "ssh", "ssh": {"hosts": ["localhost"]}}, False),
    ({"backend": "ssh", "ssh": {"hosts": ["127.0.0.1", "10.0.0.6"]}}, True),
    ({"backend": "scheduler", "scheduler": {"address": "tcp://10.0.0.5:8786"}}, True),
    ({"backend": "scheduler", "scheduler": {"address": "tcp://[::1]:8786"}}, False),
    ({"backend": "scheduler", "scheduler": {"address": "tcp://127.0.0.1:8786"}}, False),
    ({"backend": "kubernetes"}, True),
    ({"tier": "public"}, True),  # public and edge traffic leaves the private network
    ({"tier": "edge"}, True),
], ids=lambda v: str(v))
def test_tls_default_follows_where_processes_listen(hybridnb_home, body, tls):
    site = site_config(**{"tier": "private", **body}).site("s")
    assert site.tls is tls


def test_tls_false_is_kept_and_known_as_an_opt_out(hybridnb_home):
    site = site_config(backend="ssh", ssh={"hosts": ["10.0.0.5"]}, tls=False).site("s")
    assert site.tls is False and site.tls_opted_out and site.listens_beyond_loopback
    assert site_config(tls=True).site("s").tls is True


def test_local_site_is_plain_on_loopback_with_its_dashboard_on_loopback(hybridnb_home,
                                                                        store):
    """The embedded default binds every socket it opens to 127.0.0.1 — the dashboard
    included, which used to listen on all interfaces."""
    with hybridnb.cluster("local", n_workers=1, threads_per_worker=1, store=store) as c:
        assert c.scheduler_address.startswith("tcp://127.0.0.1:")
        link = urlsplit(c.dashboard_link)
        assert link.hostname == "127.0.0.1"
        assert listening(os.getpid(), link.port) == {("127.0.0.1", link.port)}
        import psutil

        for pid in [p.pid for p in c.record.pids]:  # the nanny and its worker process
            for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                assert {ip for ip, _ in listening(proc.pid)} <= {"127.0.0.1"}, proc


def test_threads_only_local_cluster_dashboard_link_is_where_it_listens(hybridnb_home, store):
    with hybridnb.cluster("local", n_workers=1, processes=False, store=store) as c:
        link = urlsplit(c.dashboard_link)
        assert link.hostname == "127.0.0.1"
        assert listening(os.getpid(), link.port) == {("127.0.0.1", link.port)}


def test_worker_joining_a_remote_plain_scheduler_is_refused_unless_opted_out(
        hybridnb_home, fresh_warnings):
    remote = "tcp://10.0.0.5:8786"
    for body in ({"backend": "scheduler", "scheduler": {"address": remote}},  # TLS default
                 {}):  # a loopback site: its default says nothing about another host
        config = site_config(**body)
        with pytest.raises(UsageError, match=r"site 's' requires TLS to join "
                                             r"tcp://10\.0\.0\.5:8786.*tls: false"):
            worker_command(remote, "s", config)
    config = site_config(backend="scheduler", scheduler={"address": remote}, tls=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cmd = worker_command(remote, "s", config)
        worker_command(remote, "s", config)  # once per site, not per call
    assert cmd[:4] == [sys.executable, "-m", "distributed.cli.dask_worker", remote]
    (warning,) = [w for w in seen if issubclass(w.category, InsecureSiteWarning)]
    text = str(warning.message)
    assert "site 's'" in text and "tls: false" in text and remote in text
    assert "run code as you" in text
    # loopback stays plain and quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        worker_command("tcp://127.0.0.1:8786", "s", site_config())
