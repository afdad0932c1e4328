"""Run a notebook headless with papermill: checked parameters, recorded, clear outcomes.

Outcomes and the CLI's exit codes: ``succeeded`` 0, bad input 2, ``failed`` (a cell
raised) 3, ``timeout`` (a cell ran past ``timeout``) 4, ``dead_kernel`` 5. The output
notebook is kept in every case; papermill marks the cell where it stopped.

Runs go through hybridnb's papermill engine (:mod:`hybridnb.notebooks.engine`): it saves
the output every few seconds instead of around every cell, and gives each kernel its own
environment and working directory, so runs may share a process (a sweep's threads).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from html import escape
from pathlib import Path
from typing import Any

from ..errors import UsageError, did_you_mean
from .records import ENV as RECORD_ENV
from .records import read_records
from .report import write_report
from .secrets import refuse_secret_parameters

logger = logging.getLogger(__name__)


class _KnownUnknowns(logging.Filter):
    """Drop papermill's "Passed unknown parameter" warnings: :func:`check_parameters`
    has already refused the name, or reported it once with its did-you-mean."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Passed unknown parameter")


logging.getLogger("papermill").addFilter(_KnownUnknowns())


class Outcome(str, Enum):
    """How a notebook run ended."""

    succeeded = "succeeded"
    failed = "failed"
    timeout = "timeout"
    dead_kernel = "dead_kernel"


EXIT_CODES = {Outcome.succeeded: 0, Outcome.failed: 3, Outcome.timeout: 4,
              Outcome.dead_kernel: 5}

# papermill's inferred type names -> Python types a value may have.
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
    "list": (list, tuple), "dict": (dict,),
}


@dataclass
class NotebookRun:
    """The result of one headless run."""

    input: Path
    output: Path
    parameters: dict[str, Any]
    outcome: Outcome
    seconds: float
    records: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_cell: int | None = None
    warnings: list[str] = field(default_factory=list)
    report: Path | None = None
    record_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.succeeded

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def __repr__(self) -> str:
        where = f", failed at cell {self.failed_cell}" if self.failed_cell is not None else ""
        return (f"<NotebookRun {self.input.name} → {self.output.name}: {self.outcome.value} "
                f"in {self.seconds:.1f}s{where}, {len(self.records)} record(s)>")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
                       for k, v in self.records.items())
        err = f"<p style='color:#b00'>{escape(self.error)}</p>" if self.error else ""
        return (f"<p><b>{escape(self.input.name)}</b> → {escape(str(self.output))}: "
                f"{self.outcome.value} in {self.seconds:.1f} s</p>{err}"
                f"<table><tr><th>record</th><th>value</th></tr>{rows}</table>")


def check_parameters(notebook: Path, parameters: dict[str, Any], *,
                     allow_unknown: bool = False) -> list[str]:
    """Validate ``parameters`` against the notebook's ``parameters`` cell.

    A name the cell does not declare is a mistake (a typo would otherwise run the
    notebook with its default): :class:`~hybridnb.errors.UsageError` naming the close
    match and the declared names, unless ``allow_unknown``, which turns each into a
    warning (returned). Secret-looking names and values of the wrong type are always
    refused.

    >>> from hybridnb.testing.notebooks import make_notebook
    >>> import tempfile, pathlib
    >>> nb = make_notebook(pathlib.Path(tempfile.mkdtemp()) / "nb.ipynb", ["pass"],
    ...                    parameters="epochs = 10")
    >>> check_parameters(nb, {"epochs": 5})
    []
    >>> check_parameters(nb, {"epoch": 5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: nb.ipynb declares no parameter 'epoch' (did you mean ...
    >>> check_parameters(nb, {"epoch": 5}, allow_unknown=True)  # doctest: +ELLIPSIS
    ["parameter 'epoch' is not declared in nb.ipynb (did you mean 'epochs'?); ..."]
    """
    from papermill.inspection import inspect_notebook

    refuse_secret_parameters(list(parameters))
    declared = inspect_notebook(str(notebook))
    listed = ", ".join(declared) or "none (no cell tagged 'parameters')"
    unknown = [name for name in parameters if name not in declared]
    if unknown and not allow_unknown:
        names = "; ".join(f"{name!r}{did_you_mean(name, declared)}" for name in unknown)
        raise UsageError(f"{notebook.name} declares no parameter {names}; declared: "
                         f"{listed}. Fix the name, or pass --allow-unknown-parameters "
                         "(allow_unknown=True) to inject it anyway")
    warnings = [f"parameter {name!r} is not declared in {notebook.name}"
                f"{did_you_mean(name, declared)}; declared: {listed}" for name in unknown]
    for name, value in parameters.items():
        spec = declared.get(name)
        if spec is None:
            continue
        kind = _declared_type(spec)
        allowed = _TYPES.get(kind)
        if allowed and value is not None and not _matches(value, allowed):
            raise UsageError(f"parameter {name!r} of {notebook.name} is declared {kind} "
                             f"(default {spec.get('default')}) but got "
                             f"{type(value).__name__} {value!r}")
    return warnings


def _declared_type(spec: dict[str, Any]) -> str:
    """The parameter's type: its annotation, else the type of its literal default."""
    import ast

    kind = str(spec.get("inferred_type_name") or "None")
    if kind != "None":
        return kind
    try:
        return type(ast.literal_eval(str(spec.get("default")))).__name__
    except (ValueError, SyntaxError):
        return "None"  # an expression: any value goes


def _matches(value: Any, allowed: tuple[type, ...]) -> bool:
    # bool is an int to Python, but not to someone who declared ``epochs = 10``.
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def default_output(notebook: Path) -> Path:
    """Where a run writes when no output is given: under ``$HYBRIDNB_HOME/notebooks``,
    one new file per run, never next to the source (a checkout stays clean).

    >>> default_output(Path("notebooks/03_training.ipynb")).parent.name
    'notebooks'
    """
    from ..state import state_home

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return state_home() / "notebooks" / f"{notebook.stem}-{stamp}-{uuid.uuid4().hex[:4]}.ipynb"


def run_notebook(notebook: str | Path, output: str | Path | None = None,
                 parameters: dict[str, Any] | None = None, *, timeout: float | None = None,
                 kernel_name: str | None = None, cwd: str | Path | None = None,
                 report: bool = False, record: bool = True, store: Any = None,
                 site: str = "local", save_every: float | None = None,
                 allow_unknown: bool = False,
                 on_section: Callable[[str], None] | None = None) -> NotebookRun:
    """Execute ``notebook`` with papermill and return what happened.

    Parameters
    ----------
    timeout:
        Seconds any one cell may run (``None``: no limit).
    cwd:
        The kernel's working directory (default: this process's).
    report:
        Also write an HTML report (figures inlined) next to the output notebook.
    record:
        Record the run in the state store (``hybridnb ps``).
    save_every:
        Seconds between saves of the partial output while cells run (``None``: the
        engine's default, :data:`hybridnb.notebooks.engine.SAVE_EVERY`); the output is
        always saved when the run ends, however it ends.
    allow_unknown:
        Inject parameters the notebook does not declare (a warning each) instead of
        refusing them (see :func:`check_parameters`).
    on_section:
        Called with each ``##`` heading of the notebook as the run reaches it (the
        CLI prints one line per stage).

    Examples
    --------
    >>> run = run_notebook("notebooks/01_sites_and_placement.ipynb",  # doctest: +SKIP
    ...                    parameters={"cpu": 4})
    >>> run.outcome, run.records                                       # doctest: +SKIP
    """
    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from ..state import Kind, StateStore, Status
    from .engine import ENGINE

    src = Path(notebook)
    if not src.is_file():
        raise UsageError(f"notebook not found: {src}")
    if src.suffix != ".ipynb":
        raise UsageError(f"{src} is not a notebook (.ipynb)")
    if cwd is not None and not Path(cwd).is_dir():
        raise UsageError(f"cwd={str(cwd)!r} is not a directory: give the directory the "
                         "notebook's kernel should start in")
    params = dict(parameters or {})
    warnings = check_parameters(src, params, allow_unknown=allow_unknown)
    for w in warnings:  # returned to the caller, which shows them (the CLI: once)
        logger.info(w)
    out = Path(output) if output is not None else default_output(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    st = (store or StateStore()) if record else None
    rec = st.add(Kind.notebook, src.name, site=site, pids=[os.getpid()],
                 spec={"input": str(src), "output": str(out), "parameters": params},
                 status=Status.running) if st else None
    fd, record_file = tempfile.mkstemp(prefix="hybridnb-records-", suffix=".jsonl")
    os.close(fd)
    # The kernel alone gets the record file: this process's environment stays as it is,
    # so runs in several threads of one process (a sweep) never see each other's file.
    kernel_env = {**os.environ, RECORD_ENV: record_file}
    start = time.perf_counter()
    outcome, error, failed_cell = Outcome.succeeded, None, None
    try:
        # Absolute paths: papermill resolves relative ones against a working directory
        # that it may change while the notebook runs.
        pm.execute_notebook(str(src.resolve()), str(out.resolve()), parameters=params,
                            engine_name=ENGINE, kernel_name=kernel_name, progress_bar=False,
                            log_output=False, execution_timeout=timeout,
                            kernel_env=kernel_env,
                            kernel_cwd=str(Path(cwd).resolve()) if cwd else None,
                            save_every=save_every, on_cell_start=_announcer(on_section))
    except pm.PapermillExecutionError as exc:
        outcome, failed_cell = Outcome.failed, exc.exec_count
        error = f"{exc.ename}: {exc.evalue}"
        if exc.ename == "DeadKernelError":
            outcome = Outcome.dead_kernel
    except CellTimeoutError as exc:
        limit = f"{timeout:g} s" if timeout else "its time limit"
        outcome, error = Outcome.timeout, f"a cell ran past {limit}: {exc}"
        failed_cell = stopped_at(out)
    except DeadKernelError as exc:
        outcome, error = Outcome.dead_kernel, f"the kernel died: {exc}"
        failed_cell = stopped_at(out)
    except NoSuchKernel as exc:
        _ended(st, rec, exc, "the kernel did not start")
        raise UsageError(f"no Jupyter kernel named {exc.name!r} (the notebook's or "
                         "kernel_name=): see `jupyter kernelspec list`") from None
    except BaseException as exc:
        # A kernel that would not start, Ctrl-C, ...: the record must not stay "running".
        _ended(st, rec, exc, "interrupted" if isinstance(exc, KeyboardInterrupt)
               else "did not finish")
        raise
    finally:
        seconds = time.perf_counter() - start
        records = read_records(record_file)
        os.unlink(record_file)
    if st and rec:
        st.update(rec.id, status=Status.succeeded if outcome is Outcome.succeeded
                  else Status.failed, error=error, message=outcome.value)
    run = NotebookRun(src, out, params, outcome, seconds, records, error, failed_cell,
                      warnings, None, rec.id if rec else None)
    if report and out.exists():
        run.report = write_report(out, parameters=params, records=records,
                                  outcome=outcome.value, seconds=seconds, error=error,
                                  failed_cell=failed_cell)
    return run


def heading(cell: Any) -> str | None:
    """The text of a markdown cell's ``##`` heading, if it opens with one: a stage.

    >>> import nbformat
    >>> heading(nbformat.v4.new_markdown_cell("## 3. Train\\nwith DDP"))
    '3. Train'
    >>> heading(nbformat.v4.new_markdown_cell("# Title")) is None
    True
    """
    if cell.get("cell_type") != "markdown":
        return None
    first = str(cell.get("source", "")).lstrip().splitlines()[:1]
    return first[0][3:].strip() if first and first[0].startswith("## ") else None


def _announcer(on_section: Callable[[str], None] | None) -> Callable[[Any], None] | None:
    """The engine's cell-start hook: ``on_section`` with each heading the run reaches."""
    if on_section is None:
        return None

    def started(cell: Any) -> None:
        title = heading(cell)
        if title:
            on_section(title)

    return started


def _ended(store: Any, rec: Any, exc: BaseException, message: str) -> None:
    """Mark a run's record ended by ``exc``: stopped for Ctrl-C, failed otherwise."""
    if store is None or rec is None:
        return
    from ..state import Status

    status = Status.stopped if isinstance(exc, KeyboardInterrupt) else Status.failed
    store.update(rec.id, status=status, message=message,
                 error=f"{type(exc).__name__}: {exc}"[:2000])


def stopped_at(notebook: Path) -> int | None:
    """The execution count of the cell where an executed notebook stopped, if any.

    That is the first cell papermill's metadata marks ``failed`` (hybridnb's engine also
    marks a cell stopped by a timeout or a dead kernel).
    """
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError):
        return None
    for cell in nb.cells:
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "failed":
            return cell.get("execution_count")
    return None
