"""hybridnb's papermill engine: nbclient execution that saves the output notebook less often.

papermill's own engine writes the whole output notebook before and after every cell. A
write serializes and validates every cell, so a notebook of *n* cells costs O(n²) and
dominates the run of a notebook of quick cells (about 30 ms a cell at 40 cells).

:class:`HybridnbEngine` keeps papermill's bookkeeping (cell metadata, the error banner,
the partial output) and changes two things:

- at cell boundaries the output is saved at most every ``save_every`` seconds (and if
  a save takes more than 5 % of the interval, the interval doubles); it is always saved
  when the run starts and when it ends, whether it succeeded, a cell raised, a cell
  timed out or the kernel died, so a stopped run still leaves an output that says where
  it stopped (a cell stopped by a timeout or a dead kernel is marked failed, as one that
  raised);
- the kernel gets its environment and working directory as launch arguments instead of
  through this process's ``os.environ`` and working directory, so several runs can share
  one process (a sweep's threads) without seeing each other's settings.

It registers itself with papermill's engine registry as ``hybridnb`` when imported. (Not
through a ``papermill.engine`` entry point: papermill loads those while it is itself
being imported, and this module imports papermill, so an entry point could meet this
module half-imported.)

>>> import papermill
>>> from hybridnb.notebooks.engine import ENGINE, HybridnbEngine
>>> papermill.engines.papermill_engines.get_engine(ENGINE) is HybridnbEngine
True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from traitlets.config import Config

logger = logging.getLogger(__name__)

ENGINE = "hybridnb"
#: Seconds between saves of the output notebook at cell boundaries (``None`` → this).
SAVE_EVERY = 2.0
# Kernels whose spec declares CurveZMQ support (ipykernel's does) get keys from their
# manager: code and outputs are encrypted even on loopback (at no cost measurable in a
# notebook's run), and ipykernel stops warning on every start that they are not.
_KERNEL_CONFIG = {"KernelManager": {"transport_encryption": "auto"}}
# A save may take at most this share of the interval before the interval doubles, which
# bounds the time spent saving to about this share of the run, however large it grows.
_MAX_SAVE_SHARE = 0.05


class ThrottledExecutionManager(NotebookExecutionManager):
    """papermill's execution manager, saving at most every ``save_every`` seconds.

    The first save (``notebook_start``) always happens, and so does the last
    (``notebook_complete``) unless called with ``save=False``; cell starts and ends save
    only when the interval has passed.

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    >>> nb.metadata["papermill"] = {}
    >>> man = ThrottledExecutionManager(nb, save_every=60.0, progress_bar=False)
    >>> man.notebook_start(); man.saves
    1
    >>> man.cell_start(nb.cells[0], 0); man.cell_complete(nb.cells[0], 0); man.saves
    1
    >>> man.notebook_complete(save=False); man.saves
    1
    >>> man.notebook_complete(); man.saves
    2
    """

    def __init__(
        self,
        nb: Any,
        output_path: str | None = None,
        *,
        save_every: float | None = None,
        on_cell_start: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(nb, output_path=output_path, **kwargs)
        self.on_cell_start = on_cell_start
        self.save_every = SAVE_EVERY if save_every is None else float(save_every)
        if self.save_every < 0:
            raise ValueError(
                f"save_every={save_every}: give seconds >= 0 (0 saves after "
                "every cell, as papermill does)"
            )
        self.saves = 0
        self._last = 0.0  # monotonic time of the last save; 0: never saved
        self._force = self._quiet = False
        self._running: Any = None  # the cell last started

    def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        self._running = cell
        super().cell_start(cell, cell_index, **kwargs)
        if self.on_cell_start is not None:  # markdown cells too: they name the stages
            self.on_cell_start(cell)

    def stopped(self) -> None:
        """Mark the cell that was running as failed: a timeout or a dead kernel stopped it.

        papermill marks only cells that raised; without this, the output of a run that
        timed out would show the stopped cell as completed.
        """
        if self._running is not None:
            self.cell_exception(self._running)

    def save(self, **kwargs: Any) -> None:
        """Save now if forced or if ``save_every`` seconds passed since the last save."""
        if self._quiet or (not self._force and time.monotonic() - self._last < self.save_every):
            return
        start = time.monotonic()
        super().save(**kwargs)
        self._last = time.monotonic()
        self.saves += 1
        took = self._last - start
        if not self._force and self.save_every and took > self.save_every * _MAX_SAVE_SHARE:
            self.save_every *= 2
            logger.info(
                "saving %s took %.2f s; saving at most every %g s from now on",
                self.output_path,
                took,
                self.save_every,
            )

    def _forced(self, method: Any, **kwargs: Any) -> None:
        self._force = True
        try:
            method(**kwargs)
        finally:
            self._force = False

    def notebook_start(self, **kwargs: Any) -> None:
        self._forced(super().notebook_start, **kwargs)

    def notebook_complete(self, *, save: bool = True, **kwargs: Any) -> None:
        if save:
            self._forced(super().notebook_complete, **kwargs)
            return
        self._quiet = True
        try:
            super().notebook_complete(**kwargs)
        finally:
            self._quiet = False


class HybridnbEngine(NBClientEngine):
    """nbclient execution with throttled saves and per-run kernel settings.

    Extra keyword arguments of ``papermill.execute_notebook(..., engine_name="hybridnb")``:
    ``save_every`` (seconds), ``on_cell_start`` (called with each cell, markdown ones
    included, as the run reaches it), ``kernel_env`` (the kernel's whole environment)
    and ``kernel_cwd`` (the kernel's working directory).
    """

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        save_every: float | None = None,
        on_cell_start: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        # papermill's Engine.execute_notebook, with this module's execution manager.
        nb_man = ThrottledExecutionManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
            save_every=save_every,
            on_cell_start=on_cell_start,
        )
        nb_man.notebook_start()
        returned = False
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            returned = True
        except (CellTimeoutError, DeadKernelError):
            nb_man.stopped()
            raise
        finally:
            nb_man.cleanup_pbar()
            # When the engine returns, papermill's execute_notebook writes the output
            # itself (with its error banner if a cell raised): a save here would be a
            # second write of the whole notebook. When it raises, only this save is left.
            nb_man.notebook_complete(save=not returned)
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: float = 60,
        execution_timeout: float | None = None,
        kernel_env: dict[str, str] | None = None,
        kernel_cwd: str | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.pop("input_path", None)  # papermill passes it; the client has no such trait
        timeout = execution_timeout or kwargs.pop("timeout", None)
        startup = kwargs.pop("startup_timeout", None) or start_timeout
        client = PapermillNotebookClient(
            nb_man,
            config=Config(_KERNEL_CONFIG),
            kernel_name=kernel_name,
            timeout=timeout,
            startup_timeout=startup,
            log=logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            **kwargs,
        )
        # nbclient hands these to KernelManager.start_kernel, which launches the kernel
        # with them; nothing in this process changes.
        launch: dict[str, Any] = {}
        if kernel_env is not None:
            launch["env"] = dict(kernel_env)
        if kernel_cwd is not None:
            launch["cwd"] = str(kernel_cwd)
        return client.execute(**launch)


papermill_engines.register(ENGINE, HybridnbEngine)
