"""Processes hybridnb starts and stops: detached starts, tree stops, free ports, log tails.

Cluster keepers, notebook jobs, endpoint servers and training agents are processes of
their own; what every starter needs is here once, so they are started, stopped and
reported alike.

>>> callable(spawn_detached), 0 < free_port() < 65536
(True, True)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import OperationError
from .waiting import Ended, wait_until

#: How much of a log :func:`tail` reads from its end (a log can be large).
TAIL_BYTES = 64 * 1024

#: Runs in a short-lived interpreter between the caller and the detached process: it
#: starts the process in a session of its own, prints its pid and exits, so the process
#: is an orphan that init reaps, never a zombie of a long-lived caller (a kernel, the
#: Jupyter server, a test run) once it ends.
_SPAWN = """
import os, sys
log, cmd = sys.argv[1], sys.argv[2:]
actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
           (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
           (os.POSIX_SPAWN_DUP2, 1, 2)]
print(os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions, setsid=True))
"""


def spawn_detached(cmd: list[str], log_path: Path) -> int:
    """Start ``cmd`` in its own session, output to ``log_path``; return its pid.

    The process is meant to outlive this one: it is started through a short-lived
    intermediate (:data:`_SPAWN`), so it is not this process's child — no ``Popen`` left
    to warn that it still runs, and no zombie left behind when it ends.
    """

    out = subprocess.run([sys.executable, "-I", "-S", "-c", _SPAWN, str(log_path), *cmd],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if out.returncode != 0:
        raise OperationError(f"could not start {cmd[0]}: {out.stderr.strip()}")
    return int(out.stdout)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tail(path: str | Path, lines: int = 20, *, missing: str = "(no log)") -> str:
    """The last ``lines`` lines of the text file ``path`` (``missing`` if unreadable).

    Reads at most :data:`TAIL_BYTES` from the end, so a long log costs no more than a
    short one.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "log"
    >>> _ = p.write_text("one\\ntwo\\nthree\\n")
    >>> tail(p, 2), tail(p.with_name("gone"))
    ('two\\nthree', '(no log)')
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return missing
    return "\n".join(text.rstrip().splitlines()[-lines:])


def stop_tree(pids: int | Iterable[int], grace: float = 10.0) -> list[int]:
    """Stop processes and all their descendants: SIGTERM, then SIGKILL after ``grace``.

    Each process counts once, children first (a record often lists a process and its own
    child). Processes already gone are skipped. Returns the pids signalled.

    >>> p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    >>> stop_tree(p.pid, grace=5) == [p.pid], p.wait() is not None
    (True, True)
    """
    import psutil

    found: dict[int, psutil.Process] = {}
    for pid in [pids] if isinstance(pids, int) else pids:
        try:
            root = psutil.Process(pid)
            for p in [*root.children(recursive=True), root]:
                found.setdefault(p.pid, p)
        except psutil.Error:
            continue
    procs = list(found.values())
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:  # they had their chance to shut down cleanly
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=max(grace, 5.0))
    return [p.pid for p in procs]


def wait_ready_file(proc: subprocess.Popen[bytes], path: Path, timeout: float, *, what: str,
                    log: Path) -> dict[str, Any]:
    """Wait until the child ``proc`` writes its ready file ``path`` (JSON); its content.

    Servers hybridnb starts write such a file (atomically) once they listen, saying
    where. A child that exits first, or takes longer than ``timeout`` seconds, is an
    :class:`~hybridnb.errors.OperationError` naming ``what`` with the end of ``log``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> p = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    >>> wait_ready_file(p, d / "ready", 10, what="the toy server", log=d / "log")
    Traceback (most recent call last):
    ...
    hybridnb.errors.OperationError: the toy server exited with code 3 before listening; log .../log:
    (no log)
    """
    try:
        wait_until(path.exists, timeout=timeout, interval=0.02, ignore=(),
                   alive=lambda: proc.poll() is None, what=what)
    except Ended:
        raise OperationError(f"{what} exited with code {proc.returncode} before listening; "
                             f"log {log}:\n{tail(log)}") from None
    except TimeoutError:
        raise OperationError(f"{what} did not listen within {timeout:g} s; log {log}:\n"
                             f"{tail(log)}") from None
    info: dict[str, Any] = json.loads(path.read_text())
    return info
