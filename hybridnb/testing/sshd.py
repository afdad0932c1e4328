"""An OpenSSH server inside a namespace host, for testing SSH-launched clusters.

:class:`SSHDaemon` runs Debian's ``/usr/sbin/sshd`` in a :class:`~.netns.NetnsHost`
with a config, host key and authorized client key of its own, all in a temporary
directory; the system's sshd config and keys are never read or changed.

>>> from hybridnb.testing.netns import NetnsHosts
>>> with NetnsHosts(1) as (host,), SSHDaemon(host) as sshd:   # doctest: +SKIP
...     cluster = distributed.SSHCluster(
...         [host.address, host.address], connect_options=sshd.connect_options(),
...         remote_python=sys.executable, scheduler_options={"host": host.address},
...         worker_options={"host": host.address})
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..waiting import Ended, wait_until
from .netns import NetnsHost, skip_reason

logger = logging.getLogger(__name__)

__all__ = ["SSHD", "SSHDaemon", "sshd_skip_reason"]

#: Debian's OpenSSH server (``apt-get install openssh-server``).
SSHD = "/usr/sbin/sshd"

_CONFIG = """\
# Written by hybridnb.testing.sshd for one test; nothing else reads it.
Port {port}
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile {dir}/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
LogLevel INFO
MaxStartups 100
MaxSessions 100
"""


def sshd_skip_reason() -> str | None:
    """Why :class:`SSHDaemon` cannot run here, or ``None`` when it can.

    >>> reason = sshd_skip_reason()
    >>> reason is None or isinstance(reason, str)
    True
    """
    reason = skip_reason()
    if reason is not None:
        return reason
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found (apt-get install openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen not found (apt-get install openssh-client)"
    try:
        import asyncssh  # noqa: F401 - distributed's SSHCluster connects with it
    except ImportError:
        return "asyncssh is not installed"
    return None


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True, capture_output=True)


class SSHDaemon:
    """``sshd`` listening on ``host.address:port``, accepting :attr:`client_key` as root.

    Parameters
    ----------
    host
        The namespace host to run in; its teardown also stops this daemon.
    port
        TCP port inside the host's namespace (22 is free there: the namespace is its own).
    workdir
        Where config and keys go; a temporary directory (removed at close) when ``None``.

    Examples
    --------
    >>> with SSHDaemon(host) as sshd:                      # doctest: +SKIP
    ...     sshd.connect_options()
    {'port': 22, 'client_keys': ['/tmp/.../client_key'], 'known_hosts': None, 'username': 'root'}
    """

    def __init__(self, host: NetnsHost, *, port: int = 22,
                 workdir: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port
        self.address = host.address
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else None
        self.proc: subprocess.Popen[Any] | None = None
        self._closed = False

    @property
    def client_key(self) -> str:
        """Path of the private key the daemon accepts (for user ``root``)."""
        if self.dir is None:
            raise RuntimeError("SSHDaemon is not started")
        return str(self.dir / "client_key")

    @property
    def config_path(self) -> Path:
        if self.dir is None:
            raise RuntimeError("SSHDaemon is not started")
        return self.dir / "sshd_config"

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect`` / ``SSHCluster(connect_options=)``.

        Host keys are not checked (``known_hosts=None``): the daemon's key is new each run.
        """
        return {"port": self.port, "client_keys": [self.client_key],
                "known_hosts": None, "username": "root"}

    def start(self, timeout: float = 20.0) -> SSHDaemon:
        """Write config and keys, start sshd in the host and wait for its banner."""
        reason = sshd_skip_reason()
        if reason is not None:
            raise RuntimeError(reason)
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix=f"sshd-{self.host.name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        _keygen(self.dir / "ssh_host_ed25519_key")
        _keygen(self.dir / "client_key")
        shutil.copyfile(self.dir / "client_key.pub", self.dir / "authorized_keys")
        self.config_path.write_text(
            _CONFIG.format(port=self.port, address=self.address, dir=self.dir))
        # sshd refuses to start without its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        check = subprocess.run([SSHD, "-t", "-f", str(self.config_path)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd rejected its config: {check.stderr.strip()}")
        # -D: stay in the foreground, so the pid is ours; -e: log to the host's log file.
        self.proc = self.host.popen([SSHD, "-D", "-e", "-f", str(self.config_path)])
        self._wait_ready(timeout)
        logger.info("sshd up on %s:%s (%s)", self.address, self.port, self.host.name)
        return self

    def _wait_ready(self, timeout: float) -> None:
        proc = self.proc
        assert proc is not None

        def banner() -> bool:  # a banner, not just an open port: sshd is really serving
            with socket.create_connection((self.address, self.port), timeout=1) as s:
                return s.recv(4).startswith(b"SSH-")

        try:
            wait_until(banner, timeout=timeout, interval=0.05, alive=lambda: proc.poll() is None,
                       what=f"sshd on {self.address}:{self.port}")
        except Ended:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n"
                               f"{self.host.log_text()[-2000:]}") from None

    def close(self) -> None:
        """Stop sshd (sessions it started live on until the host's teardown)."""
        if self._closed:
            return
        self._closed = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_dir and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SSHDaemon:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "proc", None) is not None and not self._closed:
            warnings.warn(f"SSHDaemon on {self.address} was never closed", ResourceWarning,
                          stacklevel=1)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.proc else "new")
        return f"<SSHDaemon {self.address}:{self.port} {state}>"
