"""The Endpoint panel: deploy a model bundle, scale it, send a canary share, test it.

>>> panel = EndpointPanel()  # doctest: +SKIP
>>> panel.form["bundle"].widget.value = "runs/train/bundle"; panel.click("deploy")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import Field, Panel, count, parameters_code, text

logger = logging.getLogger(__name__)

MANIFEST = "hybridnb-model.json"


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


class EndpointPanel(Panel):
    """Operate one local endpoint (:func:`hybridnb.deploy`): replicas, canary, a test call.

    **Test** sends one all-zeros sample of the bundle's input shape through the router
    and shows the answer's latency.

    Examples
    --------
    >>> from hybridnb.widgets import EndpointPanel
    >>> EndpointPanel().buttons["deploy"][0].disabled  # no bundle yet  # doctest: +SKIP
    True
    """

    title = "Endpoint"

    def __init__(self, *, config: Any = None):
        self.endpoint: Any = None
        self.latency_ms: float | None = None
        self.details = w.HTML()
        super().__init__(config=config)

    def _fields(self) -> list[Field]:
        return [
            Field("bundle", text("bundle", ""), bundle_dir),
            Field("replicas", text("replicas", "1"), count(1)),
            Field("canary_bundle", text("canary bundle", ""),
                  lambda v: bundle_dir(v, optional=True)),
            Field("canary_percent", text("canary %", "10"), percent),
        ]

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
        return [self.details]

    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        params = {"bundle": v["bundle"], "replicas": v["replicas"]}
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
        import hybridnb

        v = self.form.values
        self.endpoint = hybridnb.deploy(v["bundle"], replicas=v["replicas"])
        self._refresh()

    def _scale(self) -> None:
        self._require().scale(self.form.values["replicas"])
        self._refresh()

    def _canary(self) -> None:
        v = self.form.values
        self._require().canary(v["canary_bundle"], percent=v["canary_percent"])
        self._refresh()

    def _test(self) -> None:
        import numpy as np

        endpoint = self._require()
        spec = endpoint.bundle.input
        x = np.zeros([1 if d < 0 else d for d in spec.shape], dtype=spec.dtype)
        start = time.perf_counter()
        y = endpoint.predict(x)
        self.latency_ms = (time.perf_counter() - start) * 1000
        self._refresh()
        self.details.value += (f"<p>test request: output shape {list(y.shape)}, latency "
                               f"<b class='hybridnb-latency'>{self.latency_ms:.1f} ms</b></p>")

    def _stop(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.close()
        self.details.value = ""
        self._show_status("stopped")

    def _require(self) -> Any:
        if self.endpoint is None:
            raise UsageError("no endpoint is deployed; press Deploy first")
        return self.endpoint

    def _refresh(self) -> None:
        status = self._require().status()
        self._show_status(f"running: {status['model']} at {status['url']}, "
                          f"{status['healthy']} healthy replicas, canary "
                          f"{status['canary_percent']:g}%")
        brief = {k: status[k] for k in ("url", "routing", "wanted", "in_flight", "autoscale")}
        self.details.value = f"<pre>{escape(json.dumps(brief, indent=1, default=str))}</pre>"

    def summary_html(self) -> str:
        return super().summary_html() + self.details.value

    def close(self) -> None:
        """Stop the endpoint (if this panel deployed one) and close the widgets."""
        self.runner.wait()
        self._stop()
        super().close()
