"""All panels together in tabs: ``hybridnb.ui()``.

>>> import hybridnb.widgets as hw
>>> hw.ui()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from .base import OFFERS, Offers, Panel, headless
from .cluster import ClusterPanel
from .endpoint import EndpointPanel
from .monitor import MonitorPanel
from .preprocess import PreprocessPanel
from .sites import SitesPanel
from .train import TrainPanel

PANELS: tuple[type[Panel], ...] = (SitesPanel, ClusterPanel, PreprocessPanel, TrainPanel,
                                   EndpointPanel, MonitorPanel)


class UI:
    """The panels in tabs; ``ui.panels["Cluster"]`` is the Cluster panel.

    They work together: what the Preprocess panel prepares is the Train panel's data, and
    what the Train panel trains is offered to the Endpoint panel (:class:`Offers`).
    """

    def __init__(self, *, config: Any = None, offers: Offers | None = None):
        self.offers = offers if offers is not None else OFFERS
        self.panels = {cls.title: cls(config=config, offers=self.offers) for cls in PANELS}
        self.tabs = w.Tab(children=[p.root for p in self.panels.values()],
                          titles=tuple(self.panels))

    def close(self) -> None:
        """Close every panel (stopping the clusters and endpoints they started)."""
        for panel in self.panels.values():
            panel.close()
        self.tabs.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        if headless():
            html = "".join(p.summary_html() for p in self.panels.values())
            return {"text/html": html, "text/plain": repr(self)}
        return self.tabs._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<hybridnb UI: {', '.join(self.panels)}>"


def ui(*, config: Any = None, offers: Offers | None = None) -> UI:
    """Sites, Cluster, Preprocess, Train, Endpoint and Monitor panels in tabs.

    >>> import hybridnb.widgets as hw
    >>> sorted(hw.ui().panels)  # doctest: +SKIP
    ['Cluster', 'Endpoint', 'Monitor', 'Preprocess', 'Sites', 'Train']
    """
    return UI(config=config, offers=offers)
