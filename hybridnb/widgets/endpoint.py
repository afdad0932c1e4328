"""The Endpoint panel: deploy a model bundle, scale it, send a canary share, test it.

The bundle is chosen from those on offer: what the Train panel just trained, and the
bundles of every finished training run in the state store (a CLI ``hybridnb train``,
another kernel); or any bundle directory typed in. The replicas show as a table.

>>> panel = EndpointPanel()  # doctest: +SKIP
>>> panel.form["bundle"].widget.value  # the newest trained bundle  # doctest: +SKIP
'/home/me/.local/share/hybridnb/runs/digits-cnn-20260101-120000/bundle'
>>> panel.click("deploy")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import Field, Panel, count, html_table, parameters_code, text

logger = logging.getLogger(__name__)

MANIFEST = "hybridnb-model.json"
OTHER = ""  # the bundle choice "a path typed below"


def bundle_dir(value: Any, *, optional: bool = False) -> str | None:
    """A directory holding a model bundle (checked before anything starts)."""
    path = str(value).strip()
    if not path:
        if optional:
            return None
        raise UsageError("give the directory of a model bundle")
    if not (Path(path).expanduser() / MANIFEST).is_file():
        raise UsageError(f"no {MANIFEST} in {path}: not a model bundle")
    return path


def percent(value: Any) -> float:
    try:
        x = float(str(value).strip())
    except ValueError:
        raise UsageError(f"not a number: {value!r}") from None
    if not 0 <= x <= 100:
        raise UsageError(f"must be between 0 and 100, got {x:g}")
    return x


def trained_bundles(offers: list[tuple[str, str]], store: Any = None
                    ) -> list[tuple[str, str]]:
    """Bundle choices: offered ones (newest first), then those of finished runs in the
    state store, then "other path…"."""
    from ..state import StateStore, Status

    out, seen = [], set()
    for label, path in offers:
        if path not in seen and (Path(path) / MANIFEST).is_file():
            out.append((label, path))
            seen.add(path)
    try:
        runs = (store or StateStore()).list("run", active=False)
    except Exception as exc:  # the state store is advisory here
        logger.debug("cannot list runs: %s", exc)
        runs = []
    for rec in runs:
        path = str(rec.spec.get("bundle") or "")
        if rec.status is not Status.succeeded or not path or path in seen:
            continue
        if not (Path(path) / MANIFEST).is_file():
            continue
        acc = (rec.spec.get("result") or {}).get("test_accuracy")
        score = f", test accuracy {100 * acc:.1f} %" if isinstance(acc, (int, float)) else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.ended_at or rec.created_at))
        out.append((f"{rec.name} (run of {when}{score})", path))
        seen.add(path)
    out.append(("other path…", OTHER))
    return out


class EndpointPanel(Panel):
    """Operate one local endpoint (:func:`hybridnb.deploy`): replicas, canary, a test call.

    **Test request** sends one all-zeros sample of the bundle's input shape through the
    router and shows the answer and its latency.

    Examples
    --------
    >>> from hybridnb.widgets import EndpointPanel
    >>> EndpointPanel().buttons["deploy"][0].disabled  # no bundle yet  # doctest: +SKIP
    True
    """

    title = "Endpoint"

    def __init__(self, *, config: Any = None, offers: Any = None):
        self.endpoint: Any = None
        self.latency_ms: float | None = None
        self.details = w.HTML()
        self.test_html = w.HTML()
        super().__init__(config=config, offers=offers)
        self.offers.on_change(self._refresh_bundles)

    def _fields(self) -> list[Field]:
        options = trained_bundles(self.offers.items("bundle"))
        choice = w.Dropdown(options=options, value=options[0][1], description="bundle",
                            style={"description_width": "9em"},
                            layout=w.Layout(width="40em"))
        return [
            Field("bundle", choice),
            Field("bundle_path", text("bundle path", "", width="40em",
                                      placeholder="with 'other path…': a model bundle's "
                                                  "directory"),
                  lambda v: bundle_dir(v, optional=True)),
            Field("replicas", text("replicas", "1"), count(1)),
            Field("canary_bundle", text("canary bundle", "", width="40em"),
                  lambda v: bundle_dir(v, optional=True)),
            Field("canary_percent", text("canary %", "10"), percent),
        ]

    def _check(self, values: dict[str, Any]) -> dict[str, str]:
        if values["bundle"] == OTHER and values["bundle_path"] is None:
            return {"bundle_path": "choose a trained bundle above, or give the directory "
                                   "of a model bundle"}
        return {}

    def _refresh_bundles(self) -> None:
        """A new bundle was trained: offer it, and choose it unless one is deployed."""
        widget = self.form["bundle"].widget
        before = {v for _, v in widget.options}
        options = trained_bundles(self.offers.items("bundle"))
        widget.options = options
        new = [v for _, v in options if v not in before]
        if new and self.endpoint is None:
            widget.value = new[0]

    def bundle(self) -> str:
        v = self.form.values
        return str(v["bundle_path"] if v["bundle"] == OTHER else v["bundle"])

    def _buttons(self) -> dict[str, tuple[w.Button, Any, bool]]:
        return {
            "deploy": (w.Button(description="Deploy", icon="rocket", button_style="success"),
                       self._deploy, True),
            "scale": (w.Button(description="Scale", icon="arrows-v"), self._scale, True),
            "canary": (w.Button(description="Canary", icon="random"), self._canary, True),
            "test": (w.Button(description="Test request", icon="paper-plane"), self._test,
                     False),
            "stop": (w.Button(description="Stop", icon="stop", button_style="danger"),
                     self._stop, False),
        }

    def _enabled(self, name: str) -> bool:
        running = self.endpoint is not None
        if name == "deploy":
            return not running
        if name == "canary":
            return running and self.form.values.get("canary_bundle") is not None
        return running

    def _body(self) -> list[w.Widget]:
        return [self.details, self.test_html]

    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        params: dict[str, Any] = {"bundle": self.bundle() if self.form.valid else None,
                                  "replicas": v["replicas"]}
        if v["canary_bundle"] is not None:
            params |= {"canary_bundle": v["canary_bundle"], "canary_percent": v["canary_percent"]}
        return params

    def code(self) -> str:
        params = self.parameters()
        lines = [parameters_code(params), "", "import hybridnb", "",
                 "endpoint = hybridnb.deploy(bundle, replicas=replicas)"]
        if "canary_bundle" in params:
            lines.append("endpoint.canary(canary_bundle, percent=canary_percent)")
        lines.append("endpoint  # call endpoint.close() when done")
        return "\n".join(lines) + "\n"

    # -- actions ----------------------------------------------------------------------------
    def _deploy(self) -> None:
        from ..serve.endpoint import deploy

        self._show_status(f"starting {self.form.values['replicas']} replica(s)…")
        self.endpoint = deploy(self.bundle(), replicas=self.form.values["replicas"])
        self._refresh()

    def _scale(self) -> None:
        n = self.form.values["replicas"]
        self._show_status(f"scaling to {n} replica(s)…")
        self._require().scale(n)
        self._refresh()

    def _canary(self) -> None:
        v = self.form.values
        self._show_status(f"starting a canary at {v['canary_percent']:g} %…")
        self._require().canary(v["canary_bundle"], percent=v["canary_percent"])
        self._refresh()

    def _test(self) -> None:
        import numpy as np

        endpoint = self._require()
        spec = endpoint.bundle.input
        x = np.zeros([1 if d < 0 else d for d in spec.shape], dtype=spec.dtype)
        start = time.perf_counter()
        y = np.asarray(endpoint.predict(x))
        self.latency_ms = (time.perf_counter() - start) * 1000
        self._refresh()
        labels = endpoint.bundle.labels or []
        top = int(np.argmax(y[0])) if y.ndim == 2 and y.shape[1] else None
        answer = (labels[top] if top is not None and top < len(labels) else str(top))
        self.test_html.value = html_table(
            ["input", "output shape", "top class", "latency"],
            [[f"zeros {list(x.shape)}", str(list(y.shape)), answer,
              f"{self.latency_ms:.1f} ms"]], numeric=[3], caption="test request",
            css="hybridnb-test")

    def _stop(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.close()
        self.details.value = ""
        self.test_html.value = ""
        self._show_status("stopped")

    def _require(self) -> Any:
        if self.endpoint is None:
            raise UsageError("no endpoint is deployed; press Deploy first")
        return self.endpoint

    def _refresh(self) -> None:
        status = self._require().status()
        canary = (f", canary {status['canary_percent']:g} %" if status["canary_percent"]
                  else "")
        self._show_status(f"running: {status['model']} at {status['url']}, "
                          f"{status['healthy']} of {len(status['replicas'])} replicas "
                          f"healthy{canary}")
        rows = [[f"replica-{r['index']}", r["track"], r["url"], "yes" if r["healthy"] else "no",
                 r["in_flight"], r["requests"], f"{r['ewma_ms']:.1f}"]
                for r in status["replicas"]]
        self.details.value = html_table(
            ["replica", "track", "url", "ready", "in flight", "requests", "latency (EWMA, ms)"],
            rows, numeric=[4, 5, 6],
            caption=f"{status['model']} v{status['version']}: {status['routing']} routing")

    def summary_html(self) -> str:
        return super().summary_html() + self.details.value

    def close(self) -> None:
        """Stop the endpoint (if this panel deployed one) and close the widgets."""
        self.offers.off(self._refresh_bundles)
        self.runner.wait()
        self._stop()
        super().close()
