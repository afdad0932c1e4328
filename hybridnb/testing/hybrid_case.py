"""The hybrid case on one machine: an on-prem site, a public cloud and an edge site.

:class:`HybridCase` builds three network-namespace hosts on a bridge
(:class:`~hybridnb.testing.netns.NetnsHosts`), rate-limited with ``tc tbf``:

- ``onprem``: Debian's sshd (:class:`~hybridnb.testing.sshd.SSHDaemon`); an ``ssh``
  site allowed ``pii``, whose records (the digits, as patients' scans) are on its disk;
- ``cloud``: a public ``scheduler`` site with a cost: its workers, started as a cloud
  starts them (``hybridnb worker ADDRESS --site cloud``), join the on-prem scheduler
  when the notebook bursts (:meth:`HybridCase.burst`);
- ``edge``: an edge site with small capacity behind a thin link, running the edge
  agent (:func:`hybridnb.serve.edge.start_agent`) that bundles are pushed to.

The private↔public links run at ``private_mbit`` (1 Gbit/s), the edge's at ``edge_mbit``
(20 Mbit/s). :meth:`HybridCase.config_dict` describes the three sites with those numbers;
:meth:`HybridCase.phase` measures each step's wall time and the bytes through each
host's link (the veth counters of the root namespace); :meth:`HybridCase.close` stops
everything, checks that no process is left in any host (``ip netns pids``) and removes
the hosts. Only loopback and the hosts' own addresses are contacted; it needs root.

>>> from hybridnb.testing.hybrid_case import HybridCase
>>> with HybridCase("build/case") as case:                       # doctest: +SKIP
...     config = case.config()
...     print(case.link_bytes()["edge"])
{'out': 0, 'in': 0}
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..fileio import atomic_write_text
from ..processes import spawn_detached
from .netns import NetnsHost, NetnsHosts, leftovers
from .sshd import SSHDaemon

if TYPE_CHECKING:
    import pandas as pd
    import psutil

    from ..config import HybridConfig
    from ..serve.edge import AgentProcess
    from ..sites import ClusterHandle

logger = logging.getLogger(__name__)

__all__ = ["EDGE_OPTIONS", "ROLES", "HybridCase", "Phase", "running_from"]

#: The hosts, in the order they are made (addresses .11, .12, .13 of the subnet).
ROLES = ("onprem", "cloud", "edge")
SCHEDULER_PORT = 8786
AGENT_PORT, FRONT_PORT = 8443, 8080
#: Short watches and quick stall detection: the case's rollouts take seconds.
EDGE_OPTIONS: dict[str, Any] = {"rollout": {"watch_s": 2, "stall_timeout_s": 3,
                                            "health_timeout_s": 120},
                                "buffer": {"sample_interval_s": 1}}

_PATIENTS = """\
import sys
from pathlib import Path
import numpy as np
from sklearn.datasets import load_digits
d = load_digits()
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
np.save(out / "scans.npy", np.asarray(d.images, dtype=np.float32))
np.save(out / "labels.npy", np.asarray(d.target, dtype=np.int64))
"""


@dataclass(frozen=True)
class Phase:
    """One step of the case: its wall time and the bytes through each host's link.

    ``bytes[role]`` is ``{"out": sent by the host, "in": received by it}``.
    """

    name: str
    seconds: float
    bytes: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, role: str) -> int:
        return sum(self.bytes.get(role, {}).values())


class HybridCase:
    """Three namespace hosts (``onprem``, ``cloud``, ``edge``) and what runs on them.

    Parameters
    ----------
    workdir:
        The hosts' disks (``workdir/onprem`` and so on; the file system is shared, only
        the network is each host's own), logs, the site configuration. Key material is
        removed at :meth:`close`; the rest stays for post-mortems.
    private_mbit, edge_mbit:
        Link rates of ``onprem``/``cloud`` and of ``edge`` (Mbit/s, both directions).
    prefix:
        Start of the names of the namespaces and links (at most 5 characters).
    """

    def __init__(self, workdir: str | os.PathLike[str], *, private_mbit: float = 1000.0,
                 edge_mbit: float = 20.0, prefix: str = "hcase", grace: float = 5.0) -> None:
        self.workdir = Path(workdir).expanduser().resolve()
        self.private_mbit = float(private_mbit)
        self.edge_mbit = float(edge_mbit)
        self.grace = grace
        self.net = NetnsHosts(len(ROLES), prefix=prefix, workdir=self.workdir / "logs",
                              grace=grace)
        self.hosts: dict[str, NetnsHost] = {}
        self.sshd: SSHDaemon | None = None
        self.agent: AgentProcess | None = None
        self.front_token = secrets.token_urlsafe(24)
        self.phases: list[Phase] = []
        self._cloud_workers: list[subprocess.Popen[Any]] = []
        self._reaper: int | None = None  # its pid
        self._cleanup: dict[str, Any] = {"left_running": {}, "netns_left": [],
                                         "links_left": []}
        self._state = "new"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> HybridCase:
        """Make the hosts, limit their links, start sshd and the edge agent."""
        if self._state != "new":
            raise RuntimeError(f"HybridCase is {self._state}; start it only once")
        self._state = "started"
        # A kernel whose cell failed still cleans its hosts when it exits.
        lifecycle.close_at_exit(self)
        try:
            self.net.start()
            self._start_reaper()
            self.hosts = dict(zip(ROLES, self.net.hosts, strict=True))
            for role in ("onprem", "cloud"):  # tbf needs a burst of at least rate/HZ
                self.hosts[role].rate_limit(self.private_mbit, burst_kb=2048)
            self.hosts["edge"].rate_limit(self.edge_mbit, burst_kb=64)
            for role in ROLES:
                self.disk(role).mkdir(parents=True, exist_ok=True)
            self.sshd = SSHDaemon(self.onprem, workdir=self.workdir / "keys" / "sshd").start()
            self._write_python_wrapper()
            self.onprem.run([sys.executable, "-c", _PATIENTS, str(self.records)],
                            timeout=120)
            self._start_agent()
            atomic_write_text(self.config_path, self.config_yaml())
        except BaseException:
            self.close()
            raise
        logger.info("%r", self)
        return self

    def _start_reaper(self) -> None:
        # A kernel may be killed before it has closed the case (papermill gives a kernel
        # a few seconds to exit after a failed cell): a process of its own then stops
        # every process in the hosts and removes them, once this one is gone.
        # Detached (not this process's child): it outlives a killed owner, and leaves no
        # zombie in a kernel that does close the case.
        self._reaper = spawn_detached(
            [sys.executable, "-m", __name__, self.net.run_id, str(os.getpid()),
             *map(str, self._secrets())], self.workdir / "logs" / "reaper.log")

    def _secrets(self) -> list[Path]:
        """Key material of the throw-away hosts, removed with them."""
        return [self.workdir / "keys", self.agent_dir / "tls", self.agent_dir / "token"]

    def _write_python_wrapper(self) -> None:
        # Processes started over SSH get sshd's environment, not ours: the wrapper gives
        # them this interpreter with the same code (PYTHONPATH) and state home.
        lines = ["#!/bin/sh"]
        for name in ("PYTHONPATH", "HYBRIDNB_HOME"):
            if os.environ.get(name):
                lines.append(f"export {name}={shlex.quote(os.environ[name])}")
        lines.append(f'exec {shlex.quote(sys.executable)} "$@"')
        atomic_write_text(self.python, "\n".join(lines) + "\n", mode=0o755)

    def _start_agent(self) -> None:
        from ..serve.edge import start_agent

        edge = self.edge
        self.agent = start_agent(self.agent_dir, site="edge",
                                 control=f"{edge.address}:{AGENT_PORT}",
                                 front=f"{edge.address}:{FRONT_PORT}",
                                 front_token=self.front_token, options=EDGE_OPTIONS,
                                 wrap=edge.command, log=self.workdir / "logs" / "edge-agent.log")

    def close(self) -> dict[str, Any]:
        """Stop everything, check every host is empty, remove the hosts; what was found.

        Returns ``left_running`` (per host, the processes still there after everything
        was stopped in order, killed then), ``netns_left`` and ``links_left`` (names of
        this run still in the kernel afterwards: empty lists when all went well).
        """
        if self._state == "closed":
            return self._cleanup
        self._state = "closed"
        lifecycle.forget(self)
        if self.agent is not None:
            code = self.agent.stop()
            if code not in (0, None):
                logger.warning("edge agent exited %s:\n%s", code, self.agent.log_tail())
        self._stop_cloud_workers()
        if self.sshd is not None:
            self.sshd.close()
        left: dict[str, list[str]] = {}
        deadline = time.monotonic() + self.grace
        for role, host in self.hosts.items():
            while host.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            if host.pids():
                left[role] = [_describe(pid) for pid in host.pids()]
        self.net.close()  # kills what is left, deletes namespaces, veths and the bridge
        rest = leftovers(self.net.run_id)
        _remove(self._secrets())  # the logs and disks stay for post-mortems
        if self._reaper is not None:  # nothing left for it to do
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._reaper, signal.SIGTERM)
            while _running(self._reaper) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        # Outside the hosts too: a process of the root namespace that names the case's
        # directory (its keys, its Python wrapper) is one of its own left behind.
        outside = [_describe(p.pid) for p in running_from(self.workdir)
                   if p.pid not in (os.getpid(), self._reaper)]
        if outside:
            left["outside"] = outside
        self._cleanup = {"left_running": left, "netns_left": rest["netns"],
                         "links_left": rest["links"]}
        return self._cleanup

    def __enter__(self) -> HybridCase:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_state", "closed") == "started":
            warnings.warn(f"{self!r} was never closed", ResourceWarning, stacklevel=1)

    def __repr__(self) -> str:
        hosts = ", ".join(f"{r}={h.address}" for r, h in self.hosts.items()) or "no hosts"
        return (f"<HybridCase {self._state} {hosts}; links {self.private_mbit:g}/"
                f"{self.edge_mbit:g} Mbit/s>")

    # -- where things are ------------------------------------------------------------

    @property
    def onprem(self) -> NetnsHost:
        return self.hosts["onprem"]

    @property
    def cloud(self) -> NetnsHost:
        return self.hosts["cloud"]

    @property
    def edge(self) -> NetnsHost:
        return self.hosts["edge"]

    def disk(self, role: str) -> Path:
        """The directory standing for ``role``'s own disk."""
        return self.workdir / role

    @property
    def records(self) -> Path:
        """Where the patients' records (pii) are on the on-prem disk."""
        return self.disk("onprem") / "records"

    @property
    def python(self) -> Path:
        return self.workdir / "bin" / "python"

    @property
    def agent_dir(self) -> Path:
        return self.disk("edge") / "agent"

    @property
    def config_path(self) -> Path:
        return self.workdir / "hybridnb.yaml"

    @property
    def cluster_name(self) -> str:
        """The name to give the on-prem cluster: its TLS files, which the cloud's workers
        use to join it, are under ``$HYBRIDNB_HOME/tls/NAME`` (one per run)."""
        return f"onprem-{self.net.run_id}"

    @property
    def scheduler_address(self) -> str:
        """Where the on-prem cluster's scheduler listens (and the cloud's workers join)."""
        return f"tls://{self.onprem.address}:{SCHEDULER_PORT}"

    @property
    def front_url(self) -> str:
        """The edge endpoint, as the centre reaches it across the edge's link."""
        return f"http://{self.edge.address}:{FRONT_PORT}"

    # -- configuration ---------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The three sites and two datasets, with the links' real rates."""
        from ..sites.factory import tls_dir

        assert self.sshd is not None and self.agent is not None
        tls = tls_dir(self.cluster_name)
        fast = {"bandwidth_mbps": self.private_mbit, "latency_ms": 0.5,
                "to": {"edge": {"bandwidth_mbps": self.edge_mbit, "latency_ms": 1.0}}}
        patients = sum(p.stat().st_size for p in self.records.glob("*.npy"))
        return {
            "sites": {
                "local": None,  # only the case's sites: the planner chooses among them
                "onprem": {
                    "tier": "private", "backend": "ssh",
                    "ssh": {"hosts": [self.onprem.address, self.onprem.address],
                            "user": "root", "key": self.sshd.client_key,
                            "port": self.sshd.port, "known_hosts": "ignore",
                            "python": str(self.python), "scheduler_port": SCHEDULER_PORT},
                    "capacity": {"cpu": 2, "memory": "8GiB"},
                    "cost": {"cpu_hour": 0.01},  # amortized hardware and power
                    "network": fast, "classifications": ["public", "internal", "pii"]},
                "cloud": {
                    "tier": "public", "backend": "scheduler",
                    "scheduler": {"address": self.scheduler_address, "timeout": 30,
                                  "tls_ca_file": str(tls / "tls.crt"),
                                  "tls_cert": str(tls / "tls.crt"),
                                  "tls_key": str(tls / "tls.key")},
                    "capacity": {"cpu": 64, "memory": "256GiB"},
                    "cost": {"cpu_hour": 0.048, "egress_gb": 0.09},
                    "network": fast, "classifications": ["public", "internal"]},
                "edge": {
                    "tier": "edge", "capacity": {"cpu": 1, "memory": "1GiB"},
                    "network": {"bandwidth_mbps": self.edge_mbit, "latency_ms": 1.0},
                    "classifications": ["public"],
                    "edge": {"agent": {"address": self.edge.address, "port": AGENT_PORT,
                                       "cert": str(self.agent.cert),
                                       "token_file": str(self.agent_dir / "token"),
                                       "front_host": self.edge.address,
                                       "front_port": FRONT_PORT},
                             "link": {"bandwidth_mbps": self.edge_mbit, "availability": 0.95,
                                      "max_outage_s": 3600},
                             **EDGE_OPTIONS}},
            },
            "datasets": {
                "patients": {"site": "onprem", "path": str(self.records / "scans.npy"),
                             "format": "npy", "classification": "pii", "size": patients},
            },
            "policies": {"placement": "private-first", "burst": True,
                         "scheduler_site": "onprem"},
        }

    def config_yaml(self) -> str:
        import yaml

        return ("# The hybrid case study's sites (hybridnb.testing.hybrid_case).\n"
                + yaml.safe_dump(self.config_dict(), sort_keys=False))

    def config(self) -> HybridConfig:
        """The configuration of the case (the project's layers under it)."""
        from ..config import load_config

        return load_config(self.config_path)

    # -- the cloud's workers ---------------------------------------------------------

    def burst(self, n: int = 2, *, config: HybridConfig | None = None) -> list[str]:
        """Start ``n`` cloud workers joining the on-prem scheduler; their names.

        They are the cloud's own processes, started the way a cloud starts them
        (``hybridnb worker ADDRESS --site cloud``, with the site's resource tags and TLS
        files), listening on the cloud host, with a dashboard there that serves their
        metrics.
        """
        from ..cli.worker import worker_command

        config = config or self.config()
        address = config.site("cloud").scheduler.address  # type: ignore[union-attr]
        names = []
        for i in range(len(self._cloud_workers), len(self._cloud_workers) + n):
            name = f"cloud-{i}"
            cmd = worker_command(address, "cloud", config, nthreads=1,
                                 host=self.cloud.address, name=name)
            # Metrics for the centre's collector: the worker's HTTP server on its host.
            at = cmd.index("--no-dashboard")
            cmd[at:at + 1] = ["--dashboard-address", f"{self.cloud.address}:0"]
            self._cloud_workers.append(self.cloud.popen(cmd))
            names.append(name)
        return names

    def end_burst(self, cluster: ClusterHandle, timeout: float = 60.0) -> list[str]:
        """The burst is over: retire the cloud's workers (their data moves first), then
        stop their processes. Returns the retired workers' addresses."""
        cloud = [w.address for w in cluster.workers() if w.site == "cloud"]
        if cloud:
            cluster.client.retire_workers(workers=cloud, close_workers=True)
        deadline = time.monotonic() + timeout
        for proc in self._cloud_workers:  # a closed worker's nanny exits by itself
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        self._stop_cloud_workers()
        return cloud

    def _stop_cloud_workers(self, timeout: float = 30.0) -> None:
        for proc in self._cloud_workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._cloud_workers:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._cloud_workers.clear()

    # -- links -----------------------------------------------------------------------

    def link_bytes(self) -> dict[str, dict[str, int]]:
        """Bytes through each host's link so far: ``{"out": sent, "in": received}``.

        Read from the root namespace's end of each veth pair (its ``rx`` is what the
        host sent), so it counts every packet, whoever sent it.
        """
        out = {}
        for role, host in self.hosts.items():
            stats = Path("/sys/class/net") / host.veth / "statistics"
            out[role] = {"out": int((stats / "rx_bytes").read_text()),
                         "in": int((stats / "tx_bytes").read_text())}
        return out

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Measure a step: its wall time and its bytes per link, kept in :attr:`phases`."""
        before, start = self.link_bytes(), time.monotonic()
        try:
            yield
        finally:
            after = self.link_bytes()
            zero = {"out": 0, "in": 0}  # a host made during the phase started at nothing
            self.phases.append(Phase(name, time.monotonic() - start, {
                role: {k: after[role][k] - before.get(role, zero)[k] for k in zero}
                for role in after}))

    def phase_frame(self) -> pd.DataFrame:
        """:attr:`phases` as a table: seconds, then bytes out/in per host."""
        import pandas as pd

        return pd.DataFrame([{"phase": p.name, "seconds": round(p.seconds, 1),
                              **{f"{role} {k}": p.bytes[role][k] for role in ROLES
                                 for k in ("out", "in")}} for p in self.phases])

    def set_link(self, role: str, up: bool) -> None:
        """Bring ``role``'s link down (the host keeps its address and serves itself) or up."""
        from .netns import ip

        ip("link", "set", self.hosts[role].veth, "up" if up else "down")


def running_from(directory: str | os.PathLike[str]) -> list[psutil.Process]:
    """Live processes anywhere on the machine whose command line names ``directory``:
    a case's sshd, edge agent and workers (through its Python wrapper), its reaper.

    Zombies and processes that end while they are looked at do not count.

    >>> running_from("/no/such/directory/here")
    []
    """
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and str(directory) in " ".join(proc.cmdline())):
                found.append(proc)
        except psutil.Error:  # gone, or a zombie by now
            continue
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left to a parent that does not reap is done)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd.strip()[:200]}"


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _reap(run_id: str, owner: int, secrets: list[Path]) -> None:
    """Wait for ``owner`` to exit, then remove what is left of run ``run_id``."""
    from .netns import cleanup_stale

    while _running(owner):
        time.sleep(0.5)
    removed = cleanup_stale(run_id, grace=2.0)
    _remove(secrets)
    if removed:
        print(f"owner {owner} exited without closing run {run_id}: removed "
              f"{', '.join(removed)}", flush=True)


if __name__ == "__main__":  # the reaper: python -m hybridnb.testing.hybrid_case RUN PID ...
    _reap(sys.argv[1], int(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
