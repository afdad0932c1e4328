"""Wait for something to become true, and stop what a test started.

Tests start real servers (JupyterLab, Prometheus, endpoints, sshd) and must wait until
they answer. :func:`wait_until` is the package's own poll loop
(:func:`hybridnb.waiting.wait_until`, which the library's waits use too), with a
message that says what never happened and the last value seen.

>>> wait_until(lambda: 42, timeout=1, what="the answer")
42
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from ..waiting import Ended, wait_until

if TYPE_CHECKING:
    import psutil

__all__ = ["Ended", "running_children", "stop_processes", "wait_until"]


def stop_processes(*procs: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM every process, wait up to ``timeout`` s for each, SIGKILL what is left.

    Terminating them all before waiting lets them shut down in parallel.

    >>> import subprocess, sys
    >>> p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    >>> stop_processes(p); p.returncode is not None
    True
    """
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def running_children(match: str, parent: int | None = None) -> list[psutil.Process]:
    """The live descendants of ``parent`` (default: this process) whose command line
    contains ``match``: what a test left running.

    Zombies and processes that end while they are looked at do not count: an earlier test
    that never reaped a child must not break every later scan.

    >>> running_children("no-such-program-here")
    []
    """
    import psutil

    found = []
    for proc in psutil.Process(parent).children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and match in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # gone, or a zombie by now
            continue
    return found
