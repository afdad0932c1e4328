"""What lists remember between polls, so that a poll never waits on a slow answer.

The sidebar polls every few seconds, and a list must answer in milliseconds however many
clusters and endpoints there are. Two things here make that so:

- :func:`refresh` marks records whose processes died (:meth:`StateStore.refresh`, a
  ``/proc`` read per pid) at most every :data:`REFRESH_EVERY` seconds;
- :class:`Remembered` keeps answers of other servers (a dashboard's worker count, an
  endpoint's latency): a fresh one is returned as it is, a stale one is returned at once
  and asked again in the background, and only a value never asked before is waited for
  (with the asker's own short timeout).

>>> r = Remembered(lambda key: key * 2, fresh_for=60)
>>> r.get_many([1, 2])
{1: 2, 2: 4}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..state import StateStore

REFRESH_EVERY = 2.0
_refreshed: dict[str, float] = {}
_lock = threading.Lock()


def refresh(store: StateStore) -> None:
    """``store.refresh()``, at most every :data:`REFRESH_EVERY` seconds per store."""
    now = time.monotonic()
    key = str(store.path)
    with _lock:
        if now - _refreshed.get(key, float("-inf")) < REFRESH_EVERY:
            return
        _refreshed[key] = now
    store.refresh()


class Remembered:
    """``fn(key)`` per key, remembered ``fresh_for`` seconds, refreshed in the background."""

    def __init__(self, fn: Callable[[Any], Any], fresh_for: float = 3.0, workers: int = 8):
        self.fn = fn
        self.fresh_for = fresh_for
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._asking: set[Hashable] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hybridnb-remember")

    def _ask(self, key: Hashable) -> Any:
        try:
            value = self.fn(key)
        finally:
            with self._lock:
                self._asking.discard(key)
        with self._lock:
            self._values[key] = (time.monotonic(), value)
        return value

    def get_many(self, keys: Iterable[Hashable]) -> dict[Hashable, Any]:
        now = time.monotonic()
        out: dict[Hashable, Any] = {}
        wait: list[Hashable] = []
        with self._lock:
            for key in keys:
                hit = self._values.get(key)
                if hit is None:
                    wait.append(key)
                    continue
                out[key] = hit[1]
                if now - hit[0] >= self.fresh_for and key not in self._asking:
                    self._asking.add(key)
                    self._pool.submit(self._ask, key)
            for key in wait:
                self._asking.add(key)
        for key, value in zip(wait, self._pool.map(self._ask, wait), strict=True):
            out[key] = value
        return out
