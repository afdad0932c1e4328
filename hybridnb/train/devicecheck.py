"""Check hybridnb's device paths end to end: train, bundle, serve, ask.

What ``benchmarks/gpu_check.py`` prints and ``tests/train/test_gpu.py`` asserts, so the
script and the tests check the same thing. For each precision, :func:`hybridnb.train.fit`
trains the digits CNN with one rank per GPU (NCCL, autocast, fp16's GradScaler); on a
machine without a GPU, with two CPU ranks over gloo. The bundle the run wrote is served by
an endpoint process on loopback, which is sent the raw test images; its accuracy must
match the run's own test accuracy (the endpoint applies the bundle's preprocessing).

Each path is checked, not just run: the device and process-group backend that ran, the
precision that ran (or the fallback the run reported), a finite loss scale under fp16,
an accuracy floor, and endpoint answers that agree with the training run.

>>> report = run_device_check("/tmp/hybridnb-devicecheck")  # doctest: +SKIP
>>> report.ok, [p.precision for p in report.paths]  # doctest: +SKIP
(True, ['fp32', 'fp16', 'bf16'])
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The precisions checked by default, on a GPU and on CPU alike.
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class PathResult:
    """One precision's run: what ran, how well, and what did not hold."""

    precision: str
    ran: str
    device: str
    backend: str
    ranks: int
    steps: int
    test_accuracy: float
    endpoint_accuracy: float | None
    loss_scale: float | None
    seconds: float
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class DeviceReport:
    """Every path checked on this machine."""

    cuda: bool
    device_name: str
    torch_version: str
    paths: list[PathResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.ok for p in self.paths)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def rows(self) -> list[list[str]]:
        """One table row per path (for a script's output)."""
        def pct(v: float | None) -> str:
            return "–" if v is None else f"{100 * v:.1f} %"

        return [[p.precision, p.ran, f"{p.device}/{p.backend}", str(p.ranks), str(p.steps),
                 pct(p.test_accuracy), pct(p.endpoint_accuracy),
                 "–" if p.loss_scale is None else f"{p.loss_scale:g}", f"{p.seconds:.1f}",
                 "ok" if p.ok else "; ".join(p.problems)] for p in self.paths]


COLUMNS = ["precision", "ran", "device", "ranks", "steps", "test acc", "endpoint acc",
           "loss scale", "seconds", "check"]


def run_device_check(work_dir: str | os.PathLike[str], *,
                     precisions: Sequence[str] | None = None, nprocs: int | None = None,
                     epochs: int = 3, min_accuracy: float = 0.9,
                     tolerance: float = 0.03) -> DeviceReport:
    """Train, bundle and serve once per precision on this machine's device; check each.

    Parameters
    ----------
    work_dir:
        Run directories and the runs' state store go here (endpoint logs go to
        ``$HYBRIDNB_HOME``, as for any endpoint).
    precisions:
        Default: fp32, fp16 (with GradScaler) and bf16. A CPU without native bf16 runs
        fp32 instead and says so (the check accepts that fallback on CPU only).
    nprocs:
        Ranks; default one per GPU, or 2 on CPU.
    epochs, min_accuracy, tolerance:
        Each run must reach ``min_accuracy`` on the test split, and the endpoint's
        accuracy on the raw test images must be within ``tolerance`` of it.
    """
    import torch

    from ..config import load_config
    from ..config.defaults import machine_gpus

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    report = DeviceReport(cuda, torch.cuda.get_device_name(0) if cuda else "cpu",
                          torch.__version__)
    overrides: dict[str, Any] = {}
    if cuda:
        count = torch.cuda.device_count()
        if machine_gpus() < count:  # the local site would refuse GPU ranks
            report.problems.append(
                f"the local site counts {machine_gpus()} GPUs (/proc/driver/nvidia/gpus) "
                f"but torch sees {count}; checked with capacity.gpu={count}")
            overrides["sites.local.capacity.gpu"] = count
        ranks = nprocs or count
    else:
        ranks = nprocs or 2
    config = load_config(overrides=overrides)
    for precision in precisions or PRECISIONS:
        report.paths.append(_check_path(work, precision, ranks, epochs, cuda, config,
                                        min_accuracy, tolerance))
    return report


def _check_path(work: Path, precision: str, ranks: int, epochs: int, cuda: bool,
                config: Any, min_accuracy: float, tolerance: float) -> PathResult:
    import shutil
    import warnings

    from ..state import StateStore
    from . import fit

    spec = {"name": f"devicecheck-{precision}", "model": "digits_cnn", "data": "digits",
            "epochs": epochs, "batch_size": 32, "precision": precision, "seed": 0,
            "optimizer": {"name": "adam", "lr": 0.003}, "log_every": 20}
    run_dir = work / f"run-{precision}"
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # A CPU without native bf16 falls back to fp32 with a warning: the note says so.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = fit(spec, nprocs=ranks, run_dir=run_dir, config=config,
                     store=StateStore(work / "state.db"))
    seconds = time.perf_counter() - started
    r = result.result
    out = PathResult(precision, str(r.get("precision")), str(r.get("device")),
                     str(r.get("backend")), int(r.get("world_size") or 0),
                     int(r.get("steps") or 0), float(r["test_accuracy"]), None,
                     r.get("loss_scale"), seconds, str(r.get("note") or ""))
    want_device, want_backend = ("cuda", "nccl") if cuda else ("cpu", "gloo")
    if (out.device, out.backend) != (want_device, want_backend):
        out.problems.append(f"ran on {out.device}/{out.backend}, expected "
                            f"{want_device}/{want_backend}")
    if out.ran != precision and not out.note:
        out.problems.append(f"asked for {precision}, ran {out.ran} without a reason")
    if cuda and out.ran != precision and not (precision == "bf16" and "bf16" in out.note):
        out.problems.append(f"asked for {precision} on a GPU, ran {out.ran}: {out.note}")
    if out.ran == "fp16" and not (out.loss_scale and math.isfinite(out.loss_scale)
                                  and out.loss_scale > 0):
        out.problems.append(f"fp16 GradScaler ended with scale {out.loss_scale}")
    if out.test_accuracy < min_accuracy:
        out.problems.append(f"test accuracy {out.test_accuracy:.3f} < {min_accuracy}")
    if result.bundle is None:
        out.problems.append("no bundle written")
        return out
    out.endpoint_accuracy = endpoint_accuracy(result.bundle, spec)
    if abs(out.endpoint_accuracy - out.test_accuracy) > tolerance:
        out.problems.append(f"endpoint accuracy {out.endpoint_accuracy:.3f} differs from the "
                            f"run's {out.test_accuracy:.3f} by more than {tolerance}")
    return out


def endpoint_accuracy(bundle: Path, spec: dict[str, Any], chunk: int = 64) -> float:
    """Serve ``bundle`` on loopback and return its accuracy on the spec's raw test images.

    Raw: the inputs before the run's normalization, as a client would send them; the
    endpoint applies the bundle's preprocessing.
    """
    import httpx
    import numpy as np

    from ..serve.process import start_server
    from .data import load_arrays
    from .spec import load_spec

    arrays = load_arrays(load_spec(spec).data)
    x, y = arrays.x["test"].numpy(), arrays.y["test"].numpy()
    stats = arrays.preprocessing or {}
    if "mean" in stats and "std" in stats:  # undo the run's normalization
        x = x * np.asarray(stats["std"], dtype=np.float32) + np.asarray(stats["mean"],
                                                                        dtype=np.float32)
    correct = 0
    meta = json.loads((bundle / "hybridnb-model.json").read_text(encoding="utf-8"))
    name, input_name = meta["name"], meta["inputs"][0]["name"]
    with start_server(bundle, token=secrets.token_urlsafe(16), record=False) as server, \
            httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        for start in range(0, len(y), chunk):
            batch = x[start:start + chunk].astype(np.float32)
            body = {"inputs": [{"name": input_name, "shape": list(batch.shape),
                                "datatype": "FP32", "data": batch.ravel().tolist()}]}
            resp = client.post(f"/v2/models/{name}/infer", json=body)
            resp.raise_for_status()
            output = resp.json()["outputs"][0]
            logits = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
            correct += int((logits.argmax(1) == y[start:start + chunk]).sum())
    return correct / len(y)
