"""The Train panel: configure a spec, launch, watch loss/accuracy/throughput, stop.

>>> panel = TrainPanel()  # doctest: +SKIP
>>> panel.form["epochs"].widget.value = "1"; panel.click("launch")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import Field, Panel, count, dropdown, figure_png, parameters_code, positive_float, text

logger = logging.getLogger(__name__)

MODELS = ("digits_cnn", "mlp")


def _run_dir(value: Any) -> str:
    v = str(value).strip()
    if not v:
        raise UsageError("give a run directory")
    return v


class TrainPanel(Panel):
    """Launch :func:`hybridnb.fit` in the background and plot its metrics as they arrive.

    The plot follows ``RUN_DIR/metrics.jsonl`` every ``poll_interval`` seconds while the
    run lasts. **Stop** ends the run's process tree, found through its state record.

    Examples
    --------
    >>> from hybridnb.widgets import TrainPanel
    >>> "hybridnb.fit(spec" in TrainPanel().code()  # doctest: +SKIP
    True
    """

    title = "Train"
    immediate = frozenset({"stop"})

    def __init__(self, *, config: Any = None, poll_interval: float = 1.0):
        self.poll_interval = poll_interval
        self.plot = w.Image(format="png", layout=w.Layout(max_width="40em"))
        self.latest = w.HTML()
        self.result: Any = None
        self._done = threading.Event()
        super().__init__(config=config)

    def _fields(self) -> list[Field]:
        return [
            Field("model", dropdown("model", MODELS)),
            Field("epochs", text("epochs", "2"), count(1)),
            Field("batch_size", text("batch size", "64"), count(1)),
            Field("lr", text("learning rate", "0.001"), positive_float),
            Field("max_steps", text("max steps (0: all)", "0"), count(0)),
            Field("nprocs", text("processes", "2"), count(1)),
            Field("run_dir", text("run dir", "runs/widget"), _run_dir),
        ]

    def _buttons(self) -> dict[str, tuple[w.Button, Any, bool]]:
        return {
            "launch": (w.Button(description="Launch", icon="play", button_style="success"),
                       self._launch, True),
            "stop": (w.Button(description="Stop", icon="stop", button_style="danger"),
                     self.stop, False),
        }

    def _sync(self) -> None:
        super()._sync()
        # Stop is the one button usable while the launch action runs.
        self.buttons["stop"][0].disabled = not self.runner.busy

    def _body(self) -> list[w.Widget]:
        return [self.latest, self.plot]

    def spec(self) -> dict[str, Any]:
        v = self.form.values
        spec: dict[str, Any] = {"model": v["model"], "epochs": v["epochs"],
                                "batch_size": v["batch_size"], "optimizer": {"lr": v["lr"]}}
        if v["max_steps"]:
            spec["max_steps"] = v["max_steps"]
        return spec

    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        return {"spec": self.spec(), "nprocs": v["nprocs"], "run_dir": v["run_dir"]}

    def code(self) -> str:
        return (parameters_code(self.parameters()) + "\n\nimport hybridnb\n\n"
                "result = hybridnb.fit(spec, nprocs=nprocs, run_dir=run_dir)\nresult\n")

    def _launch(self) -> None:
        import hybridnb

        v = self.form.values
        self._done.clear()
        threading.Thread(target=self._follow, args=(Path(v["run_dir"]),), daemon=True,
                         name="hybridnb-train-follow").start()
        try:
            self.result = hybridnb.fit(self.spec(), nprocs=v["nprocs"], run_dir=v["run_dir"])
        finally:
            self._done.set()
        self._show_status(f"done: {self.result!r}")

    def _follow(self, run_dir: Path) -> None:
        from ..train.metrics import MetricsFollower, latest_values, plot_run

        follower = MetricsFollower(run_dir)
        while True:
            finished = self._done.wait(self.poll_interval)
            if follower.poll() or finished:
                rows = follower.poll(all_rows=True)
                if rows:
                    values = latest_values(rows)
                    self.latest.value = ("<span class='hybridnb-train'>" + ", ".join(
                        f"{k} {x:.4g}" for k, x in values.items()) + "</span>")
                    self.plot.value = figure_png(plot_run(rows))
            if finished:
                return

    def stop(self) -> None:
        """Stop the running training (its process tree); the launch reports it failed."""
        from ..state import StateStore
        from ..train.launch import stop_tree

        run_dir = str(Path(self.form.values["run_dir"]).expanduser().resolve())
        for rec in StateStore().list("run", active=True):
            if str(Path(rec.spec.get("run_dir", "")).resolve()) == run_dir:
                for ref in rec.pids:
                    stop_tree(ref.pid)
        self._show_status("stopping…")

    def summary_html(self) -> str:
        return super().summary_html() + self.latest.value
