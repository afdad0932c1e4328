"""Start an edge agent as a process (on this machine, or inside a namespace host).

>>> agent = start_agent("/tmp/edge-state", control="10.0.3.7:8443",   # doctest: +SKIP
...                     wrap=host.command)
>>> agent.client().status().ready                                      # doctest: +SKIP
False
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...processes import tail, wait_ready_file
from ..auth import TOKEN_ENV as ENDPOINT_TOKEN_ENV
from .client import EdgeClient
from .tls import init_agent_dir

logger = logging.getLogger(__name__)


class AgentProcess:
    """A running edge agent: where its control port and front are, and how to trust it."""

    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any], token: str,
                 log: Path, site: str):
        self.proc = proc
        self.log = log
        self.site = site
        self.token = token
        self.tls = bool(info["tls"])
        self.cert = Path(info["cert"])
        self.fingerprint = str(info["fingerprint"])
        host, port = info["control"]
        self.control = (str(host), int(port))
        fhost, fport = info["front"]
        self.front = (str(fhost), int(fport))

    @property
    def url(self) -> str:
        """The control port's URL (``https://`` unless started without TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.control[0]}:{self.control[1]}"

    @property
    def front_url(self) -> str:
        """Where local clients send requests (reachable from the edge host itself)."""
        return f"http://{self.front[0]}:{self.front[1]}"

    def client(self, **kwargs: Any) -> EdgeClient:
        """An :class:`EdgeClient` pinned to this agent's certificate."""
        return EdgeClient(self.url, token=self.token, cert=self.cert if self.tls else None,
                          fingerprint=self.fingerprint if self.tls else None, **kwargs)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (the agent stops its replicas and flushes its buffer); SIGKILL after
        ``grace`` seconds."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("edge agent %d did not stop in %g s; killing it",
                               self.proc.pid, grace)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            warnings.warn(f"{self!r} was never stopped; stopping it now", ResourceWarning,
                          stacklevel=1)
            proc.kill()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"AgentProcess({self.site!r}, {self.url}, front {self.front_url}, {state})"


def start_agent(state_dir: str | os.PathLike[str], *, site: str = "edge",
                control: str = "127.0.0.1:0", front: str = "127.0.0.1:0", tls: bool = True,
                options: dict[str, Any] | None = None,
                bundle: str | os.PathLike[str] | None = None,
                front_token: str | None = None,
                wrap: Callable[[list[str]], Sequence[str]] | None = None,
                env: dict[str, str] | None = None, log: str | os.PathLike[str] | None = None,
                timeout: float = 60.0) -> AgentProcess:
    """Start ``python -m hybridnb.serve.edge.agent`` and wait until both ports listen.

    Parameters
    ----------
    state_dir:
        The agent's directory (key, certificate, token, blobs, versions, buffer); its
        identity is made here first, so the token and certificate are known at once.
    control, front:
        ``HOST:PORT`` of the control port and of the front (port 0: a free one).
    options:
        ``sites.X.edge`` (rollout policy, buffer limits) as plain data.
    bundle:
        A bundle to roll out at start when nothing is active.
    front_token:
        The token local clients send (needed when ``front`` is beyond loopback).
    wrap:
        Turns the command into the one to run, e.g. ``NetnsHost.command`` to start the
        agent inside a namespace host.
    """
    state = Path(state_dir)
    control_host = control.rpartition(":")[0].strip("[]")
    identity = init_agent_dir(state, hosts=[control_host] if tls else [])
    ready_dir = Path(tempfile.mkdtemp(prefix="hybridnb-edge-agent-"))
    ready_file = ready_dir / "ready.json"
    log_path = Path(log) if log else state / "agent.log"
    cmd = [sys.executable, "-m", "hybridnb.serve.edge.agent", "--state-dir", str(state),
           "--site", site, "--control", control, "--front", front,
           "--options", json.dumps(options or {}), "--ready-file", str(ready_file)]
    if not tls:
        cmd.append("--no-tls")
    if bundle is not None:
        cmd += ["--bundle", str(Path(bundle).resolve())]
    child_env = {**os.environ, **(env or {})}
    child_env.pop(ENDPOINT_TOKEN_ENV, None)
    if front_token:
        child_env[ENDPOINT_TOKEN_ENV] = front_token  # never on the command line
    argv = list(wrap(cmd)) if wrap is not None else cmd
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child_env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        info = wait_ready_file(proc, ready_file, timeout, what="the edge agent", log=log_path)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        for p in (ready_file, ready_dir):
            try:
                p.unlink() if p.is_file() else p.rmdir()
            except OSError:
                pass
    agent = AgentProcess(proc, info, identity.token, log_path, site)
    logger.info("%r", agent)
    return agent
