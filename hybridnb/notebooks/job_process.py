"""The process of one notebook job (``python -m hybridnb.notebooks.job_process run ID``).

:mod:`hybridnb.notebooks.jobs` queues jobs and starts this process, detached, for each
one it claims. It runs the job where its record says (here, as a task on a Dask worker,
or as a Kubernetes Job), records how it ended, and claims the next queued job: the
queue moves on with no server running.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import team
from ..state import Record, StateStore, Status
from .jobs import advance

logger = logging.getLogger(__name__)


def run(job_id: str) -> int:
    """The detached job process: run the job, record how it ended, start the next one."""
    from ..state import ProcessRef

    store = StateStore()
    rec = store.get(job_id)
    if rec.status is not Status.starting:
        logger.info("job %s is %s, not starting: nothing to do", job_id, rec.status.value)
        return 0
    store.update(job_id, status=Status.running, pids=[ProcessRef.of(os.getpid())],
                 message=f"running in pid {os.getpid()} ({rec.backend})")
    status, error = Status.failed, None
    try:
        if rec.backend == "dask":
            status, error = _run_on_dask(rec, store)
        elif rec.backend == "kubernetes":
            status, error = _run_on_kubernetes(rec)
        else:
            status, error = _run_here(rec)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        if store.get(job_id).status.active:  # a cancel already wrote its own end
            store.update(job_id, status=status, error=error,
                         message=f"ended {status.value}")
        team.release_ref(rec.spec.get("lease"), store.get(job_id).status.value)  # ledger
        logger.info("job %s ended %s%s", job_id, status.value, f": {error}" if error else "")
        advance(store)
    return 0


def _outcome(outcome: str, error: str | None) -> tuple[Status, str | None]:
    return (Status.succeeded, None) if outcome == "succeeded" else (
        Status.failed, f"{outcome}: {error}" if error else outcome)


def _run_here(rec: Record) -> tuple[Status, str | None]:
    from .runner import run_notebook

    spec = rec.spec
    notebook = Path(spec["notebook"])
    run = run_notebook(notebook, spec["output"], spec.get("parameters") or {},
                       timeout=spec.get("timeout"), cwd=notebook.parent, report=True,
                       record=False, site=rec.site)
    return _outcome(run.outcome.value, run.error)


def _run_on_dask(rec: Record, store: StateStore) -> tuple[Status, str | None]:
    import signal

    from distributed import Event

    from ..fileio import atomic_write_bytes, atomic_write_text
    from ..sites import connect

    spec = rec.spec
    handle = connect(spec["cluster"], store=store)
    event = f"hybridnb-cancel-{rec.id}"
    try:
        cancel = Event(event, client=handle.client)
        # SIGTERM (a cancel) tells the task to stop its papermill process, then ends us.
        signal.signal(signal.SIGTERM, lambda *_: (cancel.set(), os._exit(143)))
        text = Path(spec["notebook"]).read_text(encoding="utf-8")
        fut = handle.client.submit(remote_run, text, spec.get("parameters") or {},
                                   spec.get("timeout"), event, key=f"hybridnb-job-{rec.id}",
                                   pure=False, **handle.pin(sites=[rec.site]))
        result = fut.result()
    finally:
        handle.close()
    if result.get("output") is not None:
        atomic_write_bytes(spec["output"], result["output"])
    if result.get("report") is not None:
        atomic_write_text(spec["report"], result["report"])
    logger.info("ran on worker %s:\n%s", result.get("worker"), result.get("log", ""))
    return _outcome(result["outcome"], result.get("error"))


def remote_run(text: str, parameters: dict[str, Any], timeout: float | None,
               event: str) -> dict[str, Any]:
    """Runs on a Dask worker: papermill in a subprocess, stopped if ``event`` is set."""
    import subprocess
    import tempfile

    from distributed import Event, get_worker

    from ..processes import stop_tree

    with tempfile.TemporaryDirectory(prefix="hybridnb-job-") as tmp:
        src, out = Path(tmp) / "notebook.ipynb", Path(tmp) / "output.ipynb"
        src.write_text(text, encoding="utf-8")
        args = {"input": str(src), "output": str(out), "parameters": parameters,
                "timeout": timeout}
        with open(Path(tmp) / "log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "hybridnb.notebooks.job_process", "exec",
                                     json.dumps(args)], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=tmp, start_new_session=True)
        cancel = Event(event)
        while proc.poll() is None:
            if cancel.wait(timeout=0.5):
                stop_tree(proc.pid)
                proc.wait()
                return {"outcome": "cancelled", "worker": get_worker().address}
        result: dict[str, Any] = {"worker": get_worker().address,
                                  "log": (Path(tmp) / "log").read_text(errors="replace")[-8000:]}
        try:
            result.update(json.loads((Path(tmp) / "result.json").read_text()))
        except (OSError, ValueError):
            result.update(outcome="failed", error=f"papermill exited {proc.returncode}")
        if out.exists():
            result["output"] = out.read_bytes()
        report = out.with_suffix(".html")
        if report.exists():
            result["report"] = report.read_text(encoding="utf-8")
        return result


def _exec(args: dict[str, Any]) -> int:
    """``exec``: one papermill run in this directory, its outcome to ``result.json``."""
    from ..fileio import atomic_write_json
    from .runner import run_notebook

    run = run_notebook(args["input"], args["output"], args["parameters"],
                       timeout=args.get("timeout"), report=True, record=False)
    atomic_write_json("result.json", {"outcome": run.outcome.value, "error": run.error})
    return 0


def _run_on_kubernetes(rec: Record) -> tuple[Status, str | None]:
    from ..config import load_config
    from ..sites.kubernetes import kube_context
    from .k8s import notebook_job, submit_notebook, write_notebook_job

    spec = rec.spec
    config = load_config()
    opts = config.site(rec.site).kubernetes
    if opts is None:
        return Status.failed, f"site {rec.site!r} has no kubernetes options"
    nb_job = notebook_job(spec["notebook"], spec.get("parameters") or {},
                          image=opts.image, namespace=opts.namespace, env=opts.env,
                          timeout=spec.get("timeout"), service_account=opts.service_account)
    # The Job and its ConfigMap in one file, a Secret (if any) alone beside it (mode 0600).
    manifest, secret = write_notebook_job(nb_job, spec["dir"])
    StateStore().merge_spec(rec.id, {"manifest": str(manifest)})
    if kube_context(opts.context) is None:
        files = f"-f {secret} -f {manifest}" if secret is not None else f"-f {manifest}"
        return Status.failed, (f"site {rec.site!r} has no configured Kubernetes cluster (no "
                               f"kubeconfig context): the Job is rendered only, at {manifest}; "
                               f"apply it with: kubectl apply {files}")
    submitted = submit_notebook(spec["notebook"], spec.get("parameters") or {}, site=rec.site,
                                config=config, timeout=spec.get("timeout"))
    return _follow_kubernetes(submitted, opts.context)


def _follow_kubernetes(job: dict[str, Any], context: str | None,
                       every: float = 5.0) -> tuple[Status, str | None]:
    """Wait for a submitted Job to complete (needs a live cluster: not run in CI here)."""
    from kubernetes import client
    from kubernetes import config as kconfig

    kconfig.load_kube_config(context=context)
    api, meta = client.BatchV1Api(), job["metadata"]
    while True:
        status = api.read_namespaced_job_status(meta["name"], meta["namespace"]).status
        if status is not None and status.succeeded:
            return Status.succeeded, None
        if status is not None and status.failed:
            return Status.failed, (f"Job {meta['name']} failed; kubectl logs -n "
                                   f"{meta['namespace']} job/{meta['name']}")
        time.sleep(every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hybridnb-job")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run a claimed job").add_argument("id")
    sub.add_parser("exec", help="one papermill run (on a worker)").add_argument("args")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "exec":
        return _exec(json.loads(args.args))
    return run(args.id)

if __name__ == "__main__":
    raise SystemExit(main())
