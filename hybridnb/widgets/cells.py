"""Put a code cell into the notebook at once, through the hybridnb JupyterLab extension.

The extension (``extensions/hybridnb-labextension``) registers the comm target
:data:`TARGET` on every kernel it connects to. :func:`insert_cell` opens a comm on that
target carrying the code; the extension inserts a code cell below the active cell of the
notebook that runs this kernel, answers ``{"inserted": true}`` and closes the comm.

Without the extension the code is queued with IPython's ``set_next_input``, which shows
it only with the reply to the next executed cell (a button click is a comm message, not
an execution):

- JupyterLab closes a comm whose target nobody registered: closed unanswered → queued;
- a frontend that ignores unknown comms says nothing: after :data:`ACK_TIMEOUT` seconds
  → queued, and later inserts in this kernel queue at once.

>>> insert_cell("print(1)")  # outside IPython there is nowhere to put it
'unavailable'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: The comm target the JupyterLab extension registers on every kernel.
TARGET = "hybridnb.insert-cell"
#: Seconds to wait for the frontend's answer before queueing with ``set_next_input``.
ACK_TIMEOUT = 3.0

#: Set once a frontend left an insert unanswered: it ignores unknown comms, so later
#: inserts queue at once instead of waiting again.
_unanswered = False


def insert_cell(code: str, on_result: Callable[[str], None] | None = None) -> str:
    """Insert ``code`` as a new cell below the active one, or queue it.

    Parameters
    ----------
    code
        The cell's source.
    on_result
        Called once with ``"inserted"`` (the extension put the cell in the notebook) or
        ``"queued"`` (it comes with the next executed cell) when that is known, which
        can be after this function returned (from the kernel's message loop or a timer
        thread).

    Returns
    -------
    str
        ``"sent"`` (asked the extension; ``on_result`` says how it ended), ``"queued"``
        (no extension can answer here: ``set_next_input`` now) or ``"unavailable"`` (not
        in IPython).

    >>> insert_cell("x = 1")
    'unavailable'
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return "unavailable"
    shell = get_ipython()
    if shell is None:
        return "unavailable"
    if _unanswered or getattr(shell, "kernel", None) is None:
        # A terminal IPython has no frontend to ask; set_next_input fills its next prompt.
        shell.set_next_input(code)
        if on_result is not None:
            on_result("queued")
        return "queued"
    _Insert(shell, code, on_result).send()
    return "sent"


class _Insert:
    """One request to the extension: answered, closed unanswered, or timed out."""

    def __init__(self, shell: Any, code: str, on_result: Callable[[str], None] | None):
        self._shell = shell
        self._code = code
        self._on_result = on_result
        self._lock = threading.Lock()
        self._done = False
        self._comm: Any = None
        self._timer: threading.Timer | None = None

    def send(self) -> None:
        from comm import create_comm

        self._comm = create_comm(target_name=TARGET, data={"code": self._code})
        self._comm.on_msg(self._answered)
        self._comm.on_close(self._closed)
        self._timer = threading.Timer(ACK_TIMEOUT, self._expired)
        self._timer.daemon = True
        self._timer.start()

    def _finish(self, outcome: str) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if outcome == "queued":
            self._shell.set_next_input(self._code)
        if self._on_result is not None:
            try:
                self._on_result(outcome)
            except Exception:  # a broken callback must not break the kernel's loop
                logger.exception("insert_cell callback failed")
        return True

    def _answered(self, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data") or {}
        if data.get("inserted"):
            self._finish("inserted")
        elif data.get("error"):
            # The extension is there but could not insert (no notebook open): queue it.
            logger.info("the frontend could not insert the cell: %s", data["error"])
            self._finish("queued")

    def _closed(self, _msg: dict[str, Any]) -> None:
        self._finish("queued")

    def _expired(self) -> None:
        global _unanswered
        if self._finish("queued"):
            _unanswered = True
            self._comm.close()
