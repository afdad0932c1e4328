"""The Train panel: choose data and a spec, launch, watch progress and loss, stop.

Its defaults are the shipped spec's (``notebooks/specs/digits_cnn.yaml``: the model,
epochs, batch size, learning rate and schedule that reach its accuracy), its data
choices are the built-in dataset and every prepared dataset the Preprocess panel made
(or that lies under ``$HYBRIDNB_HOME/prepared``), and the bundle it trains is offered to
the Endpoint panel. Runs go to ``$HYBRIDNB_HOME/runs`` unless a run dir is given: never
into the source tree.

>>> panel = TrainPanel()  # doctest: +SKIP
>>> panel.click("launch"); panel.result.accuracy  # doctest: +SKIP
0.98
"""

from __future__ import annotations

import logging
import math
import threading
import time
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as w

from .base import (
    Field,
    Panel,
    count,
    dropdown,
    figure_png,
    html_table,
    parameters_code,
    positive_float,
    show,
    text,
)

logger = logging.getLogger(__name__)

MODELS = ("digits_cnn", "mlp")
#: The spec whose values the panel starts from (a source checkout ships it).
SHIPPED_SPEC = Path(__file__).resolve().parents[2] / "notebooks" / "specs" / "digits_cnn.yaml"
BUILTIN = "digits"
OTHER = ""  # the data choice "a path typed below"


def shipped_spec(path: Path = SHIPPED_SPEC) -> dict[str, Any]:
    """The shipped spec as a plain dict (the built-in defaults where it is missing).

    >>> shipped_spec()["epochs"] >= 1
    True
    """
    from ..train.spec import TrainSpec, load_spec

    spec = load_spec(path) if path.is_file() else TrainSpec(model="digits_cnn")
    return spec.model_dump(mode="json")


def prepared_datasets(offers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Data choices: the built-in digits, offered datasets, and prepared ones on disk."""
    from ..data.shards import MANIFEST
    from ..state import state_home

    out = [("digits (built-in)", BUILTIN)]
    seen = {BUILTIN}
    for label, path in offers:
        if path not in seen:
            out.append((label, path))
            seen.add(path)
    for manifest in sorted((state_home() / "prepared").glob(f"*/{MANIFEST}")):
        path = str(manifest.parent)
        if path not in seen:
            out.append((_data_label(path), path))
            seen.add(path)
    out.append(("other path…", OTHER))
    return out


def _data_label(path: str) -> str:
    from ..data.shards import read_manifest

    try:
        counts = read_manifest(path).get("counts", {})
    except Exception:  # an unreadable manifest still names its directory
        counts = {}
    rows = f", {counts['train']} training rows" if "train" in counts else ""
    return f"{Path(path).name} (prepared{rows})"


def _optional_path(value: Any) -> str | None:
    v = str(value).strip()
    return v or None


class TrainPanel(Panel):
    """Launch :func:`hybridnb.fit` in the background; follow its progress and plot.

    While the run lasts, ``RUN_DIR/metrics.jsonl`` is read every ``poll_interval``
    seconds: the status line says the epoch and step reached, the latest loss and
    validation accuracy, and a bar shows how far it got. When it ends, a table gives the
    result and the bundle is offered to the Endpoint panel. **Stop** ends the run's
    process tree, found through its state record.

    Examples
    --------
    >>> from hybridnb.widgets import TrainPanel
    >>> "hybridnb.fit(spec" in TrainPanel().code()  # doctest: +SKIP
    True
    """

    title = "Train"
    immediate = frozenset({"stop"})

    def __init__(self, *, config: Any = None, offers: Any = None,
                 poll_interval: float = 1.0, spec: str | Path | None = None):
        self.poll_interval = poll_interval
        self.spec_path = Path(spec) if spec is not None else SHIPPED_SPEC
        self.base_spec = shipped_spec(self.spec_path)
        self.progress = w.FloatProgress(value=0, min=0, max=1, description="progress",
                                        style={"description_width": "9em"},
                                        layout=w.Layout(width="30em"))
        show(self.progress, False)
        self.latest = w.HTML()
        self.results = w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(max_width="40em"))
        show(self.plot, False)  # no broken-image icon before the first plot
        self.result: Any = None
        self.run_dir: Path | None = None
        self._done = threading.Event()
        super().__init__(config=config, offers=offers)
        self.offers.on_change(self._refresh_data)
        self._show_status(f"ready: defaults from {self._spec_name()}")

    def _spec_name(self) -> str:
        path = self.spec_path
        return (str(path.relative_to(SHIPPED_SPEC.parents[2]))
                if path.is_relative_to(SHIPPED_SPEC.parents[2]) else str(path))

    # -- form ---------------------------------------------------------------------------
    def _fields(self) -> list[Field]:
        spec = self.base_spec
        model = spec["model"]["factory"] if isinstance(spec["model"], dict) else spec["model"]
        models = list(dict.fromkeys([model, *MODELS]))
        data = w.Dropdown(options=prepared_datasets(self.offers.items("data")),
                          value=BUILTIN, description="data",
                          style={"description_width": "9em"}, layout=w.Layout(width="36em"))
        return [
            Field("data", data),
            Field("data_path", text("data path", "", width="36em",
                                    placeholder="with 'other path…': a prepared dataset's "
                                                "directory"), _optional_path),
            Field("model", dropdown("model", models, model)),
            Field("epochs", text("epochs", str(spec["epochs"])), count(1)),
            Field("batch_size", text("batch size", str(spec["batch_size"])), count(1)),
            Field("lr", text("learning rate", f"{spec['optimizer']['lr']:g}"), positive_float),
            Field("max_steps", text("max steps (0: all)", str(spec["max_steps"] or 0)),
                  count(0)),
            Field("nprocs", text("processes", "2"), count(1)),
            Field("run_dir", text("run dir", "", width="36em",
                                  placeholder="empty: a new one under $HYBRIDNB_HOME/runs"),
                  _optional_path),
        ]

    def _check(self, values: dict[str, Any]) -> dict[str, str]:
        if values["data"] == OTHER:
            path = values["data_path"]
            if path is None:
                return {"data_path": "give the directory of a prepared dataset"}
            from ..data.shards import MANIFEST

            if not (Path(path).expanduser() / MANIFEST).is_file():
                return {"data_path": f"no {MANIFEST} in {path}: not a prepared dataset"}
        return {}

    def _refresh_data(self) -> None:
        """New offers (the Preprocess panel finished): list them; pick the newest."""
        widget = self.form["data"].widget
        before = set(v for _, v in widget.options)
        options = prepared_datasets(self.offers.items("data"))
        widget.options = options
        new = [v for _, v in options if v not in before]
        if new:
            widget.value = new[0]

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
        return [self.progress, self.latest, self.results, self.plot]

    # -- form to spec and code ------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        v = self.form.values
        if v["data"] == BUILTIN:
            return {"dataset": BUILTIN}
        return {"path": str(v["data_path"] if v["data"] == OTHER else v["data"])}

    def spec(self) -> dict[str, Any]:
        """The shipped spec with the form's values on top (what :func:`hybridnb.fit` gets)."""
        v = self.form.values
        spec = {k: val for k, val in self.base_spec.items() if val is not None}
        kept = {k: x for k, x in self.base_spec["data"].items()
                if k not in ("dataset", "path") and x is not None}
        spec.update(model=v["model"], epochs=v["epochs"], batch_size=v["batch_size"],
                    data={**kept, **self.data()},
                    optimizer={**self.base_spec["optimizer"], "lr": v["lr"]})
        if v["max_steps"]:
            spec["max_steps"] = v["max_steps"]
        return spec

    def _short_spec(self) -> dict[str, Any]:
        """The spec as the code shows it: only what differs from the built-in defaults."""
        from ..train.spec import TrainSpec

        defaults = TrainSpec().model_dump(mode="json")
        out: dict[str, Any] = {}
        for key, value in self.spec().items():
            default = defaults.get(key)
            if isinstance(value, dict) and isinstance(default, dict):
                value = {k: x for k, x in value.items() if default.get(k) != x}
                if value:
                    out[key] = value
            elif value != default:
                out[key] = value
        return out

    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        return {"spec": self._short_spec(), "nprocs": v["nprocs"], "run_dir": v["run_dir"]}

    def code(self) -> str:
        return (parameters_code(self.parameters()) + "\n\nimport hybridnb\n\n"
                "result = hybridnb.fit(spec, nprocs=nprocs, run_dir=run_dir)\nresult\n")

    # -- the run --------------------------------------------------------------------------
    def _new_run_dir(self) -> Path:
        from ..state import state_home

        stamp = time.strftime("%Y%m%d-%H%M%S")
        return state_home() / "runs" / f"{self.spec()['name']}-{stamp}"

    def _launch(self) -> None:
        from ..train.launch import check, fit
        from ..train.spec import load_spec

        v = self.form.values
        spec = load_spec(self.spec())
        sizes = check(spec, nprocs=v["nprocs"], warn=False)
        batches = math.ceil((sizes.get("train", 0) // v["nprocs"]) / spec.batch_size)
        total = spec.epochs * math.ceil(batches / spec.grad_accum)
        total = min(total, spec.max_steps) if spec.max_steps else total
        self.run_dir = Path(v["run_dir"]).expanduser() if v["run_dir"] else self._new_run_dir()
        self.result = None
        self.results.value = ""
        self.progress.value, self.progress.max, self.progress.bar_style = 0, max(1, total), ""
        show(self.progress)
        self._done.clear()
        follower = threading.Thread(target=self._follow, args=(self.run_dir, spec, total),
                                    daemon=True, name="hybridnb-train-follow")
        follower.start()
        try:
            self.result = fit(spec, nprocs=v["nprocs"], run_dir=self.run_dir)
        except BaseException:
            self.progress.bar_style = "danger"
            raise
        finally:
            self._done.set()
            follower.join(self.poll_interval + 30)
        self._finished()

    def _follow(self, run_dir: Path, spec: Any, total: int) -> None:
        from ..train.metrics import MetricsFollower, plot_run

        follower = MetricsFollower(run_dir)
        started = time.monotonic()
        while True:
            finished = self._done.wait(self.poll_interval)
            new = follower.poll()
            rows = follower.poll(all_rows=True) if new or finished else None
            if rows:
                self._show_progress(rows, spec, total)
                run = SimpleNamespace(name=spec.name, metrics=rows)
                self.plot.value = figure_png(plot_run(run))
                show(self.plot)
            elif not follower.rows and not finished:
                # Ranks start (torch, the process group) before the first step is logged.
                self._show_status(f"starting {self.form.values['nprocs']} rank(s)… "
                                  f"{time.monotonic() - started:.0f} s")
            if finished:
                return

    def _show_progress(self, rows: list[dict[str, Any]], spec: Any, total: int) -> None:
        steps = [r for r in rows if r.get("kind") == "step"]
        epochs = [r for r in rows if r.get("kind") == "epoch"]
        if not steps:
            return
        last = steps[-1]
        step, epoch = int(last.get("step", 0)), int(last.get("epoch", 0)) + 1
        self.progress.value = min(step, self.progress.max)
        parts = [f"epoch {min(epoch, spec.epochs)}/{spec.epochs}", f"step {step}/{total}",
                 f"loss {last.get('loss', float('nan')):.4f}"]
        if epochs:
            parts.append(f"validation accuracy {100 * epochs[-1]['val_accuracy']:.1f} %")
        self._show_status("training: " + " · ".join(parts))
        figures = []
        if last.get("samples_per_second"):
            figures.append(f"{last['samples_per_second']:,.0f} samples/s")
        if last.get("step_seconds"):
            figures.append(f"{1000 * last['step_seconds']:.1f} ms/step")
        if last.get("lr") is not None:
            figures.append(f"learning rate {last['lr']:.2g}")
        self.latest.value = (f"<span class='hybridnb-train hybridnb-muted'>"
                             f"{escape(' · '.join(figures))}</span>")

    def _finished(self) -> None:
        r = self.result
        info = r.result
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        accuracy = f"{100 * r.accuracy:.2f} %" if r.accuracy is not None else "–"
        rows = [["test accuracy", accuracy],
                ["test loss", f"{info.get('test_loss', float('nan')):.4f}"],
                ["steps", info.get("steps", "–")],
                ["time", f"{info.get('seconds', 0):.1f} s"],
                ["precision", info.get("precision", "–")],
                ["bundle", str(r.bundle) if r.bundle else "none"],
                ["run dir", str(r.run_dir)]]
        self.results.value = html_table(["result", "value"], rows, caption=f"run {r.name}")
        self._show_status(f"done: {r.name}, test accuracy {accuracy} after "
                          f"{info.get('steps', '?')} steps")
        if r.bundle:
            when = time.strftime("%H:%M:%S")
            self.offers.offer("bundle", str(r.bundle),
                              f"{r.name} (trained {when}, test accuracy {accuracy})")

    def stop(self) -> None:
        """Stop the running training (its process tree); the launch reports it failed."""
        from ..processes import stop_tree
        from ..state import StateStore

        if self.run_dir is None:
            return
        run_dir = str(self.run_dir.expanduser().resolve())
        for rec in StateStore().list("run", active=True):
            if str(Path(rec.spec.get("run_dir", "")).resolve()) == run_dir:
                stop_tree([ref.pid for ref in rec.pids])
        self._show_status("stopping…")

    def summary_html(self) -> str:
        return super().summary_html() + self.latest.value + self.results.value

    def close(self) -> None:
        self.offers.off(self._refresh_data)
        super().close()
