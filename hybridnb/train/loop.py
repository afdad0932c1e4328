"""The per-rank training loop: ``python -m hybridnb.train.loop SPEC.json RUN_DIR``.

Every launcher (the local elastic agent, Dask workers, a Kubeflow ``PyTorchJob``) starts
this same entry point with the usual ``torch.distributed`` environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). It

1. sends its stdout/stderr to ``RUN_DIR/logs/rank<R>.log`` (never the notebook);
2. joins the process group (gloo on CPU, NCCL on GPU) with a finite timeout;
3. seeds identically on every rank, builds model, optimizer and schedule, wraps them in
   DDP or FSDP2 and resumes from ``RUN_DIR/checkpoints/latest`` when it exists;
4. trains with gradient accumulation and autocast (GradScaler for fp16), rank 0 appending
   metrics to ``RUN_DIR/metrics.jsonl`` every ``log_every`` steps and writing checkpoints
   at step boundaries;
5. evaluates on the validation split each epoch and on the test split at the end, and
   rank 0 writes ``model.safetensors`` and ``result.json``.

Determinism across restarts: the data order depends only on ``(seed, epoch)``, the RNG is
re-seeded from ``(seed, rank, step)`` before every batch, and checkpoints hold the exact
position (epoch, batch, step) — so a restarted run replays the same updates.

A step does only what training needs: no host sync, no file write and no clock read
beyond one per step. Loss is summed on the device and read, with the wall time of the
window, once per logged line; ``step_seconds`` and ``samples_per_second`` are that
window's means (its training steps only: evaluation and checkpoints are not counted).

For tests, ``HYBRIDNB_TRAIN_FAULT=RANK:STEP`` makes rank RANK kill itself with SIGKILL
after optimizer step STEP, once per run directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..fileio import atomic_path, atomic_write_json
from .checkpoint import load_latest, save_checkpoint
from .data import Arrays, epoch_order, eval_indices, load_arrays
from .models import build_model
from .optim import Numerics, build_optimizer, build_scheduler, resolve_numerics
from .rank import mix, rank_cpus, redirect_output, seed_all
from .spec import TrainSpec
from .window import StepWindow

logger = logging.getLogger(__name__)

ENV_FAULT = "HYBRIDNB_TRAIN_FAULT"
METRICS = "metrics.jsonl"
RESULT = "result.json"
WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"


class Trainer:
    """One rank of a run. ``Trainer(spec, run_dir).run()`` is the whole job."""

    def __init__(self, spec: TrainSpec, run_dir: str | Path, *, rank: int = 0,
                 world_size: int = 1, local_rank: int = 0):
        self.spec, self.run_dir = spec, Path(run_dir)
        self.rank, self.world, self.local_rank = rank, world_size, local_rank
        self.attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT",
                                          os.environ.get("HYBRIDNB_ATTEMPT", "0")))
        self.num: Numerics = resolve_numerics(spec)
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        fault = os.environ.get(ENV_FAULT)  # read once: the check runs after every step
        self.fault_at = tuple(int(v) for v in fault.split(":")) if fault else None

    # -- setup ---------------------------------------------------------------------------

    def _init(self) -> None:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(self.spec.threads)
        if self.spec.pin_cpus is not False and self.num.device == "cpu":
            self._pin()  # before the process group: gloo's threads inherit the cores
        if self.num.device == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        # A finite timeout: a peer that died makes collectives fail, never hang for 30 min.
        timeout = timedelta(seconds=self.spec.timeout_s)
        # Under the elastic agent the store server is the agent's and outlives attempts:
        # a prefix per attempt keeps a restarted group from reading the dead one's
        # addresses. Elsewhere (Dask), rank 0 hosts the store.
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"),
                              int(os.environ.get("MASTER_PORT", "29500")), self.world,
                              is_master=self.rank == 0 and not agent_store, timeout=timeout,
                              wait_for_workers=False)
        dist.init_process_group(self.num.backend, rank=self.rank, world_size=self.world,
                                timeout=timeout,
                                store=dist.PrefixStore(f"hybridnb/attempt{self.attempt}", store))
        logger.info("rank %d/%d joined (%s, %s, %s, attempt %d)", self.rank, self.world,
                    self.num.backend, self.num.precision, self.spec.strategy, self.attempt)

    def _pin(self) -> None:
        explicit = self.spec.pin_cpus is True
        if "TORCHELASTIC_RUN_ID" not in os.environ:
            # Under Dask each rank runs alone in its worker's subprocess and cannot know
            # which cores its neighbours on the host took.
            if explicit:
                logger.info("pin_cpus applies to local launches only; rank %d not pinned",
                            self.rank)
            return
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        cores = rank_cpus(self.spec.pin_cpus, os.sched_getaffinity(0), self.local_rank,
                          local_world, self.spec.threads)
        if cores is None:
            if explicit:
                logger.warning("pin_cpus: too few cores for %d ranks × %d threads; not "
                               "pinning", local_world, self.spec.threads)
            return
        os.sched_setaffinity(0, cores)
        logger.info("rank %d pinned to CPUs %s", self.rank, cores)

    def _wrap(self, model: Any) -> Any:
        if self.spec.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.local_rank] if self.num.device == "cuda" else None
            # Gradients as views into the all-reduce buckets: no copy in and out of them.
            return DistributedDataParallel(model, device_ids=ids,
                                           gradient_as_bucket_view=True)
        if self.spec.strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            # Shard each parameterized layer, then the root: layers all-gather one by one.
            for sub in list(model.modules())[1:]:
                if any(True for _ in sub.parameters(recurse=False)):
                    fully_shard(sub)
            fully_shard(model)
        return model

    def _scaler(self) -> Any:
        if not self.num.uses_scaler:
            return None
        if self.spec.strategy == "fsdp":
            # Ranks hold different shards: found-inf must be agreed on by all of them.
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            return ShardedGradScaler(self.num.device)
        import torch

        return torch.amp.GradScaler(self.num.device)

    def _autocast(self) -> Any:
        import torch

        dtype = self.num.autocast_dtype
        return (torch.autocast(self.num.device, dtype=dtype) if dtype is not None
                else nullcontext())

    def _sync(self, model: Any, sync: bool) -> AbstractContextManager[Any]:
        """Skip the gradient all-reduce on accumulation micro-batches."""
        if sync or self.spec.strategy == "single":
            return nullcontext()  # the common case: no generator to drive every step
        if self.spec.strategy == "ddp":
            return model.no_sync()
        return _no_fsdp_sync(model)

    # -- bookkeeping ---------------------------------------------------------------------

    def _metric(self, **fields: Any) -> None:
        if self.rank != 0:
            return
        fields.update(time=time.time(), attempt=self.attempt)
        with open(self.run_dir / METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(fields) + "\n")

    def _full_state(self, model: Any, opt: Any | None = None) -> tuple[Any, Any]:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        # Collective under FSDP: every rank calls it; rank 0 receives the full tensors.
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd = get_model_state_dict(model, options=opts)
        osd = get_optimizer_state_dict(model, opt, options=opts) if opt is not None else None
        return msd, osd

    def _save(self, model: Any, opt: Any, sched: Any, scaler: Any,
              position: dict[str, int]) -> None:
        import numpy as np
        import torch
        import torch.distributed as dist

        msd, osd = self._full_state(model, opt)
        if self.rank == 0:
            state = {"model": msd, "optimizer": osd, "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else None,
                     "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()},
                     "position": position, "spec_hash": self.spec.hash(),
                     "world_size": self.world}
            path = save_checkpoint(self.ckpt_dir, position["step"], state,
                                   keep=self.spec.keep_checkpoints)
            logger.info("checkpoint %s", path.name)
        dist.barrier()

    def _restore(self, model: Any, opt: Any, sched: Any, scaler: Any) -> dict[str, int]:
        loaded = load_latest(self.ckpt_dir)
        if loaded is None:
            return {"epoch": 0, "batch": 0, "step": 0}
        # Imported only to resume: torch.distributed.checkpoint takes ~0.5 s to import,
        # time that a fresh run would add before its first step.
        import numpy as np
        import torch
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        step, state = loaded
        set_state_dict(model, opt, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        logger.info("resumed from step %d %s", step, state["position"])
        return {k: int(v) for k, v in state["position"].items()}

    def _reseed(self, seed: int) -> None:
        import torch

        # The generators themselves: torch.manual_seed() also queues lazy seeds for every
        # accelerator type, formatting a stack trace each time: ~0.2 ms, 5-7% of a step
        # of the digits CNN on one CPU thread.
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.default_generators[self.device.index or 0].manual_seed(seed)

    def _fault(self, step: int) -> None:
        if self.fault_at is None:
            return
        rank, at = self.fault_at
        marker = self.run_dir / f".fault-rank{rank}-step{at}"
        if self.rank == rank and step == at and not marker.exists():
            marker.touch()
            logger.warning("%s: killing myself (SIGKILL) after step %d", ENV_FAULT, step)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

    # -- training ------------------------------------------------------------------------

    def _evaluate(self, model: Any, arrays: Arrays, split: str) -> dict[str, float]:
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        x, y = arrays.x[split], arrays.y[split]
        idx, mask = eval_indices(len(y), self.rank, self.world)
        sums = torch.zeros(3, dtype=torch.float64)
        model.eval()
        with torch.no_grad(), self._autocast():
            for b in range(0, len(idx), 256):
                i, m = idx[b:b + 256], mask[b:b + 256]
                out = model(x[i].to(self.device)).float().cpu()
                losses = F.cross_entropy(out, y[i], reduction="none")
                sums += torch.stack([((out.argmax(1) == y[i]) & m).sum().double(),
                                     m.sum().double(), (losses * m).sum().double()])
        model.train()
        sums = sums.to(self.device)
        dist.all_reduce(sums)
        correct, total, loss = sums.tolist()
        return {"accuracy": correct / total, "loss": loss / total}

    def run(self) -> dict[str, Any]:
        """Train to the end (or resume and finish) and return the final metrics."""
        import torch.distributed as dist

        self._init()
        try:
            result = self._train()
            dist.barrier()  # nobody tears down while rank 0 still writes the result
            return result
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    def _train(self) -> dict[str, Any]:
        import torch.nn.functional as F

        spec, started = self.spec, time.perf_counter()
        arrays = load_arrays(spec.data)
        seed_all(spec.seed)  # the same initial weights on every rank (FSDP needs it)
        model = self._wrap(build_model(spec.model.factory, spec.model.kwargs).to(self.device))
        opt = build_optimizer(spec.optimizer, model.parameters())
        xtr, ytr = arrays.x["train"], arrays.y["train"]
        n, bs, accum = len(ytr), spec.batch_size, spec.grad_accum
        batches = math.ceil((n // self.world) / bs)
        total = spec.epochs * math.ceil(batches / accum)
        total = min(total, spec.max_steps) if spec.max_steps else total
        sched = build_scheduler(spec.schedule, opt, total)
        scaler = self._scaler()
        pos = self._restore(model, opt, sched, scaler)
        step, val = pos["step"], {}
        window = StepWindow(self.device)
        for epoch in range(pos["epoch"], spec.epochs):
            if step >= total:
                break
            order = epoch_order(n, spec.seed, epoch, self.rank, self.world)
            b = pos["batch"] if epoch == pos["epoch"] else 0
            while b < batches and step < total:
                end = min(b + accum, batches)
                for micro in range(b, end):
                    i = order[micro * bs:(micro + 1) * bs]
                    xb, yb = xtr[i].to(self.device), ytr[i].to(self.device)
                    self._reseed(mix(spec.seed, self.rank, step, micro))
                    with self._sync(model, micro == end - 1):
                        with self._autocast():
                            loss = F.cross_entropy(model(xb).float(), yb)
                            if end - b > 1:
                                loss = loss / (end - b)
                        (scaler.scale(loss) if scaler is not None else loss).backward()
                    window.add(loss, len(i))
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                step, b = step + 1, end
                window.step()
                if step % spec.log_every == 0 or step == 1 or step == total:
                    self._metric(kind="step", step=step, epoch=epoch,
                                 lr=float(opt.param_groups[0]["lr"]),
                                 **window.flush(self.world))
                sched.step()
                opt.zero_grad(set_to_none=True)
                self._fault(step)
                if spec.checkpoint_every and step % spec.checkpoint_every == 0:
                    self._save(model, opt, sched, scaler, {"epoch": epoch, "batch": b,
                                                           "step": step})
                    window.restart()
            if b >= batches:
                if "validation" in arrays.y:
                    val = self._evaluate(model, arrays, "validation")
                    self._metric(kind="epoch", step=step, epoch=epoch + 1,
                                 val_accuracy=val["accuracy"], val_loss=val["loss"])
                self._save(model, opt, sched, scaler, {"epoch": epoch + 1, "batch": 0,
                                                       "step": step})
                window.restart()
        test = self._evaluate(model, arrays, "test")
        msd, _ = self._full_state(model)
        result = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
                  "val_accuracy": val.get("accuracy"), "steps": step,
                  "world_size": self.world, "strategy": spec.strategy,
                  "precision": self.num.precision, "requested_precision": spec.precision,
                  "device": self.num.device, "backend": self.num.backend,
                  # fp16's GradScaler after its last update: finite and > 0 when it worked.
                  "loss_scale": float(scaler.get_scale()) if scaler is not None else None,
                  "attempt": self.attempt,
                  "seconds": time.perf_counter() - started, "spec_hash": spec.hash(),
                  "preprocessing": arrays.preprocessing, "labels": arrays.labels,
                  "input_shape": arrays.input_shape, "note": self.num.note}
        if self.rank == 0:
            from safetensors.torch import save_file

            with atomic_path(self.run_dir / WEIGHTS) as tmp:
                save_file({k: v.contiguous() for k, v in msd.items()}, str(tmp))
            self._metric(kind="final", step=step, test_accuracy=test["accuracy"],
                         test_loss=test["loss"])
            atomic_write_json(self.run_dir / RESULT, result)
        return result


@contextmanager
def _no_fsdp_sync(model: Any) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of one rank (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m hybridnb.train.loop SPEC.json RUN_DIR")
    spec_path, run_dir = Path(args[0]), Path(args[1])
    rank = int(os.environ.get("RANK", "0"))
    redirect_output(run_dir, rank)

    @record  # writes the traceback to TORCHELASTIC_ERROR_FILE for the launcher to report
    def _run() -> None:
        spec = TrainSpec.model_validate_json(spec_path.read_text(encoding="utf-8"))
        Trainer(spec, run_dir, rank=rank, world_size=int(os.environ.get("WORLD_SIZE", "1")),
                local_rank=int(os.environ.get("LOCAL_RANK", "0"))).run()

    _run()
    # Skip C++ static destructors at interpreter exit: gloo and TCPStore threads torn down
    # there can abort ("terminate called without an active exception") after a run that
    # finished and wrote everything. Flush what Python buffered, then leave.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
