"""The Preprocess panel: pick a dataset and steps, run the pipeline with a progress bar.

The output goes to ``$HYBRIDNB_HOME/prepared/DATASET`` unless a directory is given, and
is offered to the Train panel as its data when the run ends.

>>> panel = PreprocessPanel()  # doctest: +SKIP
>>> panel.click("run"); panel.result.counts  # doctest: +SKIP
{'train': 1437, 'validation': 180, 'test': 180}
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import Field, Panel, align_numbers, dropdown, parameters_code, text

logger = logging.getLogger(__name__)

BUILTIN_DATASETS = ("digits",)
DEFAULT_STEPS = ("split", "standard_scale")  # statistics fit on the training split


def _out_dir(value: Any) -> str | None:
    out = str(value).strip()
    return out or None  # None: $HYBRIDNB_HOME/prepared/DATASET


def default_out(dataset: str) -> str:
    """Where a dataset is prepared by default: under ``$HYBRIDNB_HOME``, never the
    source tree."""
    from ..state import state_home

    return str(state_home() / "prepared" / dataset)


class PreprocessPanel(Panel):
    """Run a :class:`~hybridnb.data.Pipeline` on a dataset in this process (dask threads).

    The progress bar counts dask tasks as they finish (a local-scheduler callback).

    Examples
    --------
    >>> from hybridnb.widgets import PreprocessPanel
    >>> "Pipeline" in PreprocessPanel().code()  # doctest: +SKIP
    True
    """

    title = "Preprocess"

    def __init__(self, *, config: Any = None, offers: Any = None):
        self.progress = w.FloatProgress(value=0, min=0, max=100, description="progress",
                                        style={"description_width": "9em"})
        self.summary = w.HTML()
        self.result: Any = None
        super().__init__(config=config, offers=offers)

    def _fields(self) -> list[Field]:
        from ..data.step_registry import known_steps

        datasets = [*BUILTIN_DATASETS, *sorted(set(self.config.datasets) - set(BUILTIN_DATASETS))]
        steps = known_steps()

        def ordered(chosen: Any) -> list[str]:
            if not chosen:
                raise UsageError("choose at least one step")
            return list(chosen)

        return [
            Field("dataset", dropdown("dataset", datasets)),
            Field("steps", w.SelectMultiple(options=steps, rows=5, description="steps",
                                            value=tuple(s for s in DEFAULT_STEPS if s in steps),
                                            style={"description_width": "9em"}), ordered),
            Field("out", text("output dir", "", width="36em",
                              placeholder="empty: $HYBRIDNB_HOME/prepared/DATASET"),
                  _out_dir),
            Field("force", w.Checkbox(value=False, description="recompute",
                                      style={"description_width": "9em"})),
        ]

    def _buttons(self) -> dict[str, tuple[w.Button, Any, bool]]:
        return {"run": (w.Button(description="Run", icon="play", button_style="success"),
                        self._run, True)}

    def _body(self) -> list[w.Widget]:
        return [self.progress, self.summary]

    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        return {"dataset": v["dataset"], "steps": v["steps"],
                "out": v["out"] or default_out(v["dataset"]), "force": v["force"]}

    def code(self) -> str:
        return (parameters_code(self.parameters()) + "\n\nfrom hybridnb.data import Pipeline\n\n"
                "pipeline = Pipeline([{step: {}} for step in steps], name=dataset)\n"
                "result = pipeline.run(dataset, out=out, force=force)\nresult\n")

    def _run(self) -> None:
        from dask.callbacks import Callback

        from ..data import Pipeline

        v = self.form.values
        bar = self.progress
        bar.value, bar.bar_style = 0, ""
        counts = {"total": 0, "done": 0}

        class _Progress(Callback):
            # Every compute the pipeline makes adds its tasks to the total.
            def _start(self, dsk: Any) -> None:
                counts["total"] += len(dsk)

            def _posttask(self, *args: Any) -> None:
                counts["done"] += 1
                bar.value = min(99.0, 100.0 * counts["done"] / max(1, counts["total"]))

        pipeline = Pipeline([{s: {}} for s in v["steps"]], name=v["dataset"])
        out = self.parameters()["out"]
        with _Progress():
            self.result = pipeline.run(v["dataset"], out=out, force=v["force"],
                                       config=self.config, progress=False)
        bar.value, bar.bar_style = 100.0, "success"
        self.summary.value = align_numbers(self.result._repr_html_())
        counts = self.result.counts
        splits = " · ".join(f"{k} {n:,}" for k, n in counts.items())
        self._show_status(f"{self.result.summary.status}: {sum(counts.values()):,} rows "
                          f"({splits}) in {out}")
        rows = f", {counts['train']:,} training rows" if "train" in counts else ""
        self.offers.offer("data", str(self.result.path),
                          f"{v['dataset']} prepared {time.strftime('%H:%M:%S')}{rows}")

    def summary_html(self) -> str:
        return super().summary_html() + self.summary.value
