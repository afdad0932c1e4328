"""Training-step figures summed between metrics lines, without host syncs.

>>> import torch
>>> w = StepWindow(torch.device("cpu"))
>>> w.add(torch.tensor(2.0), 32); w.step()
>>> out = w.flush(world=2)
>>> out["loss"], out["window_steps"]
(2.0, 1)
"""

from __future__ import annotations

import time
from typing import Any


class StepWindow:
    """Loss, samples and training time since the last metrics line, summed without syncs."""

    def __init__(self, device: Any):
        import torch

        self.loss = torch.zeros((), dtype=torch.float32, device=device)
        self.steps, self.samples, self.seconds = 0, 0, 0.0
        self.start = time.perf_counter()

    def add(self, loss: Any, samples: int) -> None:
        # In place on the device: float(loss) here would wait for a GPU every micro-batch.
        self.loss += loss.detach()
        self.samples += samples

    def step(self) -> None:
        """An optimizer step ended: count it and the time since the previous one."""
        now = time.perf_counter()
        self.seconds += now - self.start
        self.steps, self.start = self.steps + 1, now

    def restart(self) -> None:
        """Leave out what happened since the last step (evaluation, a checkpoint)."""
        self.start = time.perf_counter()

    def flush(self, world: int) -> dict[str, Any]:
        """The window's figures (per step, all ranks' samples), then start a new one."""
        steps, seconds = max(self.steps, 1), max(self.seconds, 1e-9)
        out = {"loss": float(self.loss) / steps,  # the one host sync of the window
               "step_seconds": seconds / steps,
               "samples_per_second": self.samples * world / seconds,
               "window_steps": self.steps, "window_seconds": seconds}
        self.loss.zero_()
        self.steps, self.samples, self.seconds = 0, 0, 0.0
        return out
