"""Notebook jobs: a notebook run with parameters, queued, on a site the planner chose.

A job is a record of kind ``job`` in the state store; everything about it lives there
and in its directory ``$HYBRIDNB_HOME/jobs/ID/`` (the executed notebook, the HTML report,
``job.log``), never next to the notebook. Jobs outlive whoever submitted them (a
browser tab, the Jupyter server, a CLI command): each runs in a detached process of its
own (:mod:`hybridnb.notebooks.job_process`), and the queue moves on without any server:
a job that ends claims the next queued one (:meth:`~hybridnb.state.StateStore.claim`,
one ``BEGIN IMMEDIATE`` transaction).

**Where it runs.** :func:`submit` asks the planner (:func:`hybridnb.placement.plan`,
kind ``notebook``) with what the notebook says it needs:

- ``metadata.hybridnb.data``: datasets (configured names) the notebook always reads;
- parameters that name datasets: those listed in ``metadata.hybridnb.data_parameters``,
  or else those called ``dataset``/``datasets`` or ending in ``_dataset``/``_datasets``
  (their value, a name or a list of names, counts);
- ``metadata.hybridnb.resources``: ``cpu``, ``gpu``, ``memory``, ``hours`` (default one
  CPU for one hour).

A site given explicitly must pass the planner's rules except the placement policy's
preference (residency, capacity, budget and tier still apply): a notebook reading a
``pii`` dataset is refused on a site that may not hold ``pii``, naming the rule.

**How it runs**, by the site's backend (:data:`MODES`):

- ``local``: a detached process runs :func:`hybridnb.notebooks.runner.run_notebook`
  (papermill), with the kernel in the notebook's directory, as JupyterLab starts one;
- ``dask``: a site that is not ``local`` (or any site, with ``cluster=``) runs the job as
  a task on a worker of that site's running cluster (pinned by its site resource); the
  task runs papermill in a subprocess on that worker and stops it when the job is
  cancelled (a ``distributed.Event``);
- ``kubernetes``: the Job and ConfigMap of :func:`hybridnb.notebooks.k8s.notebook_job`
  are rendered into the job's directory, and created only when the site has a kubeconfig
  context. Without one (as on machines with no cluster) the job ends ``failed`` at once,
  saying where the rendered manifest is.

The per-user concurrency cap is ``jobs.max_concurrent`` in the configuration.

>>> JobStatus.of(Status.pending).value, JobStatus.of(Status.stopped).value
('queued', 'cancelled')
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from .. import team
from ..errors import FieldError, UsageError, did_you_mean
from ..state import Kind, Record, StateStore, Status, state_home

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..placement import Plan

logger = logging.getLogger(__name__)

MODES = ("local", "dask", "kubernetes")
#: Seconds a claimed job may stay ``starting`` without a process before it counts as failed.
STUCK_AFTER = 60.0
_DATA_PARAMETER = re.compile(r"^(.+_)?datasets?$")
LOG = "job.log"


class JobStatus(str, Enum):
    """A job's status on the wire and in lists (from its record's :class:`Status`)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @classmethod
    def of(cls, status: Status) -> JobStatus:
        return _STATUS[status]


_STATUS = {Status.pending: JobStatus.queued, Status.starting: JobStatus.running,
           Status.running: JobStatus.running, Status.stopping: JobStatus.running,
           Status.stopped: JobStatus.cancelled, Status.succeeded: JobStatus.succeeded,
           Status.failed: JobStatus.failed, Status.lost: JobStatus.failed}


class Job(BaseModel):
    """One notebook job: the same shape in ``hybridnb jobs list --json`` and over HTTP."""

    id: str
    name: str
    notebook: str = Field(description="Absolute path of the input notebook")
    parameters: dict[str, Any] = Field(default_factory=dict)
    site: str
    mode: str = Field(description="local, dask or kubernetes")
    cluster: str | None = Field(None, description="The cluster id a dask job runs on")
    status: JobStatus
    data: list[str] = Field(default_factory=list, description="Datasets the notebook reads")
    plan: str = Field("", description="Why this site: the planner's explanation")
    started_from: str = "python"
    owner: str
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    output: str | None = Field(None, description="The executed notebook, once it exists")
    report: str | None = Field(None, description="The HTML report, once it exists")
    manifest: str | None = Field(None, description="Rendered Kubernetes objects (kubernetes)")
    log: str = Field(description="The job's log file")

    @classmethod
    def from_record(cls, rec: Record) -> Job:
        spec = rec.spec
        def existing(key: str) -> str | None:
            path = spec.get(key)
            return str(path) if path and Path(path).exists() else None

        return cls(id=rec.id, name=rec.name, notebook=str(spec.get("notebook", "")),
                   parameters=spec.get("parameters") or {}, site=rec.site,
                   mode=rec.backend or "local", cluster=spec.get("cluster"),
                   status=JobStatus.of(rec.status), data=spec.get("data") or [],
                   plan=spec.get("plan", ""), started_from=spec.get("started_from", "python"),
                   owner=rec.owner, created_at=rec.created_at, started_at=rec.started_at,
                   ended_at=rec.ended_at, error=rec.error, output=existing("output"),
                   report=existing("report"), manifest=existing("manifest"),
                   log=str(spec.get("log", "")))


class Parameter(BaseModel):
    """A parameter declared in a notebook's ``parameters`` cell."""

    name: str
    default: str | None = Field(None, description="The default as written in the cell")
    type: str = Field("None", description="Its declared or inferred type; None: any")
    help: str = ""


class NotebookInfo(BaseModel):
    """What a notebook declares: parameters, datasets read, resources wanted."""

    parameters: list[Parameter]
    data: list[str] = Field(default_factory=list, description="metadata.hybridnb.data")
    data_parameters: list[str] = Field(default_factory=list)
    resources: dict[str, Any] = Field(default_factory=dict)


def job_dir(job_id: str) -> Path:
    """Where a job's files live: ``$HYBRIDNB_HOME/jobs/ID``."""
    return state_home() / "jobs" / job_id


def inspect(notebook: str | Path) -> NotebookInfo:
    """The parameters (from the cell tagged ``parameters``) and the ``hybridnb`` metadata.

    >>> import json, tempfile, pathlib
    >>> nb = pathlib.Path(tempfile.mkdtemp()) / "a.ipynb"
    >>> _ = nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "n = 2",
    ...     "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None}],
    ...     "metadata": {"hybridnb": {"data": ["digits"]}, "kernelspec": {"name": "python3",
    ...     "language": "python"}},
    ...     "nbformat": 4, "nbformat_minor": 4}))
    >>> info = inspect(nb)
    >>> [(p.name, p.default, p.type) for p in info.parameters], info.data
    ([('n', '2', 'int')], ['digits'])
    """
    import nbformat
    from papermill.inspection import inspect_notebook

    path = _notebook_path(notebook)
    try:
        nb = nbformat.read(path, as_version=4)
        declared = inspect_notebook(str(path))
    except Exception as exc:  # not JSON, not a notebook: bad input, said plainly
        raise FieldError(f"{path.name} is not a readable notebook: {exc}",
                         field="notebook") from None
    meta = (nb.get("metadata") or {}).get("hybridnb") or {}
    if not isinstance(meta, dict):
        raise FieldError(f"{path.name}: metadata.hybridnb must be a mapping", field="notebook")
    params = [Parameter(name=name, default=spec.get("default"), type=_declared_type(spec),
                        help=spec.get("help") or "") for name, spec in declared.items()]
    data = _names(meta.get("data"), f"{path.name}: metadata.hybridnb.data")
    data_params = _names(meta.get("data_parameters"),
                         f"{path.name}: metadata.hybridnb.data_parameters")
    resources = meta.get("resources") or {}
    if not isinstance(resources, dict):
        raise FieldError(f"{path.name}: metadata.hybridnb.resources must be a mapping "
                         "(cpu, gpu, memory, hours)", field="notebook")
    return NotebookInfo(parameters=params, data=data, data_parameters=data_params,
                        resources=resources)


def _declared_type(spec: dict[str, Any]) -> str:
    import ast

    kind = str(spec.get("inferred_type_name") or "None")
    if kind != "None":
        return kind
    try:
        return type(ast.literal_eval(str(spec.get("default")))).__name__
    except (ValueError, SyntaxError):
        return "None"


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FieldError(f"{where} must be a name or a list of names", field="notebook")


def _notebook_path(notebook: str | Path) -> Path:
    path = Path(notebook)
    if not path.is_file():
        raise FieldError(f"notebook not found: {path}", field="notebook", reason="not_found")
    if path.suffix != ".ipynb":
        raise FieldError(f"{path.name} is not a notebook (.ipynb)", field="notebook")
    return path.resolve()


def check_parameters(notebook: str | Path, parameters: Any,
                     info: NotebookInfo | None = None) -> dict[str, Any]:
    """The parameters a job runs with, checked against the notebook's ``parameters`` cell.

    Every name must be declared there. A string given for a parameter declared as a
    number, boolean, list or mapping is parsed as YAML (as ``hybridnb run -p`` does), so
    forms may send text; one that does not parse, or a value of the wrong type, is a
    :class:`~hybridnb.errors.FieldError` naming ``parameters.NAME``.
    """
    import yaml

    from .runner import check_parameters as check_types

    path = _notebook_path(notebook)
    info = info or inspect(path)
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise FieldError("parameters must be a mapping of name to value", field="parameters")
    declared = {p.name: p for p in info.parameters}
    out: dict[str, Any] = {}
    for name, value in parameters.items():
        field = f"parameters.{name}"
        spec = declared.get(name)
        if spec is None:
            listed = ", ".join(declared) or "none (no cell tagged 'parameters')"
            raise FieldError(f"parameter {name!r} is not declared in {path.name}"
                             f"{did_you_mean(name, declared)}; declared: {listed}", field=field)
        if isinstance(value, str) and spec.type not in ("str", "None"):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise FieldError(f"parameter {name!r} of {path.name} is declared {spec.type}, "
                                 f"and {value!r} does not parse: {exc}", field=field) from None
        try:
            check_types(path, {name: value})
        except UsageError as exc:
            raise FieldError(str(exc), field=field) from None
        out[name] = value
    return out


def datasets_read(info: NotebookInfo, parameters: dict[str, Any],
                  config: HybridConfig) -> list[str]:
    """The configured datasets a run reads: the metadata's, and those parameters name.

    Parameters named in ``data_parameters`` (else ``dataset``, ``datasets``,
    ``*_dataset``, ``*_datasets``) count, with their value or else their default.
    """
    import ast

    names = list(info.data)
    for name in names:
        if name not in config.datasets:
            raise FieldError(f"metadata.hybridnb.data names unknown dataset {name!r}"
                             f"{did_you_mean(name, config.datasets)}; configured: "
                             f"{', '.join(config.datasets) or 'none'}", field="notebook")
    chosen = set(info.data_parameters) if info.data_parameters else {
        p.name for p in info.parameters if _DATA_PARAMETER.match(p.name)}
    for p in info.parameters:
        if p.name not in chosen:
            continue
        if p.name in parameters:
            value = parameters[p.name]
        else:
            try:
                value = ast.literal_eval(p.default or "None")
            except (ValueError, SyntaxError):
                continue  # an expression: nothing the planner can know
        for item in [value] if isinstance(value, str) else value or []:
            if not isinstance(item, str) or not item:
                continue
            if item not in config.datasets:
                raise FieldError(f"parameter {p.name!r} names unknown dataset {item!r}"
                                 f"{did_you_mean(item, config.datasets)}; configured: "
                                 f"{', '.join(config.datasets) or 'none'}",
                                 field=f"parameters.{p.name}")
            names.append(item)
    return list(dict.fromkeys(names))


def explain(plan: Plan, site: str) -> str:
    """One paragraph: the site chosen, the others ranked, and why others were rejected."""
    chosen = next((c for c in plan.choices if c.site == site), None)
    parts = [f"{site}: " + (f"rank {chosen.rank} of {len(plan.choices)} feasible"
                            if chosen else "chosen explicitly")
             + f" (policy {plan.policy}; {plan.request.describe()})"]
    others = [c.site for c in plan.choices if c.site != site]
    if others:
        parts.append("also feasible: " + ", ".join(others))
    parts += [f"rejected {r.site}: {'; '.join(r.reasons)}" for r in plan.rejected
              if r.site != site]
    parts += list(plan.notes)
    return ". ".join(parts)


def field_of(plan: Plan) -> str | None:
    """The request field most rejections are about (the field a UI marks)."""
    from collections import Counter

    kinds = Counter(str(r.kind) for rej in plan.rejected for r in rej.reasons)
    if not kinds:
        return None
    kind = kinds.most_common(1)[0][0]
    if kind == "capacity":
        text = " ".join(r.message for rej in plan.rejected for r in rej.reasons)
        return next((f for f in ("gpu", "memory", "cpu") if f.upper() in text.upper()), "cpu")
    return {"residency": "data", "budget": "budget", "deadline": "deadline",
            "tier": "tiers", "policy": "site"}.get(kind)


def choose_site(plan: Plan, site: str | None, config: HybridConfig) -> str:
    """The site a job runs on: ``site`` if the rules allow it, else the planner's best."""
    if site is not None:
        if site not in config.sites:
            raise FieldError(f"unknown site {site!r}{did_you_mean(site, config.sites)}; "
                             f"configured sites: {', '.join(config.sites)}", field="site")
        rejected = next((r for r in plan.rejected if r.site == site), None)
        binding = [r for r in (rejected.reasons if rejected else ()) if str(r.kind) != "policy"]
        if binding:
            raise FieldError(f"site {site!r} may not run this notebook: "
                             + "; ".join(binding), field="site", reason="unsatisfiable")
        return site
    if plan.chosen is None:
        lines = "; ".join(f"{r.site}: {', '.join(r.reasons)}" for r in plan.rejected)
        raise FieldError(f"no site can run this {plan.request.describe()} ({lines or 'no sites'})",
                         field=field_of(plan), reason="unsatisfiable")
    return plan.chosen.site


def _mode(site: str, cluster: str | None, config: HybridConfig,
          store: StateStore) -> tuple[str, Record | None]:
    """How a job runs on ``site``: a local process, a task on a cluster, or Kubernetes."""
    backend = config.site(site).backend
    if cluster is not None:
        rec = next((r for r in store.list(Kind.cluster, active=True)
                    if cluster in (r.id, r.name)), None)
        if rec is None or rec.status is not Status.running:
            running = ", ".join(r.name for r in store.list(Kind.cluster, active=True)) or "none"
            raise FieldError(f"no running cluster {cluster!r}; running: {running}",
                             field="cluster", reason="not_found")
        if site not in rec.spec.get("sites", [rec.site]):
            raise FieldError(f"cluster {rec.name!r} has no workers on site {site!r} (its sites: "
                             f"{', '.join(rec.spec.get('sites', [rec.site]))})", field="cluster")
        return "dask", rec
    if backend == "kubernetes":
        return "kubernetes", None
    if backend == "local":
        return "local", None
    clusters = [r for r in store.list(Kind.cluster, active=True)
                if r.status is Status.running and site in r.spec.get("sites", [r.site])]
    if not clusters:
        raise FieldError(f"site {site!r} ({backend}) runs notebooks on a Dask cluster, and none "
                         f"is running there: start one (hybridnb cluster up {site}) or choose "
                         "another site", field="site", reason="conflict")
    return "dask", clusters[0]


def submit(notebook: str | Path, parameters: dict[str, Any] | None = None, *,
           site: str | None = None, cluster: str | None = None,
           timeout: float | None = None, started_from: str = "python",
           config: HybridConfig | None = None, store: StateStore | None = None) -> Job:
    """Queue ``notebook`` with ``parameters`` and start it if the cap allows.

    Parameters
    ----------
    site:
        Where to run it; ``None`` lets the planner choose.
    cluster:
        Run as a task on this running cluster (id or name) of ``site``.
    timeout:
        Seconds any one cell may run.
    started_from:
        Shown in lists: ``cli``, ``sidebar``, ``python``.

    Raises
    ------
    FieldError
        For bad input, naming the field (``notebook``, ``parameters.NAME``, ``site``, …).

    Examples
    --------
    >>> job = submit("notebooks/01_sites_and_placement.ipynb", {"cpu": 4})  # doctest: +SKIP
    >>> job.status, job.site                                                # doctest: +SKIP
    (<JobStatus.running: 'running'>, 'local')
    """
    from ..config import load_config
    from ..placement import plan as make_plan

    config = config or load_config()
    store = store or StateStore()
    path = _notebook_path(notebook)
    info = inspect(path)
    params = check_parameters(path, parameters, info)
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise FieldError(f"timeout must be a positive number of seconds, got {timeout!r}",
                         field="timeout")
    data = datasets_read(info, params, config)
    res = info.resources
    try:
        plan = make_plan("notebook", cpu=res.get("cpu", 1), gpu=res.get("gpu", 0),
                         memory=res.get("memory", 0), hours=res.get("hours", 1.0), data=data,
                         config=config)
    except FieldError:
        raise
    except UsageError as exc:
        raise FieldError(f"{path.name}: metadata.hybridnb.resources: {exc}",
                         field="notebook") from None
    chosen = choose_site(plan, site, config)
    mode, cluster_rec = _mode(chosen, cluster, config, store)
    lease = team.admit("job", chosen, {"cpus": res.get("cpu", 1), "gpus": res.get("gpu", 0)},
                       config=config)  # the team's quotas (no-op outside a hub)
    rec = store.add(Kind.job, path.stem, chosen, backend=mode, status=Status.pending, spec={
        "lease": lease.ref(), "notebook": str(path), "parameters": params, "data": data,
        "plan": explain(plan, chosen), "cluster": cluster_rec.id if cluster_rec else None,
        "timeout": timeout, "started_from": started_from})
    directory = job_dir(rec.id)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    store.merge_spec(rec.id, {"dir": str(directory), "log": str(directory / LOG),
                              "output": str(directory / path.name),
                              "report": str(directory / f"{path.stem}.html")})
    advance(store, config=config)
    return Job.from_record(store.get(rec.id))


def advance(store: StateStore | None = None, *, config: HybridConfig | None = None,
            limit: int | None = None) -> list[str]:
    """Start queued jobs of this user while fewer than the cap run; return their ids.

    Called after a submit, by every job that ends, and by lists (so a queue whose last
    runner was killed moves on when someone looks).
    """
    store = store or StateStore()
    if limit is None:
        from ..config import load_config

        limit = (config or load_config()).jobs.max_concurrent
    owner = getpass.getuser()
    _sweep(store, owner)
    started = []
    while (rec := store.claim(Kind.job, owner=owner, limit=limit)) is not None:
        try:
            pid = _launch(rec)
        except Exception as exc:
            logger.warning("job %s did not start: %s", rec.id, exc)
            store.update(rec.id, status=Status.failed, error=f"did not start: {exc}")
            continue
        store.update(rec.id, pids=[pid], message=f"job process {pid}")
        started.append(rec.id)
    return started


def _sweep(store: StateStore, owner: str) -> None:
    """Jobs whose process died without a word are failed; so are claims never started."""
    now = time.time()
    for rec in store.list(Kind.job, active=True, owner=owner):
        if not rec.local:
            continue
        if rec.pids and not any(p.alive() for p in rec.pids):
            team.release_ref(rec.spec.get("lease"), "lost")
            store.update(rec.id, status=Status.lost, error="the job's process ended without "
                         f"a result (see {rec.spec.get('log')})")
        elif rec.status is Status.starting and not rec.pids and now - rec.updated_at > STUCK_AFTER:
            store.update(rec.id, status=Status.failed, error="its process never started")


def _launch(rec: Record) -> int:
    from ..processes import spawn_detached

    log = Path(rec.spec["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    return spawn_detached([sys.executable, "-m", "hybridnb.notebooks.job_process", "run",
                           rec.id], log)


def list_jobs(store: StateStore | None = None, *, active: bool | None = None) -> list[Job]:
    """This user's jobs, newest first (``active=True``: queued and running only)."""
    store = store or StateStore()
    return [Job.from_record(r) for r in store.list(Kind.job, active=active,
                                                    owner=getpass.getuser())]


def get(job_id: str, store: StateStore | None = None) -> Job:
    """The job ``job_id``; a :class:`FieldError` (``not_found``) if there is none."""
    return Job.from_record(_record(job_id, store or StateStore()))


def _record(job_id: str, store: StateStore) -> Record:
    try:
        rec = store.get(job_id)
    except KeyError:
        rec = None
    if rec is None or rec.kind is not Kind.job:
        raise FieldError(f"no job {job_id!r}; see 'hybridnb jobs list'", field="id",
                         reason="not_found")
    return rec


def log_tail(job_id: str, lines: int = 40, store: StateStore | None = None) -> str:
    """The last ``lines`` lines of the job's log ('' before it has one)."""
    rec = _record(job_id, store or StateStore())
    try:
        with open(rec.spec["log"], "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except (OSError, KeyError):
        return ""
    return "\n".join(text.splitlines()[-lines:])


def cancel(job_id: str, store: StateStore | None = None, grace: float = 5.0) -> Job:
    """Cancel a queued or running job: its process tree is stopped, its status cancelled.

    A job already ended is returned as it is.
    """
    from ..cleanup import terminate

    store = store or StateStore()
    rec = _record(job_id, store)
    if not rec.status.active:
        return Job.from_record(rec)
    if rec.status is Status.pending:
        # Not claimed yet: mark it so no claimer starts it. (A claim between the read and
        # this write leaves a process that sees the cancellation when it starts.)
        store.update(rec.id, status=Status.stopped, message="cancelled while queued")
        team.release_ref(rec.spec.get("lease"), "stopped")
        return Job.from_record(store.get(rec.id))
    store.update(rec.id, status=Status.stopping, message="cancelling")
    terminate(store.get(rec.id), grace=grace)
    store.update(rec.id, status=Status.stopped, message="cancelled")
    team.release_ref(rec.spec.get("lease"), "stopped")
    advance(store)
    return Job.from_record(store.get(rec.id))
