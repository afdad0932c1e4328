"""Wait for something to become true, and stop what a test started.

Tests start real servers (JupyterLab, Prometheus, endpoints, sshd) and must wait until
they answer; each used to hand-write the same deadline loop. :func:`wait_until` is that
loop once, with a message that says what never happened and the last value seen.

>>> wait_until(lambda: 42, timeout=1, what="the answer")
42
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import psutil

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition", ignore: tuple[type[BaseException], ...] = (OSError,),
               alive: Callable[[], bool] | None = None) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Parameters
    ----------
    predicate
        Called repeatedly; a truthy return ends the wait.
    timeout
        Seconds before giving up with ``TimeoutError``.
    interval
        Seconds between calls.
    what
        Words for the error message: "<what> not ready after 30 s".
    ignore
        Exceptions that mean "not yet" (default ``OSError``: nothing listening yet).
    alive
        Optional check that the thing being waited for still runs (e.g. a process's
        ``poll() is None``); when it returns False the wait fails at once instead of
        running out the clock.

    Examples
    --------
    >>> calls = []
    >>> wait_until(lambda: calls.append(1) or len(calls) >= 3, interval=0)
    True
    >>> wait_until(lambda: False, timeout=0.05, interval=0.01, what="the moon")
    Traceback (most recent call last):
    ...
    TimeoutError: the moon not ready after 0.05 s (last value: False)
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            value, last = None, exc
        else:
            if value:
                return value
            last = value
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process ended while waiting (last value: {last!r})")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready after {timeout:g} s (last value: {last!r})")
        time.sleep(interval)


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
