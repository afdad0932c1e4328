"""The Monitor panel: what runs, its targets, the dashboard, and the alerts.

It shows what the state store records as running, wherever it was started (the CLI,
another kernel), and — with **Start collector** — scrapes all of it into the embedded
store, evaluating :func:`hybridnb.monitor.default_rules`. **Refresh** redraws the
dashboard from the store (or a Prometheus URL) and lists the alerts whose condition
holds.

>>> panel = MonitorPanel()  # doctest: +SKIP
>>> panel.click("collect"); panel.click("refresh"); panel.alerts_now  # doctest: +SKIP
[]
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import (
    Field,
    Panel,
    figure_png,
    html_table,
    parameters_code,
    positive_float,
    show,
    text,
)
from .running import running_html

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
    """The :func:`hybridnb.monitor.dashboard` figure, what is running and scraped, and
    the alerts, refreshed on demand or by a bounded poll.

    Examples
    --------
    >>> from hybridnb.widgets import MonitorPanel
    >>> "dashboard" in MonitorPanel().code()  # doctest: +SKIP
    True
    """

    title = "Monitor"
    immediate = frozenset({"stop_collector"})

    def __init__(self, *, config: Any = None, offers: Any = None, poll_limit: float = 600.0,
                 collect_interval: float = 1.0):
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        show(self.image, False)  # no broken-image icon before the first refresh
        self.running = w.HTML()
        self.targets = w.HTML()
        self.alerts = w.HTML()
        self.alerts_now: list[Any] = []
        self.collector: Any = None
        self.collect_interval = collect_interval
        self.poll_limit = poll_limit
        self._poll_stop = threading.Event()
        super().__init__(config=config, offers=offers)
        self._show_running()

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
        return {
            "refresh": (w.Button(description="Refresh", icon="refresh"), self._refresh, True),
            "collect": (w.Button(description="Start collector", icon="play",
                                 tooltip="Scrape everything the state store lists into "
                                         "the embedded store"), self._collect, True),
            "stop_collector": (w.Button(description="Stop collector", icon="stop"),
                               self._stop_collector, False),
        }

    def _enabled(self, name: str) -> bool:
        collecting = self.collector is not None
        if name == "collect":
            return not collecting and self.form.values.get("prometheus") is None
        if name == "stop_collector":
            return collecting
        return True

    def _body(self) -> list[w.Widget]:
        return [self.running, self.targets, self.alerts, self.image]

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

    # -- collector ------------------------------------------------------------------------
    def _collect(self) -> None:
        from ..monitor import Collector, default_rules

        self.collector = Collector(interval=self.collect_interval, rules=default_rules())
        self.collector.start()
        self._show_status(f"collecting every {self.collect_interval:g} s into "
                          f"{self.collector.store.path}")

    def _stop_collector(self) -> None:
        collector, self.collector = self.collector, None
        if collector is not None:
            collector.stop()
        self._show_status("collector stopped")
        self._sync()

    # -- views ----------------------------------------------------------------------------
    def _show_running(self) -> None:
        self.running.value = running_html(["cluster", "run", "endpoint"],
                                          caption="running (state store)")

    def _show_targets(self, monitor: Any) -> None:
        try:
            targets = monitor.targets()
        except Exception as exc:  # a Prometheus that went away: say so, keep the rest
            self.targets.value = f"<p class='hybridnb-muted'>no targets: {exc}</p>"
            return
        if not targets:
            self.targets.value = ("<p class='hybridnb-muted'>no target scraped in the last "
                                  "5 minutes (start the collector)</p>")
            return
        rows = [[t.get("job") or "", t.get("name") or "",
                 t.get("replica") or t.get("role") or "", t.get("instance") or "",
                 "up" if t.get("up") else "down"]
                for t in sorted(targets, key=lambda t: (str(t.get("job")),
                                                        str(t.get("instance"))))]
        self.targets.value = html_table(["job", "name", "role", "instance", "state"], rows,
                                        caption="scrape targets")

    def _show_alerts(self, monitor: Any) -> None:
        from ..monitor import AlertManager, default_rules

        if self.collector is not None:  # it has seen them come: firing means firing
            manager = self.collector.alerts
            events = [*manager.firing(), *manager.pending()]
            caption = "alerts (collector)"
        elif self.form.values["prometheus"] is None:
            manager = AlertManager(default_rules(), monitor.store)
            events = manager.evaluate()  # holds now; for how long, this panel cannot say
            caption = "alert conditions that hold now"
        else:
            events, caption = [], ""
        self.alerts_now = events
        if not events:
            self.alerts.value = "<p class='hybridnb-alerts'><b>no alerts</b></p>"
            return
        rows = [[e.alert, e.state, e.severity,
                 ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items())) or "–",
                 "–" if e.value is None else f"{e.value:.4g}",
                 time.strftime("%H:%M:%S", time.localtime(e.time))] for e in events]
        self.alerts.value = html_table(["alert", "state", "severity", "labels", "value",
                                        "since"], rows, numeric=[4], caption=caption,
                                       css="hybridnb-alerts")

    def _refresh(self, restart_poll: bool = True) -> None:
        from ..monitor import dashboard

        monitor = self._monitor()
        self._show_running()
        self._show_targets(monitor)
        self._show_alerts(monitor)
        self.image.value = figure_png(dashboard(monitor, window=self.form.values["window"]))
        show(self.image)
        self._show_status(f"refreshed at {time.strftime('%H:%M:%S')} "
                          f"({len(self.alerts_now)} alert(s))")
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
        return super().summary_html() + self.running.value + self.alerts.value

    def close(self) -> None:
        """Stop the poll and the collector, and close the widgets."""
        self._poll_stop.set()
        self.runner.wait()
        self._stop_collector()
        super().close()
