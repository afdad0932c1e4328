"""Processes that outlive their caller: cluster keepers, notebook jobs.

>>> callable(spawn_detached)
True
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .errors import OperationError

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
