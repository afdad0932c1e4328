"""The Cluster panel: start, scale, adapt and stop a Dask cluster on a site.

Below its own cluster, the panel lists every cluster the state store knows to be running,
wherever it was started (``hybridnb cluster up``, another kernel), with its dashboard.

>>> panel = ClusterPanel()  # doctest: +SKIP
>>> panel.form["n_workers"].widget.value = "1"; panel.click("start")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from html import escape
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from .base import Field, Panel, count, dropdown, html_table, text
from .running import running_html

logger = logging.getLogger(__name__)

#: "workers as" choices for the local backend -> ``processes=``; None keeps the site's.
WORKER_KINDS: dict[str, bool | None] = {"site default": None, "processes": True,
                                        "threads": False}


#: Backends that connect to a running scheduler: workers are started elsewhere.
CONNECT_ONLY = frozenset({"scheduler"})


class ClusterPanel(Panel):
    """Operate one cluster: the form is the desired state, the buttons apply it.

    Parameters
    ----------
    config:
        The configuration (default :func:`hybridnb.load_config`).
    poll_interval, poll_limit:
        While a cluster runs, its workers are refreshed every ``poll_interval`` seconds
        for at most ``poll_limit`` seconds after the last action, so a forgotten panel
        stops polling on its own.

    Examples
    --------
    >>> from hybridnb.widgets import ClusterPanel
    >>> ClusterPanel().code().splitlines()[-2]  # doctest: +SKIP
    'cluster = hybridnb.cluster(site, n_workers=n_workers)'
    """

    title = "Cluster"

    def __init__(self, *, config: Any = None, offers: Any = None, poll_interval: float = 2.0,
                 poll_limit: float = 600.0):
        self.handle: Any = None
        self.poll_interval = poll_interval
        self.poll_limit = poll_limit
        self._poll_stop = threading.Event()
        self._poll_thread: threading.Thread | None = None
        self.workers_html = w.HTML()
        self.running_html = w.HTML()
        super().__init__(config=config, offers=offers)
        self._show_status("stopped")
        self._show_running()

    # -- form ---------------------------------------------------------------------------
    def _fields(self) -> list[Field]:
        sites = list(self.config.sites)
        return [
            Field("site", dropdown("site", sites, "local" if "local" in sites else None)),
            Field("n_workers", text("workers", "1"), count(0)),
            Field("processes", dropdown("workers as", list(WORKER_KINDS)),
                  WORKER_KINDS.__getitem__),
            Field("adapt", w.Checkbox(value=False, description="adaptive",
                                      style={"description_width": "9em"})),
            Field("adapt_minimum", text("adapt minimum", "0"), count(0)),
            Field("adapt_maximum", text("adapt maximum", "4"), count(1)),
        ]

    def _check(self, values: dict[str, Any]) -> dict[str, str]:
        problems: dict[str, str] = {}
        if values["adapt"] and values["adapt_maximum"] < values["adapt_minimum"]:
            problems["adapt_maximum"] = "must be >= adapt minimum"
        if values["processes"] is not None and self._backend(values["site"]) != "local":
            problems["processes"] = "only the local backend chooses processes or threads"
        return problems

    def _backend(self, site: str | None) -> str:
        return self.config.site(site).backend if site else ""

    def _buttons(self) -> dict[str, tuple[w.Button, Any, bool]]:
        return {
            "start": (w.Button(description="Start", icon="play", button_style="success"),
                      self._start, True),
            "scale": (w.Button(description="Scale", icon="arrows-v"), self._scale, True),
            "adapt": (w.Button(description="Adapt", icon="refresh"), self._adapt, True),
            "stop": (w.Button(description="Stop", icon="stop", button_style="danger"),
                     self._stop, False),
            "refresh": (w.Button(description="Refresh", icon="refresh",
                                 tooltip="Read the running clusters from the state store"),
                        self._show_running, False),
        }

    def _enabled(self, name: str) -> bool:
        running = self.handle is not None
        if name == "refresh":
            return True
        if name == "start":
            return not running
        if name == "adapt":
            return running and bool(self.form.values.get("adapt"))
        return running

    def _body(self) -> list[w.Widget]:
        return [self.workers_html, self.running_html]

    def _show_running(self) -> None:
        """Every cluster running for this user, this panel's marked (state store)."""
        record = getattr(self.handle, "record", None)
        self.running_html.value = running_html(
            ["cluster"], mine=[record.id] if record is not None else [],
            caption="clusters running (state store)")

    # -- form to code -----------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        v = self.form.values
        params: dict[str, Any] = {"site": v["site"]}
        if self._backend(v["site"]) not in CONNECT_ONLY:
            params["n_workers"] = v["n_workers"]
        if v["processes"] is not None:
            params["processes"] = v["processes"]
        if v["adapt"]:
            params["adapt_minimum"] = v["adapt_minimum"]
            params["adapt_maximum"] = v["adapt_maximum"]
        return params

    def code(self) -> str:
        from .base import parameters_code

        params = self.parameters()
        args = "".join(f", {k}={k}" for k in ("n_workers", "processes") if k in params)
        lines = [parameters_code(params), "", "import hybridnb", "",
                 f"cluster = hybridnb.cluster(site{args})"]
        if "adapt_minimum" in params:
            lines.append("cluster.adapt(minimum=adapt_minimum, maximum=adapt_maximum)")
        lines += ["cluster  # call cluster.close() when done"]
        return "\n".join(lines) + "\n"

    # -- actions (run in the background thread) -----------------------------------------
    def _start(self) -> None:
        from ..sites import cluster

        v = self.form.values
        options = {k: p for k, p in self.parameters().items() if k in ("n_workers", "processes")}
        self._show_status(f"starting a cluster on {v['site']}…")
        self.handle = cluster(v["site"], config=self.config, **options)
        if v["adapt"]:
            self.handle.adapt(minimum=v["adapt_minimum"], maximum=v["adapt_maximum"])
        elif options.get("n_workers"):
            self.handle.wait_for_workers(v["n_workers"], timeout=120)
        self._refresh()
        self._show_running()
        self._start_poll()

    def _scale(self) -> None:
        n = self.form.values["n_workers"]
        self._require().scale(n)
        self._wait_until(lambda: len(self._require().workers()) == n, f"{n} workers")
        self._refresh()
        self._start_poll()

    def _adapt(self) -> None:
        v = self.form.values
        self._require().adapt(minimum=v["adapt_minimum"], maximum=v["adapt_maximum"])
        self._refresh()
        self._start_poll()

    def _stop(self) -> None:
        self._poll_stop.set()
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()
        self.workers_html.value = ""
        self._show_status("stopped")
        self._show_running()

    def _require(self) -> Any:
        if self.handle is None:
            raise UsageError("no cluster is running; press Start first")
        return self.handle

    def _wait_until(self, condition: Any, what: str, timeout: float = 120.0) -> None:
        from ..errors import OperationError
        from ..waiting import wait_until

        try:
            wait_until(condition, timeout=timeout, ignore=(), what=what)
        except TimeoutError:
            raise OperationError(f"the cluster did not reach {what} within {timeout:g} s"
                                 ) from None

    # -- live status ----------------------------------------------------------------------
    def _refresh(self) -> None:
        """Read the workers and show them (a failed read shows as an error, not a crash)."""
        handle = self.handle
        if handle is None or handle.closed:
            return
        try:
            workers = handle.workers()
        except Exception as exc:  # the scheduler went away under us
            self._show_error(f"cannot read the cluster's workers: {exc}")
            return
        threads = sum(x.nthreads for x in workers)
        from ..config.units import format_bytes

        memory = format_bytes(sum(x.memory_limit for x in workers))
        link = handle.dashboard_link
        dash = (f' — <a href="{escape(link)}" target="_blank">dashboard</a>' if link else "")
        self.status.value = (f"<span class='hybridnb-status'>running: {escape(handle.name)}, "
                             f"{len(workers)} workers, {threads} threads, {memory}</span>{dash}")
        self.workers_html.value = html_table(
            ["worker", "site", "threads", "memory"],
            [[x.address, x.site or "?", x.nthreads, format_bytes(x.memory_limit)]
             for x in workers], numeric=[2, 3], caption=f"workers of {handle.name}")

    def _start_poll(self) -> None:
        # One bounded poller at a time: a new action restarts its clock.
        self._poll_stop.set()
        if self._poll_thread is not None:
            self._poll_thread.join(self.poll_interval + 5)
        self._poll_stop = threading.Event()
        stop = self._poll_stop
        self._poll_thread = threading.Thread(target=self._poll_loop, args=(stop,), daemon=True,
                                             name="hybridnb-cluster-poll")
        self._poll_thread.start()

    def _poll_loop(self, stop: threading.Event) -> None:
        waited = 0.0
        while waited < self.poll_limit and not stop.wait(self.poll_interval):
            waited += self.poll_interval
            if not self.runner.busy:
                self._refresh()
                self._show_running()

    def summary_html(self) -> str:
        handle = self.handle
        state = handle._repr_html_() if handle is not None else "<p>no cluster running</p>"
        return super().summary_html() + state

    def close(self) -> None:
        """Stop the cluster (if this panel started one), the poller, and the widgets."""
        self.runner.wait()
        self._stop()
        super().close()

