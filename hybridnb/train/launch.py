"""``fit``: check a spec, launch its ranks, follow the run, bundle the model.

Launchers share one lifecycle (prepare → start → follow → finish, each step recorded in
the state store) and differ in one hook, how ranks start:

``local``
    torch.distributed's elastic agent in a child process (:mod:`hybridnb.train.agent`):
    c10d rendezvous on loopback, ``max_restarts`` restarts of the whole group.
``dask``
    one rank per worker of a hybridnb cluster (:mod:`hybridnb.train.dask_launch`).

``kubernetes`` is refused: hybridnb cannot yet follow a Kubeflow ``PyTorchJob`` to its
end and bring back its result, weights and bundle, and a launcher that returns nothing
would look like success. Render the job instead (:func:`hybridnb.train.pytorchjob`,
``hybridnb train SPEC --render kubernetes``): its run directory lives on a
PersistentVolumeClaim, so checkpoints, weights and restarts survive its pods.

Model modules: the check and every rank look for a ``"module:function"`` factory in the
same places (:func:`hybridnb.train.models.model_path`: the spec file's directory, then
the working directory); ranks get the list in ``$HYBRIDNB_MODEL_PATH``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import team
from ..errors import OperationError, UsageError, did_you_mean
from ..processes import free_port, stop_tree, tail
from ..state import Kind, StateStore, Status, state_home
from .agent import FAILURE, LAUNCH
from .follow import Follower
from .loop import RESULT, WEIGHTS
from .metrics import MetricsFollower, MetricsServer, write_textfile
from .result import TrainResult
from .spec import TrainSpec, load_spec

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..sites import ClusterHandle

logger = logging.getLogger(__name__)

LAUNCHERS = ("local", "dask")

KUBERNETES_REFUSED = (
    "launcher 'kubernetes' is not available: hybridnb cannot yet follow a PyTorchJob to its "
    "end and bring back its result, weights and bundle, and will not start a job it cannot "
    "report on. Render the job and apply it yourself: 'hybridnb train SPEC.yaml --render "
    "kubernetes --image IMAGE --run-claim PVC --out DIR' (from Python: "
    "hybridnb.train.pytorchjob(spec, nprocs=N, image=IMAGE, run_claim=PVC)), then 'kubectl "
    "apply -f DIR'; the run directory (checkpoints, weights, result.json) lives on the claim. "
    "Or train here with launcher 'local', or on a cluster's workers with 'dask'")


def check(spec: TrainSpec, *, nprocs: int, site: str = "local", launcher: str = "local",
          config: HybridConfig | None = None, warn: bool = True,
          model_path: list[str] | None = None) -> dict[str, int]:
    """Every check that can fail before a process starts; returns the split sizes.

    Raises :class:`UsageError` naming what is wrong: an unknown launcher, a model factory
    that does not import, a missing dataset, a batch larger than a rank's share of the
    data, more ranks than the site's CPUs (or GPUs). The factory is looked for where the
    ranks will look (``model_path``; default :func:`~hybridnb.train.models.model_path`
    of the spec's file).

    >>> check(TrainSpec(batch_size=4096), nprocs=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: batch_size 4096 is larger than the 628 training samples ...
    """
    from .data import data_sizes
    from .models import model_path as search_path
    from .models import resolve_factory
    from .optim import resolve_numerics

    if launcher == "kubernetes":
        raise UsageError(KUBERNETES_REFUSED)
    if launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {launcher!r}{did_you_mean(launcher, LAUNCHERS)}; "
                         f"use one of {', '.join(LAUNCHERS)}")
    if nprocs < 1:
        raise UsageError(f"nprocs must be ≥ 1, got {nprocs}")
    if spec.strategy == "single" and nprocs != 1:
        raise UsageError(f"strategy 'single' runs one process; got nprocs={nprocs}. Use "
                         "strategy ddp or fsdp, or nprocs=1")
    resolve_factory(spec.model.factory,
                    search_path(spec.source) if model_path is None else model_path)
    sizes = data_sizes(spec.data)
    per_rank = sizes.get("train", 0) // nprocs
    if spec.batch_size > per_rank:
        raise UsageError(f"batch_size {spec.batch_size} is larger than the {per_rank} training "
                         f"samples each of {nprocs} rank(s) gets ({sizes.get('train', 0)} in "
                         f"all); use batch_size ≤ {per_rank} or fewer ranks")
    num = resolve_numerics(spec, warn=warn)
    if launcher == "local":
        from ..config import load_config

        cfg = config or load_config()
        cap = cfg.site(site).capacity
        if num.device == "cpu" and nprocs > cap.cpu:
            raise UsageError(f"{nprocs} ranks exceed site '{site}' capacity of {cap.cpu:g} "
                             f"CPUs; use nprocs ≤ {int(cap.cpu)} or raise "
                             f"sites.{site}.capacity.cpu")
        if num.device == "cuda" and nprocs > cap.gpu:
            raise UsageError(f"{nprocs} ranks exceed site '{site}' capacity of {cap.gpu} GPUs; "
                             f"use nprocs ≤ {cap.gpu} or raise sites.{site}.capacity.gpu")
    return sizes


def _run_dir(spec: TrainSpec, run_dir: str | os.PathLike[str] | None, resume: bool) -> Path:
    if run_dir is None:
        if resume:
            raise UsageError("resume=True needs the run_dir of the run to continue")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return state_home() / "runs" / f"{spec.name}-{stamp}-{uuid.uuid4().hex[:4]}"
    path = Path(run_dir).expanduser().resolve()
    has_ckpt = (path / "checkpoints" / "latest").is_file()
    if resume and not has_ckpt:
        raise UsageError(f"nothing to resume in {path}: it has no checkpoint")
    if not resume and has_ckpt:
        raise UsageError(f"{path} already holds checkpoints of a run; pass resume=True "
                         "(--resume) to continue it, or choose a new run_dir")
    return path


def fit(spec: TrainSpec | dict[str, Any] | str | os.PathLike[str], *, site: str = "local",
        nprocs: int = 2, launcher: str = "local", run_dir: str | os.PathLike[str] | None = None,
        resume: bool = False, cluster: ClusterHandle | None = None,
        config: HybridConfig | None = None, store: StateStore | None = None,
        live: bool = False, bundle: bool = True, timeout: float | None = None) -> TrainResult:
    """Train a model with ``nprocs`` ranks and return the result.

    Parameters
    ----------
    spec:
        A :class:`TrainSpec`, a mapping, or the path of a YAML spec.
    site, nprocs, launcher:
        Where and how many ranks; ``launcher`` is ``local`` (elastic agent on this
        machine), ``dask`` (one rank per worker of ``cluster``, or of a cluster started on
        ``site``). ``kubernetes`` is refused with a message that says how to render
        the job instead (see the module docstring).
    run_dir, resume:
        The run directory (default under ``$HYBRIDNB_HOME/runs``); ``resume=True``
        continues from its latest checkpoint. For ``dask`` across hosts it must be on a
        file system every worker sees.
    live:
        In a notebook, plot loss and accuracy in place while training runs.
    bundle:
        Write a model bundle (``RUN_DIR/bundle``) at the end.
    timeout:
        Seconds before the run is stopped and reported as failed (``None``: no limit).

    Raises
    ------
    UsageError
        Bad input, before any process starts.
    OperationError
        A rank failed (the message names it and shows the end of its log).

    Examples
    --------
    >>> result = fit({"model": "digits_cnn", "epochs": 15}, nprocs=2)  # doctest: +SKIP
    >>> result.accuracy  # doctest: +SKIP
    0.98
    """
    from .models import model_path

    spec = load_spec(spec) if not isinstance(spec, TrainSpec) else spec
    if launcher == "dask" and cluster is not None:
        nprocs = nprocs or len(cluster.workers())
    search = model_path(spec.source)  # where the check, the ranks and the bundle look
    check(spec, nprocs=nprocs, site=site, launcher=launcher, config=config,
          model_path=search)
    path = _run_dir(spec, run_dir, resume)
    path.mkdir(parents=True, exist_ok=True)
    for stale in (FAILURE, RESULT):
        (path / stale).unlink(missing_ok=True)
    (path / "spec.json").write_text(spec.to_json(), encoding="utf-8")
    store = store or StateStore()
    lease = team.admit("run", site, {"cpus": nprocs, "gpus": nprocs if spec.device == "cuda"
                                     else 0}, config=config)  # quotas (no-op outside a hub)
    rec = store.add(Kind.run, spec.name, site, backend=launcher, status=Status.starting,
                    spec={"spec": spec.model_dump(mode="json"), "run_dir": str(path),
                          "nprocs": nprocs, "launcher": launcher, "resume": resume})
    logger.info("training %r with %d rank(s) (%s) in %s", spec.name, nprocs, launcher, path)
    # The run's gauges over HTTP while it runs: monitoring (and a team's Prometheus, via
    # the file_sd export) finds the address in the state store.
    metrics = MetricsServer(path, run=spec.name)
    store.update(rec.id, address=metrics.url)
    try:
        if launcher == "dask":
            from .dask_launch import run_on_dask

            run_on_dask(spec, path, nprocs=nprocs, site=site, cluster=cluster, config=config,
                        store=store, record_id=rec.id, live=live, timeout=timeout,
                        model_path=search)
        else:
            _run_local(spec, path, nprocs, store, rec.id, live, timeout, search)
        result = _finish(spec, path, bundle, search)
    except BaseException as exc:
        status = Status.stopped if isinstance(exc, KeyboardInterrupt) else Status.failed
        store.update(rec.id, status=status, error=str(exc)[:2000])
        lease.release(status.value)
        raise
    finally:
        metrics.close()
    lease.release("succeeded")
    result.record_id, result.launcher = rec.id, launcher
    summary = {k: result.result.get(k) for k in ("test_accuracy", "test_loss", "steps",
                                                   "precision", "seconds")}
    store.update(rec.id, status=Status.succeeded, message=f"test accuracy "
                 f"{result.accuracy:.4f}", spec={**rec.spec, "result": summary,
                                                 "bundle": str(result.bundle or "")})
    return result


def _run_local(spec: TrainSpec, path: Path, nprocs: int, store: StateStore, record_id: str,
               live: bool, timeout: float | None, model_path: list[str]) -> None:
    from .models import ENV_MODEL_PATH

    (path / "logs").mkdir(exist_ok=True)
    (path / LAUNCH).write_text(json.dumps({
        "nprocs": nprocs, "port": free_port(), "max_restarts": spec.max_restarts,
        "threads": spec.threads,
        "run_id": f"{spec.name}-{uuid.uuid4().hex[:8]}", "python": sys.executable}),
        encoding="utf-8")
    with open(path / "logs" / "agent.log", "ab") as log:
        # A session of its own: one signal reaches the agent, never the notebook kernel.
        # The agent's ranks inherit its environment: there they find the model path.
        env = {**os.environ, ENV_MODEL_PATH: os.pathsep.join(model_path)}
        proc = subprocess.Popen([sys.executable, "-m", "hybridnb.train.agent", str(path)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    store.update(record_id, status=Status.running, pids=[proc.pid])
    follow = Follower(spec, path, store, record_id, live, timeout)
    try:
        while True:
            try:
                proc.wait(timeout=follow.every)  # returns as soon as the agent exits
                break
            except subprocess.TimeoutExpired:
                follow.tick()
            if follow.expired():
                raise OperationError(f"training run {spec.name!r} did not finish within "
                                     f"{timeout:g} s; stopped it. Logs: {path / 'logs'}")
        follow.tick(final=True)
    finally:
        if proc.poll() is None:
            stop_tree(proc.pid)
            proc.wait()
    if proc.returncode != 0:
        raise OperationError(failure_message(spec, path))


def failure_message(spec: TrainSpec, path: Path) -> str:
    """What failed, naming the rank, with the end of its log."""
    try:
        record = json.loads((path / FAILURE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (f"training run {spec.name!r} failed before its ranks reported; agent log "
                f"{path / 'logs' / 'agent.log'}:\n{tail(path / 'logs' / 'agent.log', 15)}")
    first = record["failures"][0]
    how = (f"was killed by {first['signal']}" if first.get("signal")
           else f"exited with code {first['exitcode']}")
    message = (first.get("message") or "").strip()
    log = path / "logs" / f"rank{first['rank']}.log"
    restarts = f" after {spec.max_restarts} restart(s)" if spec.max_restarts else ""
    return (f"training run {spec.name!r} failed{restarts}: rank {first['rank']} (pid "
            f"{first['pid']}) {how}" + (f": {message}" if message else "")
            + f". Log {log}, last lines:\n{tail(log, 15)}")


def _finish(spec: TrainSpec, path: Path, make_bundle: bool,
            model_path: list[str] | None = None) -> TrainResult:
    try:
        result = json.loads((path / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise OperationError(f"training run {spec.name!r} ended without {path / RESULT}; "
                             f"see {path / 'logs'}") from None
    bundle_path = write_run_bundle(spec, path, result, model_path) if make_bundle else None
    out = TrainResult(spec.name, path, result, MetricsFollower(path).poll(all_rows=True),
                      bundle_path)
    write_textfile(out.metrics, path / "metrics.prom", run=spec.name)
    return out


def write_run_bundle(spec: TrainSpec, path: Path, result: dict[str, Any],
                 model_path: list[str] | None = None) -> Path | None:
    """Write ``RUN_DIR/bundle`` with :func:`hybridnb.serve.bundle` (``None`` if missing)."""
    try:
        from ..serve.model_bundle import bundle
    except ImportError:  # the serving extra is not installed: weights are still there
        logger.warning("hybridnb.serve is not available: no model bundle written")
        return None
    import torch
    from safetensors.torch import load_file

    from .models import build_model

    model = build_model(spec.model.factory, spec.model.kwargs, path=model_path)
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    target = path / "bundle"
    if target.exists():
        shutil.rmtree(target)
    metrics = {k: result.get(k) for k in ("test_accuracy", "test_loss", "val_accuracy",
                                          "steps", "precision", "world_size")}
    metrics["spec_hash"] = spec.hash()
    example = torch.zeros(1, *result["input_shape"])
    bundle(model, example, target, name=spec.name, labels=result.get("labels"),
           preprocessing=result.get("preprocessing") or None, metrics=metrics)
    return target
