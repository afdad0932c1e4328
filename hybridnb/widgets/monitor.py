"""The Monitor panel: the monitoring dashboard and the alerts firing now.

>>> panel = MonitorPanel()  # doctest: +SKIP
>>> panel.click("refresh"); panel.firing  # doctest: +SKIP
[]
"""

from __future__ import annotations

import logging
import re
import threading
from html import escape
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import Field, Panel, figure_png, parameters_code, positive_float, text

logger = logging.getLogger(__name__)


def window(value: Any) -> str:
    """A PromQL-style range such as ``15m`` or ``2h``."""
    v = str(value).strip()
    if not re.fullmatch(r"\d+[smhd]", v):
        raise UsageError(f"not a window like 15m or 2h: {value!r}")
    return v


def prometheus_url(value: Any) -> str | None:
    v = str(value).strip()
    if v and not re.match(r"https?://", v):
        raise UsageError("a Prometheus URL starts with http:// or https://")
    return v or None


class MonitorPanel(Panel):
    """The :func:`hybridnb.monitor.dashboard` figure and the firing alerts of
    :func:`hybridnb.monitor.default_rules`, refreshed on demand or by a bounded poll.

    Examples
    --------
    >>> from hybridnb.widgets import MonitorPanel
    >>> "dashboard" in MonitorPanel().code()  # doctest: +SKIP
    True
    """

    title = "Monitor"

    def __init__(self, *, config: Any = None, poll_limit: float = 600.0):
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.alerts = w.HTML()
        self.firing: list[Any] = []
        self.poll_limit = poll_limit
        self._poll_stop = threading.Event()
        super().__init__(config=config)

    def _fields(self) -> list[Field]:
        return [
            Field("prometheus", text("Prometheus URL", "", placeholder="embedded store"),
                  prometheus_url),
            Field("window", text("window", "15m"), window),
            Field("refresh_s", text("auto refresh (s)", "10"), positive_float),
            Field("live", w.Checkbox(value=False, description="auto refresh",
                                     style={"description_width": "9em"})),
        ]

    def _buttons(self) -> dict[str, tuple[w.Button, Any, bool]]:
        return {"refresh": (w.Button(description="Refresh", icon="refresh"),
                            self._refresh, True)}

    def _body(self) -> list[w.Widget]:
        return [self.alerts, self.image]

    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        return {"prometheus": v["prometheus"], "window": v["window"]}

    def code(self) -> str:
        return (parameters_code(self.parameters()) + "\n\nimport hybridnb.monitor as mon\n\n"
                "fig = mon.dashboard(prometheus, window=window)\nfig\n")

    def _monitor(self) -> Any:
        from ..monitor import Monitor

        url = self.form.values["prometheus"]
        return Monitor("prometheus", url) if url else Monitor()

    def _refresh(self, restart_poll: bool = True) -> None:
        from ..monitor import AlertManager, dashboard, default_rules

        monitor = self._monitor()
        self.image.value = figure_png(dashboard(monitor, window=self.form.values["window"]))
        if self.form.values["prometheus"] is None:
            manager = AlertManager(default_rules(), monitor.store)
            manager.evaluate()
            self.firing = list(manager.firing())
        rows = "".join(f"<li>{escape(str(a))}</li>" for a in self.firing)
        self.alerts.value = (f"<b>firing alerts</b><ul>{rows}</ul>" if rows
                             else "<b>no alerts firing</b>")
        self._show_status(f"refreshed ({len(self.firing)} firing)")
        if restart_poll and self.form.values["live"]:
            self._start_poll()

    def _start_poll(self) -> None:
        self._poll_stop.set()
        self._poll_stop = stop = threading.Event()

        def loop() -> None:
            waited, every = 0.0, self.form.values["refresh_s"] or 10.0
            while waited < self.poll_limit and not stop.wait(every):
                waited += every
                if self.form.values["live"] and not self.runner.busy:
                    self.runner.run("refresh", lambda: self._refresh(restart_poll=False))

        threading.Thread(target=loop, daemon=True, name="hybridnb-monitor-poll").start()

    def summary_html(self) -> str:
        return super().summary_html() + self.alerts.value

    def close(self) -> None:
        """Stop the poll and close the widgets."""
        self._poll_stop.set()
        self.runner.wait()
        super().close()
