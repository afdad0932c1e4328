"""The local launcher's agent: ``python -m hybridnb.train.agent RUN_DIR``.

It runs torch.distributed's elastic agent (:func:`elastic_launch`, what ``torchrun`` runs)
in its own process, in its main thread, reading ``RUN_DIR/launch.json``. Why not call
``elastic_launch`` inside the notebook kernel? The agent installs signal handlers (only
possible in the main thread), owns a c10d rendezvous store and reaps its workers; in a
process of its own it cannot disturb the kernel, a notebook interrupt stops it cleanly
(one process group to signal), and the kernel stays free to plot metrics while it runs.
Why not the ``torchrun`` command line? Its failures arrive as text; here the agent
catches :class:`ChildFailedError` and writes ``RUN_DIR/failure.json`` with the failing
rank, exit code, signal and error — what :func:`hybridnb.train.fit` reports.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LAUNCH = "launch.json"
FAILURE = "failure.json"


def failure_record(exc: Any) -> dict[str, Any]:
    """A JSON-able description of a :class:`ChildFailedError`, the cause first.

    When one rank dies the agent stops the others with SIGTERM, and a survivor may have
    logged its own error (a broken gloo connection) before the agent even saw the death:
    ranks stopped by SIGTERM are effects, so they sort after the rest, then by time.
    """
    import signal

    def effect_then_time(item: tuple[Any, Any]) -> tuple[bool, float]:
        f = item[1]
        return (f.exitcode == -signal.SIGTERM, f.timestamp)

    failures = []
    for rank, f in sorted(exc.failures.items(), key=effect_then_time):
        data = f.error_file_data if isinstance(f.error_file_data, dict) else {}
        msg = (data.get("message") or {}) if isinstance(data.get("message"), dict) else {}
        failures.append({"rank": int(rank), "local_rank": f.local_rank,
                         "exitcode": f.exitcode, "pid": f.pid,
                         "signal": f.signal_name() if f.exitcode < 0 else None,
                         "message": msg.get("message") or (f.message if f.message else ""),
                         "traceback": (msg.get("extraInfo") or {}).get("py_callstack", "")})
    return {"name": exc.name, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    conf = json.loads((run_dir / LAUNCH).read_text(encoding="utf-8"))
    # Workers inherit the agent's environment. One OpenMP pool per rank of the spec's size
    # (what torchrun sets, 1, when it starts several ranks): ranks sharing cores must not
    # each start a pool as wide as the machine.
    os.environ["OMP_NUM_THREADS"] = str(conf.get("threads", 1))
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=conf["nprocs"], run_id=conf["run_id"],
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{conf['port']}",
        max_restarts=conf["max_restarts"], monitor_interval=0.2,
        # Ranks send their own output to logs/rank<R>.log; the agent keeps only its
        # error files (tracebacks) under logs/elastic.
        logs_specs=DefaultLogsSpecs(log_dir=str(run_dir / "logs" / "elastic")),
        start_method="spawn")
    entry = [*conf.get("python_args", []), "-m", "hybridnb.train.loop",
             str(run_dir / "spec.json"), str(run_dir)]
    try:
        elastic_launch(config, conf.get("python") or sys.executable)(*entry)
    except ChildFailedError as exc:
        record = failure_record(exc)
        (run_dir / FAILURE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        logger.error("training failed: %s", record["failures"][:1])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
