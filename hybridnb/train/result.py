"""The outcome of a training run, as a notebook-friendly object.

>>> r = TrainResult("demo", "/tmp/run", {"test_accuracy": 0.98, "steps": 40}, [])
>>> r
TrainResult('demo': test accuracy 0.980 after 40 steps, run dir /tmp/run)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .metrics import plot_run, prometheus_text, read_metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass
class TrainResult:
    """A finished run: final metrics, the metrics history, its bundle and record.

    Attributes
    ----------
    name, run_dir:
        The spec's name and the run directory (logs, checkpoints, metrics, weights).
    result:
        ``result.json``: test accuracy and loss, steps, precision that ran, seconds, …
    metrics:
        The metrics lines (see :mod:`hybridnb.train.metrics`).
    bundle:
        The model bundle directory, when one was written.
    record_id:
        The state store record of the run.
    """

    name: str
    run_dir: str | os.PathLike[str]
    result: dict[str, Any]
    metrics: list[dict[str, Any]]
    bundle: Path | None = None
    record_id: str | None = None
    launcher: str = "local"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike[str]) -> TrainResult:
        """Rebuild the result of a finished run from its directory."""
        import json

        path = Path(run_dir)
        result = json.loads((path / "result.json").read_text(encoding="utf-8"))
        spec = json.loads((path / "spec.json").read_text(encoding="utf-8"))
        bundle = path / "bundle"
        return cls(spec.get("name", path.name), path, result, read_metrics(path),
                   bundle if bundle.is_dir() else None)

    @property
    def accuracy(self) -> float | None:
        """Test accuracy (0-1)."""
        value = self.result.get("test_accuracy")
        return None if value is None else float(value)

    @property
    def weights_path(self) -> Path:
        return Path(self.run_dir) / "model.safetensors"

    def state_dict(self) -> dict[str, Any]:
        """The final weights (loaded with safetensors: no pickle)."""
        from safetensors.torch import load_file

        return load_file(str(self.weights_path))

    def plot(self, ax: Axes | None = None) -> Figure:
        """Loss and validation accuracy against the step (see :func:`plot_run`)."""
        return plot_run(self, ax=ax)

    def prometheus(self) -> str:
        """The latest metrics as Prometheus text."""
        return prometheus_text(self.metrics, run=self.name)

    def __repr__(self) -> str:
        acc = f"test accuracy {self.accuracy:.3f}" if self.accuracy is not None else "no accuracy"
        return (f"TrainResult({self.name!r}: {acc} after {self.result.get('steps', '?')} "
                f"steps, run dir {self.run_dir})")

    def _repr_html_(self) -> str:
        rows = [("test accuracy", f"{self.accuracy:.4f}" if self.accuracy is not None else "–"),
                ("steps", self.result.get("steps")), ("ranks", self.result.get("world_size")),
                ("strategy", self.result.get("strategy")),
                ("precision", self.result.get("precision")),
                ("seconds", f"{self.result.get('seconds', 0):.1f}"),
                ("launcher", self.launcher), ("run dir", self.run_dir),
                ("bundle", self.bundle or "–"), ("record", self.record_id or "–")]
        body = "".join(f"<tr><th style='text-align:left'>{escape(str(k))}</th>"
                       f"<td style='text-align:left'>{escape(str(v))}</td></tr>"
                       for k, v in rows)
        return f"<div><b>Training run {escape(self.name)}</b><table>{body}</table></div>"
