"""Close long-lived objects at interpreter exit, while the engines under them still run.

A script or a kernel may end with a cluster, an endpoint or a collector still open. Left
to garbage collection at interpreter shutdown, their ``__del__`` would run after
distributed's event-loop thread and ``concurrent.futures`` have stopped, and would wait
on them forever (or die with a traceback, leaving replica processes behind). So each
such object registers here while it is open, and one exit hook closes whatever is still
open, newest first (a collector before the endpoints it scrapes, an endpoint before the
cluster it was started after).

When the hook runs matters. It is one of :mod:`threading`'s shutdown hooks — where
``concurrent.futures`` registers its own, since Python 3.9 — so it runs before
``concurrent.futures`` refuses new work (closing an endpoint uses a thread pool), before
non-daemon threads are joined, and before every :mod:`atexit` handler: distributed
closes its own clients and clusters there, so ours close first, through an event loop
that still runs. Where that hook is missing it falls back to :mod:`atexit` (registered
after distributed's, so it still runs before them).

>>> class Thing:
...     def close(self):
...         forget(self)
>>> close_at_exit(t := Thing()); t.close()
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any

logger = logging.getLogger(__name__)

_open: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_installed = False
_exiting = False


def close_at_exit(obj: Any, method: str = "close") -> None:
    """Call ``obj.<method>()`` at interpreter exit if ``obj`` is still open then.

    Holds only a weak reference: registering keeps nothing alive. Call :func:`forget`
    when the object closes.
    """
    global _installed
    with _lock:
        _open[obj] = method
        if not _installed:
            _install()
            _installed = True


def forget(obj: Any) -> None:
    """``obj`` closed by itself: nothing to do for it at exit."""
    with _lock:
        _open.pop(obj, None)


def exiting() -> bool:
    """Whether interpreter exit is under way (the exit hook ran): ``__del__`` methods
    then must not wait on event loops or thread pools."""
    return _exiting


def _install() -> None:
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_close_all)
            return
        except RuntimeError:  # threading's shutdown already began
            pass
    atexit.register(_close_all)


def _close_all() -> None:
    global _exiting
    _exiting = True
    with _lock:
        items = list(_open.items())
        _open.clear()
    for obj, method in reversed(items):
        try:
            getattr(obj, method)()
        except Exception as exc:  # one line, no traceback: the process is ending anyway
            logger.warning("closing %s at exit failed: %s", type(obj).__name__, exc)
