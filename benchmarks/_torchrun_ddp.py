"""The peer of bench_train.py: a plain DDP script, as people write it, run by torchrun.

Same model (hybridnb's digits CNN, written out here), data (digits, normalized), optimizer,
per-rank batch and number of epochs; writes per-step timings to OUT (JSON lines, rank 0).
"""

import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def main(out, epochs, batch):
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    n = int(len(x) * 0.8)
    x, y = x[:n], y[:n]
    model = DDP(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(n, generator=g)[rank::world]
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            start = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            rows.append({"time": time.time(), "step_seconds": time.perf_counter() - start})
    if rank == 0:
        with open(out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    _ = np  # numpy is imported by the peer too (through sklearn)
    os._exit(0)
