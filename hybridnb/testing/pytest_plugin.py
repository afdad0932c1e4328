"""Opt-in pytest fixtures for several hosts on one machine (network namespaces).

Register the plugin in a ``conftest.py``::

    pytest_plugins = ["hybridnb.testing.pytest_plugin"]

then ask for the fixtures. Tests that use them skip, with the reason, where namespaces
cannot be made (not root, no iproute2, no sshd for :func:`sshd_host`), and are marked
``netns`` automatically so ``-m "not netns"`` deselects them. Nothing here is autouse.

>>> def test_two_hosts(netns_hosts):                       # doctest: +SKIP
...     a, b = netns_hosts(2)
...     b.run(["python3", "-c", "print('hello from', 'b')"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .netns import NetnsHosts, skip_reason
from .sshd import SSHDaemon, sshd_skip_reason

__all__ = ["netns_hosts", "sshd_host"]

#: Fixtures that build namespaces; tests using any of them get the ``netns`` marker.
NETNS_FIXTURES = frozenset({"netns_hosts", "sshd_host"})


def pytest_configure(config: pytest.Config) -> None:
    # Projects that run with --strict-markers need the marker known before it is added.
    config.addinivalue_line(
        "markers", "netns: needs root and iproute2 to build network-namespace hosts")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NETNS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("netns")


@pytest.fixture
def netns_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NetnsHosts]]:
    """A factory: ``netns_hosts(n, **kwargs)`` builds ``n`` hosts, torn down at test end.

    Returns a started :class:`~hybridnb.testing.netns.NetnsHosts` (a sequence of hosts,
    with ``.root_address`` on the bridge). Keyword arguments go to ``NetnsHosts``. Process
    logs stay under pytest's temporary directory for post-mortems.

    >>> def test_hosts(netns_hosts):                       # doctest: +SKIP
    ...     a, b, c = netns_hosts(3)
    """
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    made: list[NetnsHosts] = []

    def factory(n: int = 2, **kwargs: Any) -> NetnsHosts:
        kwargs.setdefault("workdir", tmp_path_factory.mktemp("netns"))
        hosts = NetnsHosts(n, **kwargs)
        made.append(hosts)
        return hosts.start()

    try:
        yield factory
    finally:
        for hosts in reversed(made):
            hosts.close()


@pytest.fixture
def sshd_host(netns_hosts: Callable[..., NetnsHosts],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHDaemon]:
    """An :class:`~hybridnb.testing.sshd.SSHDaemon` running in a fresh namespace host.

    ``sshd_host.address``/``.port``/``.client_key``, ``sshd_host.connect_options()`` for
    ``SSHCluster``, and ``sshd_host.host`` for running commands next to it.

    >>> def test_ssh(sshd_host):                           # doctest: +SKIP
    ...     SSHCluster([sshd_host.address] * 2, connect_options=sshd_host.connect_options())
    """
    reason = sshd_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    (host,) = netns_hosts(1)
    with SSHDaemon(host, workdir=tmp_path_factory.mktemp("sshd")) as daemon:
        yield daemon
