"""Exercise hybridnb.train's CUDA paths: fp16/bf16 autocast with GradScaler, NCCL.

Runs anywhere: on a machine without a GPU it prints "no GPU" and exits 0.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import os
import time


def main() -> int:
    import torch
    import torch.distributed as dist

    from hybridnb.train.models import digits_cnn

    if not torch.cuda.is_available():
        print("no GPU: CUDA paths not exercised (CPU run of torch", torch.__version__ + ")")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, bf16 supported: "
          f"{torch.cuda.is_bf16_supported()}")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        t = torch.ones(4, device="cuda")
        dist.all_reduce(t)
        print("nccl all_reduce (1 process):", t.tolist())
        for dtype in (torch.float16, torch.bfloat16):
            model = torch.nn.parallel.DistributedDataParallel(digits_cnn().cuda(),
                                                              device_ids=[0])
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
            x = torch.randn(256, 1, 8, 8, device="cuda")
            y = torch.randint(0, 10, (256,), device="cuda")
            start = time.perf_counter()
            for _ in range(50):
                with torch.autocast("cuda", dtype=dtype):
                    loss = torch.nn.functional.cross_entropy(model(x).float(), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            print(f"{dtype}: 50 steps in {time.perf_counter() - start:.3f} s, final loss "
                  f"{loss.item():.4f}, scale {scaler.get_scale() if scaler.is_enabled() else '-'}")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
