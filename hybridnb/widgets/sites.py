"""The Sites panel: the configured sites, and where a job described in a form would run.

>>> panel = SitesPanel()  # doctest: +SKIP
>>> panel.form["cpu"].widget.value = "2"; panel.plan.chosen.site  # doctest: +SKIP
'local'
"""

from __future__ import annotations

import logging
from typing import Any

import ipywidgets as w

from ..errors import HybridnbError
from .base import (
    Field,
    Panel,
    align_numbers,
    count,
    dropdown,
    html_table,
    nonnegative_float,
    positive_float,
    size,
    text,
)

logger = logging.getLogger(__name__)

KINDS = ("preprocess", "train", "serve", "notebook")
TIERS = ("private", "public", "edge")


class SitesPanel(Panel):
    """Configured sites (tier, capacity, cost) and a job form whose plan updates live.

    Planning is pure and fast, so the plan table follows every valid change of the form;
    **Plan** re-reads the configuration first (after editing ``hybridnb.yaml``).

    Examples
    --------
    >>> from hybridnb.widgets import SitesPanel
    >>> SitesPanel().plan.chosen.site  # doctest: +SKIP
    'local'
    """

    title = "Sites"

    def __init__(self, *, config: Any = None, offers: Any = None):
        self.sites_html = w.HTML()
        self.plan_html = w.HTML()
        self.plan: Any = None
        super().__init__(config=config, offers=offers)
        self._show_sites()
        self._replan()
        self.form.on_change(self._replan)

    def _fields(self) -> list[Field]:
        datasets = sorted(self.config.datasets)
        multi = {"style": {"description_width": "9em"}, "layout": w.Layout(width="22em")}
        return [
            Field("kind", dropdown("kind", KINDS, "train")),
            Field("cpu", text("cpu", "1"), positive_float),
            Field("gpu", text("gpu", "0"), count(0)),
            Field("memory", text("memory", "1GiB"), size),
            Field("hours", text("hours", "1"), nonnegative_float),
            Field("data", w.SelectMultiple(options=datasets, value=(), description="datasets",
                                           rows=min(4, max(1, len(datasets))), **multi),
                  list),
            Field("tiers", w.SelectMultiple(options=TIERS, value=(), description="tiers",
                                            tooltip="none selected: the policy's own order",
                                            rows=3, **multi),
                  lambda v: list(v) or None),
        ]

    def _buttons(self) -> dict[str, tuple[w.Button, Any, bool]]:
        return {"plan": (w.Button(description="Plan", icon="map-marker",
                                  tooltip="Re-read the configuration and plan"),
                         self._plan_fresh, True)}

    def _body(self) -> list[w.Widget]:
        return [self.sites_html, self.plan_html]

    def _request(self) -> dict[str, Any]:
        v = self.form.values
        return {"cpu": v["cpu"], "gpu": v["gpu"], "memory": self.form["memory"].widget.value,
                "hours": v["hours"], "data": v["data"], "tiers": v["tiers"]}

    def parameters(self) -> dict[str, Any]:
        return {"kind": self.form.values["kind"], **self._request()}

    def code(self) -> str:
        from .base import parameters_code

        return (parameters_code(self.parameters()) + "\n\nimport hybridnb\n\n"
                "plan = hybridnb.plan(kind, cpu=cpu, gpu=gpu, memory=memory, hours=hours,\n"
                "                     data=data, tiers=tiers)\nplan\n")

    # -- actions ----------------------------------------------------------------------------
    def _plan_fresh(self) -> None:
        from ..config import load_config

        self._config = load_config()
        self._show_sites()
        self._replan(raise_errors=True)

    def _replan(self, raise_errors: bool = False) -> None:
        """Plan the form's job; a bad request shows its message instead of the table."""
        if not self.form.valid:
            return
        from ..placement import plan

        try:
            self.plan = plan(self.form.values["kind"], config=self.config, **self._request())
        except HybridnbError as exc:
            self.plan = None
            self.plan_html.value = ""
            if raise_errors:
                raise
            self._show_error(str(exc))
            return
        if not self.runner.busy:
            self._show_error("")
        chosen = self.plan.chosen
        self._show_status(f"plan: {chosen.site}" if chosen else "plan: no site can run it")
        self.plan_html.value = align_numbers(self.plan._repr_html_())

    def _show_sites(self) -> None:
        from ..config.units import format_bytes

        rows = [[s.name, s.tier, s.backend, f"{s.capacity.cpu:g}",
                 format_bytes(s.capacity.memory), s.capacity.gpu, f"{s.cost.cpu_hour:g}",
                 f"{s.cost.gpu_hour:g}", f"{s.cost.egress_gb:g}"]
                for s in self.config.sites.values()]
        self.sites_html.value = html_table(
            ["site", "tier", "backend", "CPU", "memory", "GPU", "$/CPU-h", "$/GPU-h",
             "$/GB out"], rows, numeric=range(3, 9), caption="configured sites",
            css="hybridnb-sites")

    def summary_html(self) -> str:
        plan = self.plan._repr_html_() if self.plan is not None else ""
        return super().summary_html() + self.sites_html.value + plan
