"""The peer of bench_train.py: a plain DDP script, as people write it, run by torchrun.

The same work as hybridnb's run of the digits CNN: the same model (written out here),
training split (scikit-learn's digits, stratified 70/10/20, normalized with the training
split's mean and std), optimizer, per-rank batch (the last, partial one included) and
number of epochs, and at each epoch's end a validation pass over all ranks and a
checkpoint from rank 0 (to ``OUT.checkpoint.pt``; ``BENCH_EPOCH_END=0`` leaves both out).
Rank 0 writes one JSON line per optimizer step to OUT: the step, its epoch, the wall time
(``time``, for the time to first step) and ``seconds``, the time since the previous step
ended (or since its epoch started), which bench_train.py compares with hybridnb's
metrics windows.

Usage: torchrun --nproc-per-node 2 _torchrun_ddp.py OUT EPOCHS BATCH
"""

import json
import os
import sys
import time

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

EPOCH_END = os.environ.get("BENCH_EPOCH_END", "1") == "1"


def evaluate(model, x, y):
    """Accuracy over every rank's share of ``(x, y)``."""
    rank, world = dist.get_rank(), dist.get_world_size()
    sums = torch.zeros(2, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for i in range(rank * 256, len(y), world * 256):
            out = model(x[i:i + 256])
            sums += torch.tensor([(out.argmax(1) == y[i:i + 256]).sum().item(), len(out)])
    model.train()
    dist.all_reduce(sums)
    return (sums[0] / sums[1]).item()


def main(out, epochs, batch):
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    digits = load_digits()
    rest, _ = train_test_split(range(len(digits.target)), test_size=0.2,
                               stratify=digits.target, random_state=0)
    train, val = train_test_split(rest, test_size=0.125, stratify=digits.target[rest],
                                  random_state=0)
    x = torch.tensor(digits.images[train], dtype=torch.float32).unsqueeze(1)
    mean, std = x.mean(), x.std(correction=0)
    x = (x - mean) / std
    y = torch.tensor(digits.target[train])
    x_val = (torch.tensor(digits.images[val], dtype=torch.float32).unsqueeze(1) - mean) / std
    y_val = torch.tensor(digits.target[val])
    n = len(y)
    model = DDP(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = nn.CrossEntropyLoss()
    rows, step = [], 0
    for epoch in range(epochs):
        last = time.perf_counter()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(n, generator=g)[rank::world][:n // world]
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            now = time.perf_counter()
            step += 1
            rows.append({"step": step, "epoch": epoch, "time": time.time(),
                         "seconds": now - last, "samples": len(idx) * world})
            last = now
        # What hybridnb's run does at each epoch's end, outside the timed steps as there:
        # validation accuracy over all ranks, then rank 0 saves a checkpoint.
        if EPOCH_END:
            accuracy = evaluate(model, x_val, y_val)
            if rank == 0:
                torch.save({"model": model.module.state_dict(), "optimizer": opt.state_dict(),
                            "epoch": epoch}, out + ".checkpoint.pt")
                print(f"epoch {epoch} loss {loss.item():.4f} val {accuracy:.4f}", flush=True)
            dist.barrier()
        elif rank == 0:
            print(f"epoch {epoch} loss {loss.item():.4f}", flush=True)
    if rank == 0:
        with open(out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    os._exit(0)
