"""Waiting for something to become true: one deadline, one poll loop, for every caller.

Servers, keepers, schedulers and the state store all have to wait for another process
(to listen, to write a ready file, to switch SQLite to WAL) without waiting forever.
:func:`wait_until` is that loop once — with the message it raises saying what never
happened and the last value seen — and :class:`Deadline` is the point in time a longer
loop gives up at. The test fixtures (:mod:`hybridnb.testing.waiting`) use the same.

>>> wait_until(lambda: 42, timeout=1, what="the answer")
42
>>> Deadline(None).expired(), Deadline(0).expired()
(False, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Ended(RuntimeError):
    """What :func:`wait_until` was waiting for stopped running (``alive`` said so)."""


class Deadline:
    """A moment ``seconds`` from now on the monotonic clock; ``None`` is never.

    >>> d = Deadline(60)
    >>> d.expired(), 59 < d.remaining() <= 60
    (False, True)
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def expired(self) -> bool:
        """Whether the moment has passed."""
        return self.at is not None and time.monotonic() >= self.at

    def remaining(self) -> float:
        """Seconds left (``inf`` for never, 0 once passed)."""
        return float("inf") if self.at is None else max(0.0, self.at - time.monotonic())


def wait_until(predicate: Callable[[], T | None], *, timeout: float | None = 30.0,
               interval: float = 0.2, what: str = "condition",
               ignore: tuple[type[BaseException], ...] = (OSError,),
               alive: Callable[[], bool] | None = None, backoff: float = 1.0,
               max_interval: float | None = None) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    Parameters
    ----------
    predicate
        Called repeatedly; a truthy return ends the wait.
    timeout
        Seconds before giving up with ``TimeoutError``; ``None`` waits as long as it takes.
    interval
        Seconds between calls (the first call is at once).
    what
        Words for the error message: "<what> not ready after 30 s".
    ignore
        Exceptions that mean "not yet" (default ``OSError``: nothing listening yet).
    alive
        Optional check that the thing waited for still runs (e.g. a process's
        ``poll() is None``); when it returns False the wait fails at once with
        :class:`Ended` instead of running out the clock.
    backoff, max_interval
        Multiply the interval by ``backoff`` after each call, up to ``max_interval``.

    Examples
    --------
    >>> calls = []
    >>> wait_until(lambda: calls.append(1) or len(calls) >= 3, interval=0)
    True
    >>> wait_until(lambda: False, timeout=0.05, interval=0.01, what="the moon")
    Traceback (most recent call last):
    ...
    TimeoutError: the moon not ready after 0.05 s (last value: False)
    >>> wait_until(lambda: False, alive=lambda: False, what="the server")
    Traceback (most recent call last):
    ...
    hybridnb.waiting.Ended: the server: the process ended while waiting (last value: False)
    """
    deadline = Deadline(timeout)
    last: object = None
    delay = interval
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if alive is not None and not alive():
            raise Ended(f"{what}: the process ended while waiting (last value: {last!r})")
        if deadline.expired():
            raise TimeoutError(f"{what} not ready after {timeout:g} s (last value: {last!r})")
        time.sleep(min(delay, deadline.remaining()))
        delay = delay * backoff if max_interval is None else min(delay * backoff, max_interval)
