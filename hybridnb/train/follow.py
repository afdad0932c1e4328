"""Following a running training job from the process that launched it.

Both launchers (local torch elastic, :mod:`hybridnb.train.dask_launch`) follow their
ranks the same way: new metrics lines, the live plot, ``metrics.prom``, the state
store's message, and the run's timeout.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..waiting import Deadline
from .metrics import LivePlot, MetricsFollower, dedupe, write_textfile

if TYPE_CHECKING:
    from ..state import StateStore
    from .spec import TrainSpec


class Follower:
    """Follows a running job: metrics lines, live plot, state store messages, timeout.

    It shares the machine with the ranks, and every wake-up of this process preempts one
    of them (the others then wait for it in the next all-reduce): it reads, renders the
    plot and ``metrics.prom`` and updates the state store at most every ``every``
    seconds, however often ranks log — one store write per tick, for the latest epoch.
    """

    def __init__(self, spec: TrainSpec, run_dir: Path, store: StateStore, record_id: str,
                 live: bool, timeout: float | None, every: float = 1.0):
        self.spec, self.run_dir, self.store, self.record_id = spec, run_dir, store, record_id
        self.metrics = MetricsFollower(run_dir)
        self.plot = LivePlot(spec.name) if live else None
        self.deadline = Deadline(timeout or None)
        self.every, self.last = every, 0.0

    def tick(self, final: bool = False) -> None:
        """Read new lines (at most every ``every`` s); ``final=True`` reads now."""
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        new = self.metrics.poll()
        if not new:
            return
        rows = dedupe(self.metrics.rows)
        if self.plot is not None:
            self.plot.update(rows)
        write_textfile(rows, self.run_dir / "metrics.prom", run=self.spec.name)
        epochs = [row for row in new if row.get("kind") == "epoch"]
        if epochs:
            row = epochs[-1]
            self.store.update(self.record_id, message=(
                f"epoch {row['epoch']}/{self.spec.epochs}: validation accuracy "
                f"{row['val_accuracy']:.4f}, step {row['step']}"))

    def expired(self) -> bool:
        return self.deadline.expired()
