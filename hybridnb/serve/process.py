"""Endpoint servers as subprocesses on ephemeral loopback ports, recorded in the state store.

:func:`start_server` is the base of replicas and the router: it starts
``python -m hybridnb.serve.server``, waits until the server is ready, and records it as
an ``endpoint`` (so ``hybridnb ps``/``gc`` and ``hybridnb endpoints`` see it). The
token travels in the environment, never on the command line (``ps`` shows that).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ..errors import OperationError
from ..processes import tail, wait_ready_file
from ..state import Kind, StateStore, Status, state_home
from ..waiting import Ended, wait_until
from .auth import TOKEN_ENV, resolve_token
from .settings import ServeSettings

logger = logging.getLogger(__name__)


class ServerProcess:
    """A running endpoint server process.

    Use it as a context manager, or call :meth:`stop`; it warns (``ResourceWarning``)
    when garbage-collected while its process still runs.
    """

    def __init__(self, proc: subprocess.Popen[bytes], url: str, name: str, log: Path,
                 record_id: str | None, store: StateStore | None, token: str | None):
        self.proc = proc
        self.url = url
        self.name = name
        self.log = log
        self.record_id = record_id
        self.store = store
        self.token = token

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header this server wants (empty without a token)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM: the server drains (readiness 503, in-flight requests finish)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 30.0) -> int | None:
        """Drain and stop; SIGKILL after ``grace`` seconds. Returns the exit code."""
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("endpoint %s (pid %d) did not drain in %g s; killing it",
                               self.name, self.pid, grace)
                self.proc.kill()
                self.proc.wait()
        if self.store is not None and self.record_id is not None:
            status = Status.stopped if self.proc.returncode in (0, -signal.SIGTERM) \
                else Status.failed
            self.store.update(self.record_id, status=status,
                              message=f"exit code {self.proc.returncode}")
            self.record_id = None
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
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
        return f"ServerProcess({self.name!r}, {self.url}, pid {self.pid}, {state})"


def start_server(bundle_path: str | os.PathLike[str], *, settings: ServeSettings | None = None,
                 token: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 name: str | None = None, store: StateStore | None = None,
                 record: bool = True, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> ServerProcess:
    """Start an endpoint server subprocess and wait until it is ready.

    Parameters
    ----------
    bundle_path:
        The bundle to serve.
    settings, token:
        As for :func:`~hybridnb.serve.server.run_server`.
    host, port:
        Loopback and an ephemeral port by default.
    name:
        The record's name (default: the bundle directory's name).
    store, record:
        Where to record it (default: the user's state store); ``record=False`` skips it:
        the server is then this process's own (a replica) and exits when this process is
        gone, however it ended.
    timeout:
        Seconds to wait for readiness before killing it and raising
        :class:`~hybridnb.errors.OperationError` with the log's tail.
    """
    import httpx

    settings = settings or ServeSettings()
    token = resolve_token(token or settings.token, host)
    bundle_path = Path(bundle_path).resolve()
    name = name or bundle_path.name
    logs = state_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ready_dir = Path(tempfile.mkdtemp(prefix="hybridnb-endpoint-"))
    ready_file = ready_dir / "ready.json"
    log = logs / f"endpoint-{name}-{os.getpid()}-{time.time_ns() % 10**9}.log"
    child_env = {**os.environ, **(env or {})}
    child_env.pop(TOKEN_ENV, None)
    if token:
        child_env[TOKEN_ENV] = token
    cmd = [sys.executable, "-m", "hybridnb.serve.server", str(bundle_path), "--host", host,
           "--port", str(port), "--ready-file", str(ready_file),
           "--settings", json.dumps(settings.to_dict())]
    if not record:
        cmd += ["--exit-with", str(os.getpid())]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    store = (store or StateStore()) if record else None
    rec = None
    if store is not None:
        rec = store.add(Kind.endpoint, name, site="local", backend="local", pids=[proc.pid],
                        spec={"bundle": str(bundle_path), "settings": settings.to_dict(),
                              "log": str(log), "auth": bool(token)})
    server = ServerProcess(proc, "", name, log, rec.id if rec else None, store, token)
    try:
        info = wait_ready_file(proc, ready_file, timeout, what="the endpoint server", log=log)
        server.url = f"http://{host}:{info['port']}"
        with httpx.Client(timeout=5.0) as client:
            try:
                wait_until(lambda: client.get(server.url + "/v2/health/ready").status_code
                           == 200, timeout=timeout, interval=0.05, alive=server.alive,
                           ignore=(httpx.TransportError,), what=f"endpoint {name}")
            except (TimeoutError, Ended):
                raise OperationError(f"endpoint {name} never became ready; log {log}:\n"
                                     + tail(log)) from None
    except BaseException:
        server.stop(grace=5.0)
        raise
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)
    if store is not None and rec is not None:
        store.update(rec.id, status=Status.running, address=server.url)
    logger.info("endpoint %s ready at %s (pid %d)", name, server.url, proc.pid)
    return server

