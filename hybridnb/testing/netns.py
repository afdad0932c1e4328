"""Several "hosts" on one machine, made of Linux network namespaces.

A :class:`NetnsHosts` builds a bridge in the root namespace and one namespace per host,
joined to the bridge by a veth pair, all on a private /24 it picks so that concurrent
runs do not collide. The root namespace has an address on the bridge, so code in the
test process reaches every host directly. Only loopback and those addresses are used.

Everything here uses the standard library and ``ip``/``tc`` (iproute2); it needs root.

>>> from hybridnb.testing.netns import NetnsHosts, skip_reason
>>> if skip_reason() is None:                              # doctest: +SKIP
...     with NetnsHosts(2) as (a, b):
...         print(b.run(["python3", "-c", "print(1)"]).stdout)
1
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Union

from ..waiting import wait_until

Command = Union[str, Sequence[Union[str, "os.PathLike[str]"]]]

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PREFIX",
    "Command",
    "HostCommandError",
    "NetnsHost",
    "NetnsHosts",
    "available",
    "cleanup_stale",
    "ip",
    "leftovers",
    "skip_reason",
    "wait_for_port",
]

#: Names of everything a run creates start with this (plus a random run id).
DEFAULT_PREFIX = "hnb"
#: The bridge's alias records its owner, so :func:`cleanup_stale` spares live runs.
_ALIAS = "hybridnb-netns pid={pid}"
_IFNAMSIZ = 15  # Linux interface names are at most 15 bytes
_SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")


def ip(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` and return the completed process (text output captured)."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


@lru_cache(maxsize=1)
def skip_reason() -> str | None:
    """Why namespace hosts cannot be built here, or ``None`` when they can.

    Probes for real (adds and deletes a namespace and a bridge), once per process.

    >>> reason = skip_reason()
    >>> reason is None or isinstance(reason, str)
    True
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network-namespace hosts need root"
    if shutil.which("ip") is None:
        return "network-namespace hosts need iproute2 (`ip` not found)"
    probe = f"xnsprobe{os.getpid() % 1000000}"  # no run prefix: cleanup_stale spares it
    try:
        ip("netns", "add", probe)
        ip("netns", "del", probe)
        ip("link", "add", probe, "type", "bridge")
        ip("link", "del", probe)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        ip("netns", "del", probe, check=False)
        ip("link", "del", probe, check=False)
        return f"cannot create network namespaces or bridges: {exc}"
    return None


def available() -> bool:
    """Whether this machine can build namespace hosts (root, iproute2, a working probe).

    >>> isinstance(available(), bool)
    True
    """
    return skip_reason() is None


def wait_for_port(address: str, port: int, timeout: float = 20.0) -> None:
    """Block until a TCP connection to ``address:port`` (from this namespace) succeeds.

    Raises ``TimeoutError`` after ``timeout`` seconds.
    """
    def connects() -> bool:
        with socket.create_connection((address, port), timeout=1.0):
            return True

    try:
        wait_until(connects, timeout=timeout, interval=0.05, what=f"{address}:{port}")
    except TimeoutError as exc:
        raise TimeoutError(f"nothing listens on {address}:{port}: {exc}") from None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks already on an interface or in a route of the root namespace."""
    nets: list[ipaddress.IPv4Network] = []
    for link in json.loads(ip("-j", "-4", "addr").stdout or "[]"):
        for a in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network)
    for route in json.loads(ip("-j", "-4", "route").stdout or "[]"):
        if route.get("dst") not in (None, "default"):
            nets.append(ipaddress.IPv4Network(route["dst"], strict=False))
    return nets


def _pick_subnet(avoid: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A random free /24 of 10.213.0.0/16 (random, so concurrent runs rarely race).

    Drawn from the OS, not ``random``: a test that seeds ``random`` must not make two
    concurrent runs draw the same subnet.
    """
    free = [n for n in _SUPERNET.subnets(new_prefix=24) if not any(n.overlaps(u) for u in avoid)]
    if not free:
        raise RuntimeError(f"no free /24 left in {_SUPERNET}")
    return secrets.choice(free)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so setup and teardown are not cut in half.

    Only a Python-level handler (normally the one raising ``KeyboardInterrupt``) is
    deferred, and it is called afterwards; an ignored or default SIGINT is left alone.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    pending: list[tuple[int, Any]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        previous(*pending[0])


class HostCommandError(subprocess.CalledProcessError):
    """A command run in a host failed; unlike its base class, ``str()`` shows stderr."""

    def __str__(self) -> str:
        tail = (self.stderr or self.stdout or "").strip()[-2000:]
        return f"{super().__str__()}\n{tail}" if tail else super().__str__()


class NetnsHost:
    """One host: a network namespace with ``lo`` and ``eth0`` (``address``) up.

    Made by :class:`NetnsHosts`; the file system, users and pids are shared with the
    root namespace, only the network is the host's own.

    Examples
    --------
    >>> a.run(["ip", "-br", "addr", "show", "eth0"]).stdout    # doctest: +SKIP
    'eth0@if12  UP  10.213.7.11/24 ...'
    >>> sched = a.popen(["dask", "scheduler", "--host", a.address])  # doctest: +SKIP
    """

    def __init__(self, name: str, address: str, veth: str, prefixlen: int,
                 workdir: Path) -> None:
        self.name = name
        self.address = address
        #: The root-namespace end of this host's veth pair (attached to the bridge).
        self.veth = veth
        self.prefixlen = prefixlen
        self.workdir = workdir
        self.logs: list[Path] = []
        self._procs: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"<NetnsHost {self.name} {self.address}>"

    def command(self, cmd: Command) -> list[str]:
        """The argv that runs ``cmd`` in this host (a ``str`` runs under ``sh -c``)."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [os.fspath(c) for c in cmd]
        return ["ip", "netns", "exec", self.name, *argv]

    @staticmethod
    def _env(env: Mapping[str, str] | None) -> dict[str, str] | None:
        # An overlay on our own environment: a bare env would lose PATH, HOME, venvs.
        return None if env is None else {**os.environ, **env}

    def run(self, cmd: Command, *, check: bool = True, timeout: float | None = 60,
            env: Mapping[str, str] | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in this host to completion; output captured as text by default.

        ``env`` adds to (does not replace) the current environment. Raises
        :class:`HostCommandError` on a non-zero exit when ``check``.
        """
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        argv = self.command(cmd)
        proc = subprocess.run(argv, timeout=timeout, env=self._env(env), **kwargs)
        if check and proc.returncode != 0:
            raise HostCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def popen(self, cmd: Command, *, env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a long-lived ``cmd`` in this host; it is stopped at teardown.

        Unless ``stdout``/``stderr`` are given, both go to a log file in ``workdir``
        (listed in ``logs``; see :meth:`log_text`). ``env`` adds to the environment.
        """
        kwargs.setdefault("start_new_session", True)  # Ctrl-C goes to us, not to them
        log: IO[bytes] | None = None
        if "stdout" not in kwargs and "stderr" not in kwargs:
            path = self.workdir / f"{self.name}-{len(self.logs)}.log"
            self.logs.append(path)
            log = open(path, "wb")  # noqa: SIM115 - the child keeps its own copy
            kwargs.update(stdout=log, stderr=subprocess.STDOUT)
        try:
            proc = subprocess.Popen(self.command(cmd), env=self._env(env), **kwargs)
        finally:
            if log is not None:
                log.close()
        self._procs.append(proc)
        return proc

    def log_text(self) -> str:
        """Everything the processes started by :meth:`popen` wrote to their logs."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}"
                         for p in self.logs if p.exists())

    def pids(self) -> list[int]:
        """Every process now in this host's namespace, whoever started it."""
        out = ip("netns", "pids", self.name, check=False).stdout
        return [int(w) for w in out.split() if w.isdigit()]

    def kill_all(self, grace: float = 3.0) -> None:
        """SIGTERM every process in the namespace, SIGKILL after ``grace`` s, reap ours."""
        def gone() -> bool:
            for p in self._procs:
                p.poll()  # reap our own children so they stop counting
            return not self.pids()

        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            try:
                wait_until(gone, timeout=wait, interval=0.05, ignore=(),
                           what=f"the processes of {self.name}")
                break
            except TimeoutError:
                pids = self.pids()
        else:
            logger.warning("processes %s in %s survived SIGKILL", pids, self.name)
        for p in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=1.0)
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()

    def rate_limit(self, mbit: float, *, burst_kb: int = 64, latency_ms: int = 100) -> None:
        """Cap traffic into and out of this host at ``mbit`` Mbit/s with ``tc tbf``."""
        spec = ["root", "tbf", "rate", f"{mbit}mbit", "burst", f"{burst_kb}kb",
                "latency", f"{latency_ms}ms"]
        subprocess.run(["tc", "qdisc", "replace", "dev", self.veth, *spec],
                       check=True, capture_output=True)
        self.run(["tc", "qdisc", "replace", "dev", "eth0", *spec])

    def clear_rate_limit(self) -> None:
        """Remove a limit set by :meth:`rate_limit` (no error when none is set)."""
        subprocess.run(["tc", "qdisc", "del", "dev", self.veth, "root"], capture_output=True)
        self.run(["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)


class NetnsHosts:
    """A bridge plus ``n`` namespace hosts on a private /24; a context manager.

    Parameters
    ----------
    n
        Number of hosts. Host ``i`` gets ``.11 + i`` on the subnet; the bridge gets ``.1``.
    prefix
        Start of every name created (namespaces, veths, bridge); at most 5 characters.
    workdir
        Where process logs go; a temporary directory (removed at close) when ``None``.
    grace
        Seconds between SIGTERM and SIGKILL when stopping processes at teardown.

    Examples
    --------
    >>> with NetnsHosts(2) as hosts:                       # doctest: +SKIP
    ...     a, b = hosts
    ...     proc = a.popen(["python3", "-m", "http.server", "--bind", a.address, "8000"])
    ...     wait_for_port(a.address, 8000)
    ...     url = f"http://{a.address}:8000/"
    ...     b.run(["python3", "-c", f"import urllib.request as u; u.urlopen({url!r})"])
    """

    def __init__(self, n: int = 2, *, prefix: str = DEFAULT_PREFIX,
                 workdir: str | os.PathLike[str] | None = None, grace: float = 3.0) -> None:
        if not 1 <= n <= 200:
            raise ValueError(f"n must be between 1 and 200, not {n}")
        if not prefix.isalnum() or not prefix.isascii() or len(prefix) > 5:
            raise ValueError(f"prefix must be 1-5 ASCII letters or digits, not {prefix!r}")
        self.n = n
        self.prefix = prefix
        #: Unique per run; every name created starts with it.
        self.run_id = prefix + secrets.token_hex(3)
        self.bridge = f"{self.run_id}br"
        self.grace = grace
        self.subnet: ipaddress.IPv4Network | None = None
        self.root_address: str | None = None
        self.hosts: list[NetnsHost] = []
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self._state = "new"  # new -> started -> closed

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> NetnsHosts:
        """Create the bridge and the hosts; on any failure, undo what was made."""
        if self._state != "new":
            raise RuntimeError(f"NetnsHosts is {self._state}; start it only once")
        reason = skip_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self._state = "started"
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            with _sigint_deferred():  # a half-made bridge is worse than a late Ctrl-C
                self._make_bridge()
                for i in range(self.n):
                    self._make_host(i)
        except BaseException:
            self.close()
            raise
        logger.info("netns hosts %s up on %s: %s", self.run_id, self.subnet,
                    ", ".join(f"{h.name}={h.address}" for h in self.hosts))
        return self

    def _make_bridge(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("link", "set", self.bridge, "alias", _ALIAS.format(pid=os.getpid()))
        for _ in range(20):
            subnet = _pick_subnet(_used_networks())
            root = str(next(subnet.hosts()))
            ip("addr", "add", f"{root}/24", "dev", self.bridge)
            # Another run may have picked the same /24 between our look and our add:
            # if anyone else now holds an address in it, step aside and pick again.
            others = [line for line in ip("-br", "-4", "addr").stdout.splitlines()
                      if not line.startswith(self.bridge + " ")
                      and any(ipaddress.ip_interface(w).ip in subnet
                              for w in line.split()[2:] if "/" in w)]
            if not others:
                self.subnet, self.root_address = subnet, root
                break
            ip("addr", "del", f"{root}/24", "dev", self.bridge, check=False)
        else:
            raise RuntimeError("could not claim a free /24 for the bridge")
        ip("link", "set", self.bridge, "up")

    def _make_host(self, i: int) -> None:
        assert self.subnet is not None and self.workdir is not None
        name, veth = f"{self.run_id}h{i}", f"{self.run_id}v{i}"
        assert len(veth) <= _IFNAMSIZ
        address = str(self.subnet.network_address + 11 + i)
        host = NetnsHost(name, address, veth, self.subnet.prefixlen, self.workdir)
        self.hosts.append(host)  # before creating anything, so close() sees it
        ip("netns", "add", name)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("link", "set", veth, "master", self.bridge, "up")
        host.run(["ip", "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0"])
        host.run(["ip", "link", "set", "eth0", "up"])
        host.run(["ip", "link", "set", "lo", "up"])

    def close(self) -> None:
        """Kill every process in every host, delete namespaces, veths and the bridge.

        Idempotent; each step runs even when an earlier one failed.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        with _sigint_deferred():
            for host in self.hosts:
                try:
                    host.kill_all(grace=self.grace)
                except Exception:  # keep going: the other hosts still need cleaning
                    logger.exception("killing processes in %s failed", host.name)
            # Delete veths explicitly: a deleted namespace is reaped asynchronously by
            # the kernel, and its veth would linger in the root namespace until then.
            for host in self.hosts:
                ip("link", "del", host.veth, check=False)
                ip("netns", "del", host.name, check=False)
            ip("link", "del", self.bridge, check=False)
            if self._own_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
        logger.info("netns hosts %s torn down", self.run_id)

    def __enter__(self) -> NetnsHosts:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_state", "closed") == "started":
            warnings.warn(f"NetnsHosts {self.run_id} was never closed", ResourceWarning,
                          stacklevel=1)

    # -- sequence of hosts -----------------------------------------------------------
    def __iter__(self) -> Iterator[NetnsHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, i: int) -> NetnsHost:
        return self.hosts[i]

    def __repr__(self) -> str:
        return (f"<NetnsHosts {self.run_id} {self._state} subnet={self.subnet} "
                f"root={self.root_address} hosts={[h.address for h in self.hosts]}>")

    def names(self) -> dict[str, list[str]]:
        """Every kernel object this run made: ``{"netns": [...], "links": [...]}``."""
        return {"netns": [h.name for h in self.hosts],
                "links": [self.bridge, *(h.veth for h in self.hosts)]}


def _netns_names() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def _links() -> list[dict[str, Any]]:
    return json.loads(ip("-j", "link").stdout or "[]")


def leftovers(prefix: str = DEFAULT_PREFIX) -> dict[str, list[str]]:
    """Namespaces and links whose names start with ``prefix`` (stale or live)."""
    return {"netns": [n for n in _netns_names() if n.startswith(prefix)],
            "links": [str(link["ifname"]) for link in _links()
                      if str(link["ifname"]).startswith(prefix)]}


def _live_runs(prefix: str) -> set[str]:
    """Run ids (bridge name less ``br``) whose owner process is alive."""
    owners: dict[str, int | None] = {}
    for attempt in range(2):
        for link in _links():
            name = str(link["ifname"])
            if name.startswith(prefix) and name.endswith("br"):
                alias = str(link.get("ifalias", ""))
                owners[name[:-2]] = int(alias.rpartition("pid=")[2]) if "pid=" in alias else None
        # A run sets its alias just after creating its bridge: look again before calling
        # an alias-less bridge stale, so a run starting right now is not torn down.
        if attempt or None not in owners.values():
            break
        time.sleep(0.5)
    return {run for run, pid in owners.items() if pid is not None and _pid_alive(pid)}


def cleanup_stale(prefix: str = DEFAULT_PREFIX, *, grace: float = 1.0) -> list[str]:
    """Remove what crashed runs left behind; return the names removed.

    A run is stale when its bridge is gone or its bridge's owner process is dead;
    live runs of other processes are left alone.

    >>> cleanup_stale("hnb") if available() else []        # doctest: +SKIP
    []
    """
    # Candidates first, owners second: a run's bridge (with its owner) exists before any
    # of its namespaces, so nothing listed here can belong to a run we fail to see.
    candidates = leftovers(prefix)
    live = _live_runs(prefix)
    removed: list[str] = []
    for kind in ("netns", "links"):
        for name in candidates[kind]:
            if any(name.startswith(run) for run in live):
                continue
            if kind == "netns":
                NetnsHost(name, "", "", 24, Path(tempfile.gettempdir())).kill_all(grace=grace)
            ip(*(("netns", "del") if kind == "netns" else ("link", "del")), name, check=False)
            removed.append(name)
    if removed:
        logger.warning("removed stale netns objects: %s", ", ".join(removed))
    return removed
